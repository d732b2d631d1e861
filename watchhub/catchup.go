package watchhub

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"

	"go.etcd.io/etcd/api/v3/mvccpb"

	"github.com/tesseradb/tessera/engine"
	"github.com/tesseradb/tessera/internal/backoff"
	"github.com/tesseradb/tessera/proto/tesserapb"
)

// catchUpBatch bounds the revisions of one catch-up response.
const catchUpBatch = 256

func sortRevs(revs []releasedRev) {
	sort.Slice(revs, func(i, j int) bool { return revs[i].rev < revs[j].rev })
}

// startCatchUpLocked makes w unsynced: a goroutine sends it every event
// above cursor, then joins it to the synced set at G.
func (h *Hub) startCatchUpLocked(w *watcher, cursor engine.Revision) {
	ctx, cancel := context.WithCancel(w.s.ctx)
	w.stopCatchUp = cancel
	go h.catchUp(ctx, w, cursor)
}

// catchUp sends w the events in (cursor, G], from the ring when it holds
// them, else from the ranges' history, until it reaches G and is synced.
func (h *Hub) catchUp(ctx context.Context, w *watcher, cursor engine.Revision) {
	retry := backoff.New(resubscribeBackoff)
	attempt := 0
	for {
		h.mu.Lock()
		if ctx.Err() != nil || w.removed {
			h.mu.Unlock()
			return
		}
		target := h.mu.released
		if cursor >= target {
			w.synced = true
			w.stopCatchUp = nil
			h.mu.synced[w] = struct{}{}
			h.mu.Unlock()
			h.wake() // a progress request may wait for it
			return
		}
		floor := h.mu.ringFloor
		for _, rs := range w.subs {
			floor = max(floor, rs.since, rs.validFrom-1)
		}
		var evs []*mvccpb.Event
		fromRing := cursor >= floor
		if fromRing {
			i := sort.Search(len(h.mu.ring), func(i int) bool { return h.mu.ring[i].rev > cursor })
			evs = w.filter(h.mu.ring[i:], cursor)
		}
		h.mu.Unlock()

		if fromRing {
			if res, _ := w.s.pushEvents(w, target, evs, true); res != pushed {
				return
			}
			cursor = target
			continue
		}
		last, err := h.history(ctx, w, cursor, target, attempt)
		attempt++
		cursor = max(cursor, last)
		var ce *compactedError
		switch {
		case err == nil:
			retry.Reset()
		case errors.As(err, &ce):
			w.s.cancelCompacted(w, ce.rev)
			return
		case ctx.Err() != nil:
			return
		default:
			h.log.Debug("watch catch-up interrupted", "watch", w.id, "err", err)
			if retry.Wait(ctx) != nil {
				return
			}
		}
	}
}

// historyStream reads one range's history in (from, to].
type historyStream struct {
	h      *Hub
	desc   *tesserapb.RangeDescriptor
	stream tesserapb.Internal_FeedClient
	buf    []releasedRev
	done   bool
}

// next returns the stream's next revision (ok false at its end).
func (hs *historyStream) peek() (releasedRev, bool, error) {
	for len(hs.buf) == 0 && !hs.done {
		resp, err := hs.stream.Recv()
		if errors.Is(err, io.EOF) {
			hs.done = true
			break
		}
		if err != nil {
			return releasedRev{}, false, err
		}
		if err := hs.h.feedError(hs.desc, resp); err != nil {
			return releasedRev{}, false, err
		}
		if hs.buf, err = decodeRevisions(resp); err != nil {
			return releasedRev{}, false, err
		}
	}
	if len(hs.buf) == 0 {
		return releasedRev{}, false, nil
	}
	return hs.buf[0], true, nil
}

// history sends w the events of its ranges in (from, to] in revision order,
// merging the ranges' history feeds. It returns the last revision up to
// which everything was sent.
// attempt varies the replicas tried when leaders are unknown.
func (h *Hub) history(ctx context.Context, w *watcher, from, to engine.Revision, attempt int) (engine.Revision, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	streams := make([]*historyStream, 0, len(w.subs))
	for _, rs := range w.subs {
		target := feedTarget(h.cfg.Ranges, rs.desc, attempt)
		stream, err := h.openFeed(ctx, target, &tesserapb.FeedRequest{
			RangeId: rs.desc.GetRangeId(), Generation: rs.desc.GetGeneration(),
			StartRevision: int64(from + 1), EndRevision: int64(to), PrevKv: w.prevKV,
		})
		if err != nil {
			return from, err
		}
		streams = append(streams, &historyStream{h: h, desc: rs.desc, stream: stream})
	}
	sent := from
	var evs []*mvccpb.Event
	var revsInBatch int
	var batchTop engine.Revision
	flush := func() bool {
		if res, _ := w.s.pushEvents(w, to, evs, true); res != pushed {
			return false
		}
		sent = max(sent, batchTop)
		evs, revsInBatch = nil, 0
		return true
	}
	for {
		// The smallest head among the ranges comes next.
		var best *historyStream
		var bestRev releasedRev
		for _, hs := range streams {
			r, ok, err := hs.peek()
			if err != nil {
				return sent, fmt.Errorf("watchhub: history of range %d: %w", hs.desc.GetRangeId(), err)
			}
			if ok && (best == nil || r.rev < bestRev.rev) {
				best, bestRev = hs, r
			}
		}
		if best == nil {
			break
		}
		best.buf = best.buf[1:]
		if bestRev.rev >= w.start {
			evs = append(evs, w.filter([]releasedRev{bestRev}, from)...)
		}
		batchTop = bestRev.rev
		revsInBatch++
		if revsInBatch >= catchUpBatch {
			if !flush() {
				return sent, context.Canceled
			}
		}
	}
	batchTop = to
	if !flush() {
		return sent, context.Canceled
	}
	return to, nil
}
