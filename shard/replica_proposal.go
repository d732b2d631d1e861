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
	rev        engine.Revision
	term       uint64

	once sync.Once
	done chan struct{}
	resp *pb.ResponseOp
	err  error
}

func (p *proposal) finish(resp *pb.ResponseOp, err error) {
	p.once.Do(func() {
		p.resp, p.err = resp, err
		close(p.done)
	})
}

// flushTimeout bounds one timestamp fetch of the pipeline.
const flushTimeout = 5 * time.Second

// Write proposes a write (a Put, DeleteRange or Txn, or a compaction when op
// is nil) and returns its response and revision once it applied on this
// replica. Writes are batched: while one batch fetches its timestamps and is
// proposed, the next accumulates, so timestamps are always fetched after the
// writes they are for arrived, and proposals go to raft in revision order.
func (r *Replica) Write(ctx context.Context, generation uint64, op *pb.RequestOp, compactRev engine.Revision) (*pb.ResponseOp, engine.Revision, error) {
	start := time.Now()
	var opb []byte
	if op != nil {
		var err error
		if opb, err = proto.Marshal(op); err != nil {
			return nil, 0, fmt.Errorf("shard: encode request: %w", err)
		}
	}
	r.mu.Lock()
	if err := r.checkRoutingLocked(generation); err != nil {
		r.mu.Unlock()
		return nil, 0, err
	}
	if !r.mu.isLeader {
		err := r.notLeaderLocked()
		r.mu.Unlock()
		return nil, 0, err
	}
	if op != nil && !OpWithinDescriptor(r.mu.desc, op) {
		err := r.keyMismatchLocked()
		r.mu.Unlock()
		return nil, 0, err
	}
	r.mu.nextID++
	p := &proposal{id: r.mu.nextID, op: opb, compactRev: compactRev, generation: r.mu.desc.GetGeneration(), done: make(chan struct{})}
	r.mu.pending = append(r.mu.pending, p)
	lead := !r.mu.flushing
	r.mu.flushing = true
	r.mu.Unlock()
	r.cfg.Metrics.writes.Inc()
	r.load.add(start, 1)
	if lead {
		r.flush()
	}
	select {
	case <-p.done:
		r.cfg.Metrics.observeWrite(start, p.err)
		return p.resp, p.rev, p.err
	case <-ctx.Done():
		return nil, 0, ctx.Err()
	}
}

// flush proposes pending writes, batch after batch, until none is left. It
// runs on the goroutine of the write that found no flush running.
func (r *Replica) flush() {
	for {
		r.mu.Lock()
		batch := r.mu.pending
		r.mu.pending = nil
		if len(batch) == 0 || r.mu.closed {
			r.mu.flushing = false
			r.mu.flushEpoch++
			r.notifyLocked()
			r.mu.Unlock()
			return
		}
		r.mu.Unlock()

		ctx, cancel := context.WithTimeout(context.Background(), flushTimeout)
		first, err := r.cfg.Clock.Timestamps(ctx, len(batch))
		cancel()

		r.mu.Lock()
		switch {
		case err != nil:
			for _, p := range batch {
				p.finish(nil, fmt.Errorf("shard: range %d: fetch revision: %w", r.group, errors.Join(rpctypes.ErrGRPCNoLeader, err)))
			}
		case !r.mu.isLeader:
			for _, p := range batch {
				p.finish(nil, r.notLeaderLocked())
			}
		default:
			for i, p := range batch {
				p.rev, p.term = first+engine.Revision(i), r.mu.term
				r.proposeLocked(p)
			}
		}
		r.mu.flushEpoch++
		r.notifyLocked()
		r.mu.Unlock()
	}
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
