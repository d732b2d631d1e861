package watchhub

import (
	"bytes"
	"context"
	"slices"

	"go.etcd.io/etcd/api/v3/mvccpb"

	"github.com/tesseradb/tessera/engine"
	"github.com/tesseradb/tessera/proto/tesserapb"
)

// Subscriptions across splits and merges.
//
// A range's feed ends with a routing error when its descriptor changes
// (the range checks the generation the feed was opened with). The
// subscription then asks the node's range cache which ranges cover its
// span now (Ranges.Replacement: the cache, the error's descriptor, the
// range directory). If the layout changed, the subscription gives way:
//
//   - for each range now covering its span, a subscription to that range
//     (by range and generation) starting from its frontier + 1 (the last
//     revision it received: every event up to it was received, so nothing
//     is lost; a right half carries the history of its keys, so its feed
//     from that revision has them); an existing subscription that started
//     later is rewound to that revision;
//   - its watchers move to those subscriptions;
//   - what it received and not yet released waits in the hub's orphans
//     and goes out with the next release.
//
// A revision that two subscriptions both received (the old range before
// the split and a new one reading the same history again) is released
// once: the release merges the events of equal revisions by key (a
// revision's events are one txn's, one per key). Frontiers never move
// back below G, so nothing released is released again, and the release
// order stays the revision order.

// subKey identifies a subscription: a range at one generation.
type subKey struct {
	rangeID    uint64
	generation uint64
}

func keyOf(d *tesserapb.RangeDescriptor) subKey {
	return subKey{rangeID: d.GetRangeId(), generation: d.GetGeneration()}
}

// layoutError ends a feed whose range may have split or merged; desc is
// the range's descriptor from the error, if any.
type layoutError struct {
	desc *tesserapb.RangeDescriptor
	err  error
}

func (e *layoutError) Error() string { return e.err.Error() }
func (e *layoutError) Unwrap() error { return e.err }

// replaceSub replaces rs by the ranges now covering its span when its
// range split or merged. It reports whether rs is done (replaced, or no
// longer needed); false: the layout did not change (or could not be
// learned yet) and rs resubscribes as before.
func (h *Hub) replaceSub(ctx context.Context, rs *rangeSub, desc *tesserapb.RangeDescriptor) bool {
	if desc != nil {
		h.cfg.Ranges.Update(desc)
	}
	ds, changed, err := h.cfg.Ranges.Replacement(ctx, rs.desc)
	if err != nil {
		h.log.Debug("range feed: new layout not known yet", "range", rs.desc.GetRangeId(), "err", err)
		return false
	}
	if !changed {
		return false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.mu.closed || h.mu.subs[keyOf(rs.desc)] != rs {
		return true // every watcher left meanwhile
	}
	delete(h.mu.subs, keyOf(rs.desc))
	rs.replaced = true
	h.mu.orphans = append(h.mu.orphans, rs.pending...)
	rs.pending = nil
	var repl []*rangeSub
	for _, d := range ds {
		x := h.mu.subs[keyOf(d)]
		switch {
		case x == nil:
			x = h.newRangeSubLocked(d, rs.since, rs.frontier, rs.validFrom)
			h.m.resubscriptions.Inc()
		case x.start > rs.frontier+1:
			h.rewindLocked(x, rs.frontier)
			h.m.resubscriptions.Inc()
		}
		x.since = max(x.since, rs.since)
		x.validFrom = max(x.validFrom, rs.validFrom)
		x.refs += rs.refs
		repl = append(repl, x)
	}
	for w := range rs.watchers {
		subs := make([]*rangeSub, 0, len(w.subs)+len(repl))
		for _, s := range w.subs {
			if s != rs {
				subs = append(subs, s)
			}
		}
		for _, x := range repl {
			if !slices.Contains(subs, x) {
				subs = append(subs, x)
			} else {
				x.refs-- // w held x already: one reference each
			}
			x.watchers[w] = struct{}{}
		}
		w.subs = subs
	}
	rs.watchers, rs.refs = nil, 0
	h.m.subscriptions.Set(float64(len(h.mu.subs)))
	h.log.Debug("range feed replaced after a split or merge", "range", rs.desc.GetRangeId(),
		"generation", rs.desc.GetGeneration(), "ranges", len(repl), "from", rs.frontier+1)
	h.wake()
	return true
}

// rewindLocked makes x deliver again from f+1 (f is at or above G): what it
// received above f is dropped and read again by a new session.
func (h *Hub) rewindLocked(x *rangeSub, f engine.Revision) {
	i := len(x.pending)
	for i > 0 && x.pending[i-1].rev > f {
		i--
	}
	for _, r := range x.pending[i:] {
		h.mu.pending -= len(r.events)
	}
	x.pending = x.pending[:i]
	x.frontier = min(x.frontier, f)
	x.start = f + 1
	x.want = 0
	if x.endSession != nil {
		x.endSession()
	}
}

// dedupeRevs merges the entries of equal revisions of a sorted run: the
// union of their events by key, in the order of the longest entry.
func dedupeRevs(revs []releasedRev) []releasedRev {
	out := revs[:0]
	for _, r := range revs {
		n := len(out)
		if n == 0 || out[n-1].rev != r.rev {
			out = append(out, r)
			continue
		}
		// The longer list is the old range's (all the revision's keys, in
		// the order the txn wrote them): the others add to it.
		base, other := out[n-1].events, r.events
		if len(other) > len(base) {
			base, other = other, base
		}
		evs := append([]*mvccpb.Event(nil), base...)
		for _, ev := range other {
			if !slices.ContainsFunc(evs, func(e *mvccpb.Event) bool { return bytes.Equal(e.GetKv().GetKey(), ev.GetKv().GetKey()) }) {
				evs = append(evs, ev)
			}
		}
		out[n-1] = releasedRev{rev: r.rev, events: evs}
	}
	return out
}
