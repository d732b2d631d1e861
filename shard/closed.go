package shard

import (
	"context"
	"errors"
	"fmt"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/tesseradb/tessera/engine"
	"github.com/tesseradb/tessera/raftgroup"
)

// Closed revisions (docs/decisions.md, "Closed revisions"): a replica may
// serve any revision up to its closed revision from its own state.
//
// In the log the closed revision is implicit: revisions increase along a
// range's committed log, so a replica that published revision w can never
// see a write at or below w again. Idle ranges close further on the node's
// side channel (router/closed.go): the leader proposes (term, C, I), a quorum
// of followers accepts the term, and the confirmed promise raises the closed
// revision of every replica once it applied index I.

// ClosedPromise is a leader's promise for its range: once a replica has
// applied Index, no write at or below Rev will ever apply in the range.
type ClosedPromise struct {
	Term  uint64
	Rev   engine.Revision
	Index uint64
}

// closedState is a replica's closed revision, guarded by Replica.mu.
type closedState struct {
	// rev is the highest confirmed promise whose index this replica applied.
	rev engine.Revision
	// waiting holds confirmed promises whose index is not applied yet, in
	// increasing index order.
	waiting []ClosedPromise
	// appliedTerm is the raft term of the last applied entry: a leader
	// closes only once it applied an entry of its own term.
	appliedTerm uint64
	// requester runs a closing round on demand (nil: none; feeds resolve
	// with ReadIndex then).
	requester CloseRequester
	// readIndexResolves and closedResolves count the feed resolves served
	// by a ReadIndex round and by a closing round.
	readIndexResolves, closedResolves uint64
}

// CloseRequester runs a closing round of the node's side channel on demand
// (router/closed.go): the returned channel is closed once a round that
// started after the call ended.
type CloseRequester interface {
	RequestClose(rangeID uint64) <-chan struct{}
}

// IsLeader reports whether this replica leads its range.
func (r *Replica) IsLeader() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.mu.isLeader
}

// SetCloseRequester sets the node's side channel, used by feeds to resolve
// an idle range without a ReadIndex round of its own.
func (r *Replica) SetCloseRequester(c CloseRequester) {
	r.mu.Lock()
	r.mu.cl.requester = c
	r.mu.Unlock()
}

// ResolveCounts returns how many feed resolves of this replica needed a
// ReadIndex round, and how many a closing round of the side channel served.
func (r *Replica) ResolveCounts() (readIndex, closing uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.mu.cl.readIndexResolves, r.mu.cl.closedResolves
}

// resolveForFeed resolves the range at rev for a feed (the watch hub asks
// lagging ranges to catch up with the others). An idle range is resolved by
// a closing round of the node's side channel, which one pair of RPCs per
// peer node serves for every range that needs it; a range with writes under
// way, or one the round could not close, takes a ReadIndex round.
func (r *Replica) resolveForFeed(ctx context.Context, rev engine.Revision) error {
	r.mu.Lock()
	req := r.mu.cl.requester
	idle := r.mu.isLeader && !r.mu.flushing && r.batches.Queued() == 0 && len(r.mu.inflight) == 0
	if rev <= r.mu.resolved {
		r.mu.Unlock()
		return nil
	}
	r.mu.Unlock()
	if req != nil && idle {
		// The round fetches its timestamp after this call, so above rev.
		done := req.RequestClose(uint64(r.group))
		r.mu.Lock()
		for r.mu.resolved < rev && !r.mu.closed && r.mu.isLeader {
			ch := r.mu.changed
			r.mu.Unlock()
			select {
			case <-ch:
			case <-done:
			case <-ctx.Done():
				return ctx.Err()
			}
			r.mu.Lock()
			if r.mu.resolved < rev && isDone(done) {
				break
			}
		}
		ok := r.mu.resolved >= rev
		if ok {
			r.mu.cl.closedResolves++
		}
		r.mu.Unlock()
		if ok {
			return nil
		}
	}
	r.mu.Lock()
	r.mu.cl.readIndexResolves++
	r.mu.Unlock()
	return r.resolve(ctx, rev)
}

func isDone(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// closedLocked returns the replica's closed revision.
func (r *Replica) closedLocked() engine.Revision {
	return max(r.mu.cl.rev, r.mu.publishedRev)
}

// ClosedRevision returns the replica's closed revision: no write at or below
// it can still apply here.
func (r *Replica) ClosedRevision() engine.Revision {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closedLocked()
}

// PublishedRevision returns the highest revision this replica has applied
// and made readable: a real write's revision (or 0).
func (r *Replica) PublishedRevision() engine.Revision {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.mu.publishedRev
}

// advanceClosedLocked applies the waiting promises whose index is applied.
func (r *Replica) advanceClosedLocked() {
	cl := &r.mu.cl
	n := 0
	for _, p := range cl.waiting {
		if p.Index > r.mu.applied {
			break
		}
		cl.rev = max(cl.rev, p.Rev)
		n++
	}
	if n > 0 {
		cl.waiting = append(cl.waiting[:0], cl.waiting[n:]...)
	}
}

// ProposeClose returns the promise this leader can make at now, a timestamp
// fetched after the call began: nothing is queued, being timestamped or in
// flight (every later write gets a revision above now), and the leader has
// applied an entry of its own term (no entry of an earlier term can commit
// after it). ok is false when the replica cannot close now.
func (r *Replica) ProposeClose(now engine.Revision) (p ClosedPromise, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.mu.closed || r.mu.frozen || !r.mu.isLeader || r.mu.flushing || r.batches.Queued() > 0 || len(r.mu.inflight) > 0 {
		return ClosedPromise{}, false
	}
	if r.mu.cl.appliedTerm != r.mu.term || now <= r.closedLocked() {
		return ClosedPromise{}, false
	}
	return ClosedPromise{Term: r.mu.term, Rev: now, Index: r.mu.applied}, true
}

// AcceptClose reports whether this replica accepts a proposal from leader:
// it is in the proposal's term and follows leader.
func (r *Replica) AcceptClose(leader raftgroup.NodeID, p ClosedPromise) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return !r.mu.closed && !r.mu.isLeader && r.mu.term == p.Term && r.mu.leader == leader
}

// ApplyClose records a promise a quorum confirmed. On the leader that made
// it, the resolved revision rises with it: a resolve at or below it needs no
// ReadIndex round.
func (r *Replica) ApplyClose(p ClosedPromise) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.mu.closed || p.Rev <= r.closedLocked() {
		return
	}
	cl := &r.mu.cl
	if n := len(cl.waiting); n >= maxWaitingPromises {
		// A lagging replica: the newest promise subsumes the last one.
		if p.Index < cl.waiting[n-1].Index {
			return
		}
		cl.waiting = cl.waiting[:n-1]
	}
	i := len(cl.waiting)
	for i > 0 && cl.waiting[i-1].Index > p.Index {
		i--
	}
	cl.waiting = append(cl.waiting, ClosedPromise{})
	copy(cl.waiting[i+1:], cl.waiting[i:])
	cl.waiting[i] = p
	r.advanceClosedLocked()
	if r.mu.isLeader && r.mu.term == p.Term && r.mu.cl.rev > r.mu.resolved {
		r.mu.resolved = r.mu.cl.rev
	}
	r.notifyLocked()
}

// ErrClosedWait is returned when a serializable read waited ClosedWait for
// the replica to close its revision: etcd's "request timed out".
var ErrClosedWait = rpctypes.ErrGRPCTimeout

// readSerializable serves a serializable read at exactly at: it waits
// (bounded by ClosedWait) until the replica's closed revision reached at, so
// the answer is the range's state at at whatever this replica's role.
func (r *Replica) readSerializable(ctx context.Context, op *pb.RequestOp, at engine.Revision) (*pb.ResponseOp, engine.Revision, error) {
	r.mu.Lock()
	if at <= 0 {
		at = r.closedLocked()
	}
	if at <= r.closedLocked() {
		// Closed already (the common case): no wait, no timer.
		snap, compact := r.readViewLocked()
		r.mu.Unlock()
		defer snap.Close()
		return r.evaluate(snap, op, max(at, 1), compact)
	}
	wctx, cancel := context.WithTimeout(ctx, r.cfg.ClosedWait)
	defer cancel()
	err := r.waitLocked(wctx, func() bool { return r.closedLocked() >= at })
	closedRev := r.closedLocked()
	if err != nil {
		r.mu.Unlock()
		if ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
			r.log.Debug("serializable read: closed revision did not reach its revision", "revision", int64(at), "closed", int64(closedRev), "wait", r.cfg.ClosedWait)
			return nil, 0, ErrClosedWait
		}
		return nil, 0, fmt.Errorf("shard: range %d: wait for closed revision %d: %w", r.group, at, err)
	}
	// The snapshot and the compaction revision are taken together, under
	// the lock (see readViewLocked).
	snap, compact := r.readViewLocked()
	r.mu.Unlock()
	defer snap.Close()
	// A range never written holds the empty state at every revision.
	return r.evaluate(snap, op, max(at, 1), compact)
}

// maxWaitingPromises bounds the promises a lagging replica keeps.
const maxWaitingPromises = 16

// defaultClosedWait bounds a serializable read's wait for the closed
// revision: several closed-revision intervals and an election.
const defaultClosedWait = 5 * time.Second
