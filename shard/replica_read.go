package shard

import (
	"context"
	"errors"
	"fmt"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/tesseradb/tessera/engine"
	"github.com/tesseradb/tessera/raftgroup"
)

// Read serves a Range or a read-only Txn at readRev, a fresh timestamp for
// a linearizable read: the answer is exactly the state of the keys it covers
// at readRev, and its revision is the range's newest write at or below
// readRev (latest_write.go; the router takes the cluster's newest). A serializable read is served by
// any replica at exactly readRev once its closed revision reached it
// (readRev 0: at its closed revision; shard/closed.go).
func (r *Replica) Read(ctx context.Context, generation uint64, op *pb.RequestOp, readRev engine.Revision, serializable bool) (*pb.ResponseOp, engine.Revision, error) {
	r.mu.Lock()
	if err := r.checkRoutingLocked(generation); err != nil {
		r.mu.Unlock()
		return nil, 0, err
	}
	if !OpWithinDescriptor(r.mu.desc, op) {
		err := r.keyMismatchLocked()
		r.mu.Unlock()
		return nil, 0, err
	}
	r.cfg.Metrics.reads.Inc()
	r.noteLoad(time.Now(), op)
	if serializable {
		r.mu.Unlock()
		return r.readSerializable(ctx, op, readRev)
	}
	if !r.mu.isLeader {
		err := r.notLeaderLocked()
		r.mu.Unlock()
		return nil, 0, err
	}
	r.mu.Unlock()
	snap, compact, err := r.linearizableView(ctx, readRev)
	if err != nil {
		return nil, 0, err
	}
	defer snap.Close()
	resp, _, err := r.evaluate(snap, op, readRev, compact)
	if err != nil {
		return nil, 0, err
	}
	// The answer is the state at readRev; its revision is the range's
	// newest write at or below it (latest_write.go).
	w, err := latestWriteAt(snap, uint64(r.group), readRev, compact)
	if err != nil {
		return nil, 0, err
	}
	return resp, w, nil
}

// linearizableView resolves the range at readRev (this replica must lead
// it) and returns an engine snapshot with the compaction revision taken
// together with it (readViewLocked). The caller closes the snapshot.
func (r *Replica) linearizableView(ctx context.Context, readRev engine.Revision) (*engine.Snapshot, engine.Revision, error) {
	if readRev <= 0 {
		return nil, 0, errors.New("shard: linearizable read without a read revision")
	}
	if err := r.resolve(ctx, readRev); err != nil {
		return nil, 0, err
	}
	r.mu.Lock()
	snap, compact := r.readViewLocked()
	r.mu.Unlock()
	return snap, compact, nil
}

// readViewLocked returns an engine snapshot together with the compaction
// revision it must be read against. Taken under r.mu, they agree: the
// compaction revision moves (in Apply, under r.mu) before its physical
// compaction starts (after Applied), so no version a read at or above
// compact needs is missing from snap, whatever compactions apply later.
func (r *Replica) readViewLocked() (*engine.Snapshot, engine.Revision) {
	return r.cfg.Engine.NewSnapshot(), r.mu.compactRev
}

// resolve makes the range resolved at rev, a timestamp the TSO has handed
// out: once it returns, no write with a revision at or below rev can still
// appear, and every such write is applied and published here. Only the
// leader can tell: it fails with NOT_LEADER elsewhere.
func (r *Replica) resolve(ctx context.Context, rev engine.Revision) error {
	// A revision the TSO never handed out cannot be resolved: the promise
	// would cover writes still to come below it (defence in depth; the
	// internal RPCs refuse such revisions before they get here).
	if ic, ok := r.cfg.Clock.(interface{ Highest() engine.Revision }); ok && rev > ic.Highest() {
		return fmt.Errorf("shard: range %d: resolve at %d, above every issued timestamp (%d): %w", r.group, rev, ic.Highest(), rpctypes.ErrGRPCFutureRev)
	}
	r.mu.Lock()
	if !r.mu.isLeader {
		err := r.notLeaderLocked()
		r.mu.Unlock()
		return err
	}
	if rev <= r.mu.resolved {
		r.mu.Unlock()
		return nil
	}
	// 1. No write this leader may still propose or commit has a revision at
	// or below rev: wait out a flush that may have fetched its timestamps
	// before rev, and writes in flight at or below it.
	epoch := r.mu.flushEpoch
	err := r.waitLocked(ctx, func() bool {
		if r.mu.flushing && r.mu.flushEpoch == epoch {
			return false
		}
		for _, p := range r.mu.inflight {
			if p.rev <= rev {
				return false
			}
		}
		return true
	})
	r.mu.Unlock()
	if err != nil {
		return err
	}
	// 2. Still the leader, and every write committed before now is applied.
	idx, err := r.cfg.Raft.ReadIndex(ctx, r.group)
	if err != nil {
		var nl *raftgroup.NotLeaderError
		if errors.As(err, &nl) {
			r.mu.Lock()
			r.mu.leader = nl.Leader
			r.publishRouteLocked()
			err = r.notLeaderLocked()
			r.mu.Unlock()
		}
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.waitLocked(ctx, func() bool { return r.mu.applied >= idx }); err != nil {
		return fmt.Errorf("shard: range %d: wait for applied index %d: %w", r.group, idx, err)
	}
	if rev > r.mu.resolved {
		r.mu.resolved = rev
		r.notifyLocked()
	}
	return nil
}

// evaluate runs a read at readRev on snap, an engine snapshot taken with
// compactRev (readViewLocked).
//
// A read at a revision below the compaction revision is refused, also when
// the request names no revision and reads at readRev: the physical
// compaction keeps, per key, only the newest version at or below the
// compaction revision, which may be above readRev, so the version live at
// readRev may be gone and the key would be missing from the answer. A
// linearizable read gets there when a compaction at a revision above its
// timestamp applied while it waited (the router retries it at a fresh
// timestamp); etcd, which reads at its current revision, never does.
func (r *Replica) evaluate(snap *engine.Snapshot, op *pb.RequestOp, readRev, compactRev engine.Revision) (*pb.ResponseOp, engine.Revision, error) {
	switch req := op.GetRequest().(type) {
	case *pb.RequestOp_RequestRange:
		at := readRev
		if rr := engine.Revision(req.RequestRange.GetRevision()); rr > 0 {
			if err := CheckReadRevision(rr, readRev, compactRev); err != nil {
				return nil, 0, err
			}
			at = rr
		} else if readRev < compactRev {
			return nil, 0, rpctypes.ErrGRPCCompacted
		}
		resp, err := Range(snap, req.RequestRange, at)
		if err != nil {
			return nil, 0, err
		}
		return &pb.ResponseOp{Response: &pb.ResponseOp_ResponseRange{ResponseRange: resp}}, readRev, nil
	case *pb.RequestOp_RequestTxn:
		if readRev < compactRev {
			return nil, 0, rpctypes.ErrGRPCCompacted
		}
		resp, err := EvalReadOnlyTxnEnv(snap, req.RequestTxn, readRev, TxnEnv{CompactRev: compactRev, LeaseExists: noLeases})
		if err != nil {
			return nil, 0, err
		}
		return &pb.ResponseOp{Response: &pb.ResponseOp_ResponseTxn{ResponseTxn: resp}}, readRev, nil
	}
	return nil, 0, fmt.Errorf("shard: range %d: %T is not a read", r.group, op.GetRequest())
}

// LeaseKeys serves a linearizable read, at readRev, of the live keys of the
// range attached to a lease, from the range's lease index (lease_index.go):
// a RangeResponse listing them in key order (key and lease only), at
// revision readRev.
func (r *Replica) LeaseKeys(ctx context.Context, generation uint64, lease int64, readRev engine.Revision) (*pb.ResponseOp, engine.Revision, error) {
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
	r.cfg.Metrics.reads.Inc()
	r.load.add(time.Now(), 1)
	r.mu.Unlock()
	snap, compact, err := r.linearizableView(ctx, readRev)
	if err != nil {
		return nil, 0, err
	}
	defer snap.Close()
	if readRev < compact {
		return nil, 0, rpctypes.ErrGRPCCompacted
	}
	keys, err := leaseKeys(snap, uint64(r.group), lease, readRev)
	if err != nil {
		return nil, 0, err
	}
	resp := &pb.RangeResponse{Count: int64(len(keys))}
	for _, k := range keys {
		resp.Kvs = append(resp.Kvs, &mvccpb.KeyValue{Key: k, Lease: lease})
	}
	return &pb.ResponseOp{Response: &pb.ResponseOp_ResponseRange{ResponseRange: resp}}, readRev, nil
}
