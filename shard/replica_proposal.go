package shard

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/protobuf/proto"

	"github.com/tesseradb/tessera/engine"
	"github.com/tesseradb/tessera/proto/tesserapb"
	"github.com/tesseradb/tessera/raftgroup"
)

// proposal is one write waiting to be proposed, committed and applied.
type proposal struct {
	id         uint64
	op         []byte // marshaled RequestOp (nil for a compaction)
	compactRev engine.Revision
	generation uint64
	leases     []*tesserapb.LeaseRef   // incarnations of the leases op attaches
	revoke     []*tesserapb.LeaseRef   // a lease revocation (op nil)
	split      *tesserapb.SplitTrigger // a split (op nil; shard/split.go)
	merge      *tesserapb.MergeTrigger // a merge (op nil; shard/merge.go)
	freeze     bool                    // freeze for a merge (op nil)
	unfreeze   bool                    // thaw after a failed merge (op nil)
	authRev    uint64                  // auth revision it was checked under (auth_revision.go)
	rev        engine.Revision
	term       uint64

	once sync.Once
	done chan struct{}
	resp *pb.ResponseOp
	err  error
	// result: what a split or merge produced (set before done closes).
	result any
}

func (p *proposal) finish(resp *pb.ResponseOp, err error) {
	p.once.Do(func() {
		p.resp, p.err = resp, err
		close(p.done)
	})
}

// Write proposes a write (a Put, DeleteRange or Txn, or a compaction when op
// is nil) and returns its response and revision once it applied on this
// replica. Writes are batched: while one batch fetches its timestamps and is
// proposed, the next accumulates, so timestamps are always fetched after the
// writes they are for arrived, and proposals go to raft in revision order.
func (r *Replica) Write(ctx context.Context, generation uint64, op *pb.RequestOp, compactRev engine.Revision) (*pb.ResponseOp, engine.Revision, error) {
	return r.write(ctx, generation, op, compactRev, LeaseRefs{})
}

// LeaseRefs are the lease incarnations a write carries (see
// ShardCommand.leases and revoke_leases).
type LeaseRefs struct {
	// Attach: the leases the op's puts name, as the router found them.
	Attach []*tesserapb.LeaseRef
	// Revoke: a revocation (op nil): every key of the range attached to
	// one of them is deleted and the range refuses them from then on.
	Revoke []*tesserapb.LeaseRef
}

// WriteLeased is Write for an op whose puts name leases.
func (r *Replica) WriteLeased(ctx context.Context, generation uint64, op *pb.RequestOp, leases LeaseRefs) (*pb.ResponseOp, engine.Revision, error) {
	return r.write(ctx, generation, op, 0, leases)
}

func (r *Replica) write(ctx context.Context, generation uint64, op *pb.RequestOp, compactRev engine.Revision, leases LeaseRefs) (*pb.ResponseOp, engine.Revision, error) {
	start := time.Now()
	var opb []byte
	if op != nil {
		var err error
		if opb, err = proto.Marshal(op); err != nil {
			return nil, 0, fmt.Errorf("shard: encode request: %w", err)
		}
	}
	// The checks read the published routing state, not mu: the write path
	// does not queue behind an apply round holding mu. A leadership change
	// racing with them is caught when the batch starts (flush).
	rt := r.route.Load()
	if err := rt.check(generation); err != nil {
		return nil, 0, err
	}
	if !rt.isLeader {
		return nil, 0, rt.notLeader()
	}
	if op != nil && !OpWithinDescriptor(rt.desc, op) {
		return nil, 0, rt.keyMismatch()
	}
	p := &proposal{id: r.nextID.Add(1), op: opb, compactRev: compactRev, generation: rt.desc.GetGeneration(), leases: leases.Attach, revoke: leases.Revoke, authRev: opAuthRevision(ctx, op), done: make(chan struct{})}
	r.cfg.Metrics.writes.Inc()
	r.noteLoad(start, op)
	r.batches.Add(p, p.done)
	select {
	case <-p.done:
		r.cfg.Metrics.observeWrite(start, p.err)
		return p.resp, p.rev, p.err
	case <-ctx.Done():
		return nil, 0, ctx.Err()
	}
}

// flush fetches timestamps for one batch of writes and proposes them in
// timestamp order. It runs on the goroutine of the write that found no batch
// running, or on the batcher's hand-off goroutine (internal/coalesce).
func (r *Replica) flush(batch []*proposal) {
	r.mu.Lock()
	switch {
	case r.mu.closed:
		for _, p := range batch {
			p.finish(nil, ErrReplicaClosed)
		}
		r.mu.Unlock()
		return
	case !r.mu.isLeader:
		for _, p := range batch {
			p.finish(nil, r.notLeaderLocked())
		}
		r.mu.Unlock()
		return
	}
	// The batch belongs to this term: if leadership changes while it waits
	// for timestamps, even back to this replica, it is not proposed (a
	// leader of the term in between may have committed writes above its
	// timestamps).
	term := r.mu.term
	r.mu.flushing = true
	r.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.FlushTimeout)
	first, err := r.writeTimestamps(ctx, len(batch))
	cancel()

	r.mu.Lock()
	switch {
	case err != nil:
		for _, p := range batch {
			p.finish(nil, fmt.Errorf("shard: range %d: fetch revision: %w", r.group, errors.Join(rpctypes.ErrGRPCNoLeader, err)))
		}
	case r.mu.closed:
		for _, p := range batch {
			p.finish(nil, ErrReplicaClosed)
		}
	case !r.mu.isLeader || r.mu.term != term:
		for _, p := range batch {
			p.finish(nil, r.notLeaderLocked())
		}
	default:
		for i, p := range batch {
			p.rev, p.term = first+engine.Revision(i), r.mu.term
			r.proposeLocked(p)
		}
	}
	r.mu.flushing = false
	r.mu.flushEpoch++
	r.notifyLocked()
	r.mu.Unlock()
}

// proposeLocked hands one write to raft. Lock order: Replica.mu, then the
// raft host's group lock (the host never calls the Replica under it).
func (r *Replica) proposeLocked(p *proposal) {
	cmd := &tesserapb.ShardCommand{
		ProposalId:      p.id,
		ProposerNode:    uint64(r.cfg.NodeID),
		Revision:        int64(p.rev),
		RequestOp:       p.op,
		CompactRevision: int64(p.compactRev),
		Generation:      p.generation,
		Leases:          p.leases,
		RevokeLeases:    p.revoke,
		Split:           p.split,
		Merge:           p.merge,
		Freeze:          p.freeze,
		Unfreeze:        p.unfreeze,
		AuthRevision:    p.authRev,
		// Stamped under mu, at proposal: see auth_revision.go.
		ProposerAuthRevision: r.stampAuthRevision(p.authRev),
	}
	data, err := proto.Marshal(cmd)
	if err != nil {
		p.finish(nil, fmt.Errorf("shard: encode command: %w", err))
		return
	}
	r.mu.inflight[p.id] = p
	if err := r.cfg.Raft.Propose(r.group, data); err != nil {
		delete(r.mu.inflight, p.id)
		var nl *raftgroup.NotLeaderError
		if errors.As(err, &nl) {
			r.mu.leader = nl.Leader
			r.publishRouteLocked()
			p.finish(nil, r.notLeaderLocked())
			return
		}
		p.finish(nil, fmt.Errorf("shard: range %d: propose: %w", r.group, err))
	}
}

// expireOrphans fails, after AmbiguousTimeout, the writes this replica
// proposed as leader that have not applied since it lost leadership: their
// outcome is unknown, and etcd reports that as a timeout due to leader failure.
func (r *Replica) expireOrphans(orphans []*proposal) {
	t := time.NewTimer(r.cfg.AmbiguousTimeout)
	defer t.Stop()
	select {
	case <-t.C:
	case <-r.stop:
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range orphans {
		if r.mu.inflight[p.id] == p {
			delete(r.mu.inflight, p.id)
			p.finish(nil, rpctypes.ErrGRPCTimeoutDueToLeaderFail)
		}
	}
	r.notifyLocked()
}
