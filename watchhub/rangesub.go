package watchhub

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/protobuf/proto"

	"github.com/tesseradb/tessera/engine"
	"github.com/tesseradb/tessera/internal/backoff"
	"github.com/tesseradb/tessera/proto/tesserapb"
	"github.com/tesseradb/tessera/raftgroup"
	"github.com/tesseradb/tessera/shard"
)

// rangeSub is the hub's subscription to one range's feed. Its fields other
// than desc, cancel, done and resolveKick are guarded by Hub.mu.
type rangeSub struct {
	h    *Hub
	desc *tesserapb.RangeDescriptor
	refs int
	// since is G when the subscription began: the ring holds this range's
	// events above it only.
	since engine.Revision
	// validFrom: events below it are lost to this subscription (the feed
	// was compacted past its position); watchers needing them catch up
	// from history, which reports the compaction.
	validFrom engine.Revision
	// frontier: every event of the range <= frontier has been received.
	frontier engine.Revision
	// pending: received revisions above G, ascending.
	pending []releasedRev
	// want is the revision the range was last asked to resolve to.
	want engine.Revision
	// start: the subscription has received every event of the range from
	// start on (its first feed began there).
	start engine.Revision
	// watchers: the watchers that hold this subscription in their subs.
	watchers map[*watcher]struct{}
	// endSession ends the current feed session (nil between sessions).
	endSession context.CancelFunc
	// replaced: the subscription gave way to the ranges that now cover
	// its span (rangesub_layout.go).
	replaced bool

	resolveKick chan struct{}
	cancel      context.CancelFunc
	done        chan struct{}
}

// newRangeSubLocked subscribes to a range's feed from frontier+1; since is
// the G from which the ring holds its events, validFrom as on rangeSub.
func (h *Hub) newRangeSubLocked(d *tesserapb.RangeDescriptor, since, frontier, validFrom engine.Revision) *rangeSub {
	ctx, cancel := context.WithCancel(context.Background())
	rs := &rangeSub{
		h: h, desc: d,
		since: since, frontier: frontier, validFrom: validFrom, start: frontier + 1,
		watchers:    map[*watcher]struct{}{},
		resolveKick: make(chan struct{}, 1),
		cancel:      cancel,
		done:        make(chan struct{}),
	}
	h.mu.subs[keyOf(d)] = rs
	go func() {
		defer close(rs.done)
		rs.run(ctx)
	}()
	return rs
}

func (rs *rangeSub) wakeResolve() {
	select {
	case rs.resolveKick <- struct{}{}:
	default:
	}
}

func (rs *rangeSub) pendingEvents() int {
	n := 0
	for _, r := range rs.pending {
		n += len(r.events)
	}
	return n
}

// errCompacted ends a subscription whose position was compacted.
var errCompacted = errors.New("watchhub: feed position compacted")

// resubscribeBackoff paces resubscriptions to a range's feed (and retries of
// a watch's catch-up): 20 ms, doubling up to 1 s while nothing comes through.
var resubscribeBackoff = backoff.Config{Min: 20 * time.Millisecond, Max: time.Second}

// run keeps the feed open, resubscribing from the revision after the last
// one received whenever it ends.
func (rs *rangeSub) run(ctx context.Context) {
	retry := backoff.New(resubscribeBackoff)
	for attempt := 0; ctx.Err() == nil; attempt++ {
		if attempt > 0 {
			rs.h.m.resubscriptions.Inc()
			if retry.Wait(ctx) != nil {
				return
			}
		}
		got, err := rs.session(ctx, attempt)
		if got {
			retry.Reset()
		}
		if err != nil && ctx.Err() == nil {
			rs.h.log.Debug("range feed ended", "range", rs.desc.GetRangeId(), "err", err)
		}
		var le *layoutError
		if errors.As(err, &le) && rs.h.replaceSub(ctx, rs, le.desc) {
			return // the ranges now covering the span took over
		}
	}
}

// feedTarget picks the node to ask for a range's feed: the known leader,
// else the replicas in turn.
func feedTarget(r Ranges, d *tesserapb.RangeDescriptor, attempt int) raftgroup.NodeID {
	if l := r.Leader(d.GetRangeId()); l != 0 && attempt%2 == 0 {
		return l
	}
	reps := shard.ReplicaNodes(d)
	if len(reps) == 0 {
		return 0
	}
	return raftgroup.NodeID(reps[attempt%len(reps)])
}

// openFeed opens a feed stream on target and sends its first request.
func (h *Hub) openFeed(ctx context.Context, target raftgroup.NodeID, first *tesserapb.FeedRequest) (tesserapb.Internal_FeedClient, error) {
	conn, err := h.cfg.Peers.Conn(target)
	if err != nil {
		return nil, fmt.Errorf("watchhub: connect to node %d: %w", target, err)
	}
	stream, err := tesserapb.NewInternalClient(conn).Feed(ctx)
	if err != nil {
		return nil, fmt.Errorf("watchhub: open feed on node %d: %w", target, err)
	}
	if err := stream.Send(first); err != nil {
		return nil, fmt.Errorf("watchhub: open feed on node %d: %w", target, err)
	}
	return stream, nil
}

// feedError turns a feed's final message into an error, updating the
// leader hint; nil when the message carries data.
func (h *Hub) feedError(d *tesserapb.RangeDescriptor, resp *tesserapb.FeedResponse) error {
	if c := resp.GetCompactRevision(); c > 0 {
		return &compactedError{rev: engine.Revision(c)}
	}
	re := resp.GetRoutingError()
	if re == nil || re.GetCode() == tesserapb.RoutingError_NONE {
		return nil
	}
	leader := raftgroup.NodeID(0)
	if re.GetCode() == tesserapb.RoutingError_NOT_LEADER {
		leader = raftgroup.NodeID(re.GetLeaderNode())
	}
	h.cfg.Ranges.SetLeader(d.GetRangeId(), leader)
	err := fmt.Errorf("watchhub: range %d: %s: %s", d.GetRangeId(), re.GetCode(), re.GetMessage())
	switch re.GetCode() {
	case tesserapb.RoutingError_STALE_GENERATION, tesserapb.RoutingError_KEY_MISMATCH, tesserapb.RoutingError_RANGE_NOT_FOUND:
		// The range may have split or merged: the caller checks.
		return &layoutError{desc: re.GetRangeDescriptor(), err: err}
	}
	return err
}

type compactedError struct{ rev engine.Revision }

func (e *compactedError) Error() string {
	return fmt.Sprintf("watchhub: history compacted at %d", e.rev)
}

// decodeRevisions decodes a feed response's events.
func decodeRevisions(resp *tesserapb.FeedResponse) ([]releasedRev, error) {
	out := make([]releasedRev, 0, len(resp.GetRevisions()))
	for _, fr := range resp.GetRevisions() {
		r := releasedRev{rev: engine.Revision(fr.GetRevision()), events: make([]*mvccpb.Event, 0, len(fr.GetEvents()))}
		for _, b := range fr.GetEvents() {
			ev := &mvccpb.Event{}
			if err := proto.Unmarshal(b, ev); err != nil {
				return nil, fmt.Errorf("watchhub: decode event at %d: %w", r.rev, err)
			}
			r.events = append(r.events, ev)
		}
		out = append(out, r)
	}
	return out, nil
}

// session runs one feed stream; got reports whether it delivered anything.
func (rs *rangeSub) session(ctx context.Context, attempt int) (got bool, err error) {
	h := rs.h
	target := feedTarget(h.cfg.Ranges, rs.desc, attempt)
	if target == 0 {
		return false, errors.New("watchhub: range has no replicas")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	h.mu.Lock()
	start := rs.frontier + 1
	rs.endSession = cancel
	h.mu.Unlock()
	defer func() {
		h.mu.Lock()
		rs.endSession = nil
		h.mu.Unlock()
	}()
	stream, err := h.openFeed(ctx, target, &tesserapb.FeedRequest{
		RangeId: rs.desc.GetRangeId(), Generation: rs.desc.GetGeneration(), StartRevision: int64(start), PrevKv: true,
	})
	if err != nil {
		return false, err
	}
	// Resolve requests go out on the same stream, one at a time.
	go func() {
		rs.wakeResolve() // a request made before this session
		for {
			select {
			case <-ctx.Done():
				return
			case <-rs.resolveKick:
			}
			h.mu.Lock()
			want, frontier := rs.want, rs.frontier
			h.mu.Unlock()
			if want > frontier {
				if err := stream.Send(&tesserapb.FeedRequest{ResolveRevision: int64(want)}); err != nil {
					return
				}
			}
		}
	}()
	for {
		resp, err := stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = errors.New("watchhub: feed ended")
			}
			h.cfg.Ranges.SetLeader(rs.desc.GetRangeId(), 0)
			return got, err
		}
		if err := h.feedError(rs.desc, resp); err != nil {
			var ce *compactedError
			if errors.As(err, &ce) {
				h.subCompacted(rs, ce.rev)
			}
			return got, err
		}
		revs, err := decodeRevisions(resp)
		if err != nil {
			return got, err
		}
		got = true
		h.cfg.Ranges.SetLeader(rs.desc.GetRangeId(), target)
		h.onFeed(rs, revs, engine.Revision(resp.GetResolvedRevision()))
	}
}

// onFeed takes what a feed delivered.
func (h *Hub) onFeed(rs *rangeSub, revs []releasedRev, resolved engine.Revision) {
	h.mu.Lock()
	for _, r := range revs {
		if r.rev <= rs.frontier {
			continue // already received before a resubscription
		}
		rs.pending = append(rs.pending, r)
		rs.frontier = r.rev
		h.mu.pending += len(r.events)
	}
	rs.frontier = max(rs.frontier, resolved)
	h.mu.Unlock()
	h.wake()
}

// subCompacted handles a subscription whose position fell below the
// range's compaction: the synced watchers covering the range are canceled
// with the compaction revision (as etcd cancels a watcher whose history is
// gone), and the subscription goes on from the compaction revision.
func (h *Hub) subCompacted(rs *rangeSub, rev engine.Revision) {
	h.mu.Lock()
	var victims []*watcher
	for w := range h.mu.synced {
		if slices.Contains(w.subs, rs) {
			victims = append(victims, w)
		}
	}
	h.mu.pending -= rs.pendingEvents()
	rs.pending = nil
	rs.frontier = max(rs.frontier, rev-1)
	rs.validFrom = max(rs.validFrom, rev)
	h.mu.Unlock()
	for _, w := range victims {
		w.s.cancelCompacted(w, rev)
	}
	h.wake()
}
