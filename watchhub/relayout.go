package watchhub

import (
	"bytes"
	"fmt"
	"slices"
	"sort"

	"go.etcd.io/etcd/api/v3/mvccpb"

	"github.com/tesseradb/tessera/proto/tesserapb"
)

// Splits and merges under a subscription.
//
// A range's feed ends with a routing error carrying the newer descriptor
// when the range splits or merges. The subscription then follows the new
// layout from its frontier (every event at or below it was received):
//
//   - its own range split (same id, narrower): it goes on with the new
//     descriptor, and the ranges now holding the rest of its old span get a
//     subscription (found or created) that starts no later than its
//     frontier; its watchers are attached to them;
//   - its own range grew (a merge into it): it goes on; the merged range's
//     log holds the right's events, and a duplicate of an event the
//     right's own subscription delivered is merged away by revision;
//   - its range was merged into another: the merged range's subscription
//     (found or created) takes its watchers, its pending events and starts
//     no later than its frontier; it ends.
//
// The events of one revision may then arrive from two subscriptions (a
// write before a split touching both halves, read after it from both
// logs; or a subscription restarted below its frontier): they are merged
// into one revision, each key once.

// layoutError ends a feed whose range split or merged.
type layoutError struct {
	desc *tesserapb.RangeDescriptor
	msg  string
}

func (e *layoutError) Error() string { return "watchhub: " + e.msg }

// layoutChange returns the layout error of a routing error that carries a
// newer descriptor than d (nil otherwise).
func layoutChange(d *tesserapb.RangeDescriptor, re *tesserapb.RoutingError) error {
	switch re.GetCode() {
	case tesserapb.RoutingError_STALE_GENERATION, tesserapb.RoutingError_KEY_MISMATCH:
	default:
		return nil
	}
	nd := re.GetRangeDescriptor()
	if nd == nil || nd.GetGeneration() <= d.GetGeneration() {
		return nil
	}
	return &layoutError{desc: nd, msg: fmt.Sprintf("range %d changed (%s): %s", d.GetRangeId(), re.GetCode(), re.GetMessage())}
}

func overlaps(a, b *tesserapb.RangeDescriptor) bool {
	return (len(a.GetEndKey()) == 0 || bytes.Compare(b.GetStartKey(), a.GetEndKey()) < 0) &&
		(len(b.GetEndKey()) == 0 || bytes.Compare(a.GetStartKey(), b.GetEndKey()) < 0)
}

// relayout moves rs onto the layout that nd (newer than rs's descriptor)
// belongs to. It reports whether rs ended (merged into another range).
func (h *Hub) relayout(rs *rangeSub, nd *tesserapb.RangeDescriptor) (ended bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	old := rs.descriptor()
	if h.mu.subs[old.GetRangeId()] != rs {
		return true // removed meanwhile
	}
	if nd.GetRangeId() == old.GetRangeId() {
		// The rest of the old span (a split) is in other ranges now. Until
		// this node's cache knows all of them, keep the old descriptor: the
		// feed ends again and this runs again (the frontier waits).
		rest, ok := h.restOf(old, nd)
		if !ok {
			return false
		}
		rs.setDescriptor(nd)
		for _, d := range rest {
			h.attachLocked(rs, d)
		}
		return false
	}
	t := h.attachLocked(rs, nd)
	for _, r := range rs.pending {
		h.insertPendingLocked(t, r)
	}
	h.mu.pending -= rs.pendingEvents()
	rs.pending = nil
	for w := range rs.watchers {
		w.subs = slices.DeleteFunc(w.subs, func(x *rangeSub) bool { return x == rs })
	}
	rs.watchers = nil
	delete(h.mu.subs, old.GetRangeId())
	h.m.subscriptions.Set(float64(len(h.mu.subs)))
	rs.cancel()
	return true
}

// restOf returns the cached ranges holding the part of old's span that nd
// (same range, narrower) no longer holds; ok is false while the cache does
// not cover all of it with other ranges (it has not learned the split).
func (h *Hub) restOf(old, nd *tesserapb.RangeDescriptor) (out []*tesserapb.RangeDescriptor, ok bool) {
	ok = true
	add := func(key, end []byte) {
		q := end
		if len(q) == 0 {
			q = []byte{0}
		}
		next := key
		for _, d := range h.cfg.Ranges.Overlapping(key, q) {
			if d.GetRangeId() == nd.GetRangeId() || !bytes.Equal(d.GetStartKey(), next) && bytes.Compare(d.GetStartKey(), next) > 0 {
				ok = false
				return
			}
			out = append(out, d)
			next = d.GetEndKey()
			if len(next) == 0 {
				return
			}
		}
		if len(end) == 0 || bytes.Compare(next, end) < 0 {
			ok = false
		}
	}
	if bytes.Compare(old.GetStartKey(), nd.GetStartKey()) < 0 {
		add(old.GetStartKey(), nd.GetStartKey())
	}
	if len(nd.GetEndKey()) > 0 && (len(old.GetEndKey()) == 0 || bytes.Compare(nd.GetEndKey(), old.GetEndKey()) < 0) {
		add(nd.GetEndKey(), old.GetEndKey())
	}
	return out, ok
}

// attachLocked makes sure range d has a subscription that starts no later
// than rs's frontier and carries rs's watchers covering d.
func (h *Hub) attachLocked(rs *rangeSub, d *tesserapb.RangeDescriptor) *rangeSub {
	t := h.mu.subs[d.GetRangeId()]
	switch {
	case t == nil:
		t = h.newRangeSubLocked(d)
		t.since, t.frontier, t.validFrom = rs.since, rs.frontier, rs.validFrom
	case t == rs:
		return t
	default:
		t.since = min(t.since, rs.since)
		t.validFrom = max(t.validFrom, rs.validFrom)
		if rs.frontier < t.frontier {
			// Events of rs's keys above its frontier may be below t's:
			// read them again (duplicates merge by revision).
			t.frontier = rs.frontier
			if t.restart != nil {
				t.restart()
			}
		}
		if t.descriptor().GetGeneration() < d.GetGeneration() {
			t.setDescriptor(d)
		}
	}
	for w := range rs.watchers {
		if _, ok := t.watchers[w]; ok || !w.overlaps(d) {
			continue
		}
		t.watchers[w] = struct{}{}
		t.refs++
		w.subs = append(w.subs, t)
	}
	h.m.subscriptions.Set(float64(len(h.mu.subs)))
	return t
}

// overlaps reports whether the watcher's span meets the range.
func (w *watcher) overlaps(d *tesserapb.RangeDescriptor) bool {
	end := w.end
	switch {
	case end == nil:
		end = append(bytes.Clone(w.key), 0)
	case len(end) == 1 && end[0] == 0:
		end = nil
	}
	return overlaps(&tesserapb.RangeDescriptor{StartKey: w.key, EndKey: end}, d)
}

// insertPendingLocked adds a received revision to rs's pending ones in
// order, merging it into one of the same revision.
func (h *Hub) insertPendingLocked(rs *rangeSub, r releasedRev) {
	i := sort.Search(len(rs.pending), func(i int) bool { return rs.pending[i].rev >= r.rev })
	if i < len(rs.pending) && rs.pending[i].rev == r.rev {
		before := len(rs.pending[i].events)
		rs.pending[i] = mergeRev(rs.pending[i], r)
		h.mu.pending += len(rs.pending[i].events) - before
		return
	}
	rs.pending = slices.Insert(rs.pending, i, r)
	h.mu.pending += len(r.events)
}

// mergeRev merges two deliveries of one revision: each key once.
func mergeRev(a, b releasedRev) releasedRev {
	seen := make(map[string]bool, len(a.events))
	out := releasedRev{rev: a.rev, events: make([]*mvccpb.Event, 0, len(a.events)+len(b.events))}
	for _, evs := range [][]*mvccpb.Event{a.events, b.events} {
		for _, ev := range evs {
			k := string(ev.GetKv().GetKey())
			if seen[k] {
				continue
			}
			seen[k] = true
			out.events = append(out.events, ev)
		}
	}
	return out
}

// mergeSameRevs merges adjacent deliveries of one revision (revs sorted).
func mergeSameRevs(revs []releasedRev) []releasedRev {
	out := revs[:0]
	for _, r := range revs {
		if n := len(out); n > 0 && out[n-1].rev == r.rev {
			out[n-1] = mergeRev(out[n-1], r)
			continue
		}
		out = append(out, r)
	}
	return out
}
