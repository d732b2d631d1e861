package shard

import (
	"errors"
	"fmt"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/tesseradb/tessera/engine"
	"github.com/tesseradb/tessera/proto/tesserapb"
	"github.com/tesseradb/tessera/raftgroup"
)

// applyResult is the outcome of a command this replica proposed.
type applyResult struct {
	id   uint64
	resp *pb.ResponseOp
	err  error
	// result: a split's layout (SplitResult).
	result any
}

// Apply implements raftgroup.StateMachine: it applies committed commands in
// log order into b. A command's own failure (an etcd error) is its result and
// writes nothing; only a corrupt entry or a storage error fails Apply.
func (r *Replica) Apply(b *engine.Batch, ents []*raftpb.Entry) error {
	start := time.Now()
	defer func() { r.cfg.Metrics.applyDuration.Observe(time.Since(start).Seconds()) }()
	defer r.setPeersAfterApply()
	r.mu.Lock()
	defer r.mu.Unlock()
	touched := false
	for _, e := range ents {
		r.mu.cl.appliedTerm = e.GetTerm()
		if t := e.GetType(); t == raftpb.EntryConfChange || t == raftpb.EntryConfChangeV2 {
			if _, err := r.applyConfChangeLocked(b, e); err != nil {
				return err
			}
			r.mu.peersChanged = true
			continue
		}
		if e.GetType() != raftpb.EntryNormal || len(e.GetData()) == 0 {
			continue
		}
		cmd := &tesserapb.ShardCommand{}
		if err := proto.Unmarshal(e.GetData(), cmd); err != nil {
			return fmt.Errorf("shard: range %d: decode command at index %d: %w", r.group, e.GetIndex(), err)
		}
		resp, err := r.applyCommandLocked(b, cmd)
		if isStorageError(err) {
			return err
		}
		touched = true
		if cmd.GetProposerNode() == uint64(r.cfg.NodeID) {
			res := applyResult{id: cmd.GetProposalId(), resp: resp, err: err}
			switch {
			case err != nil:
			case cmd.GetSplit() != nil && len(r.mu.splits) > 0:
				res.result = r.mu.splits[len(r.mu.splits)-1].res
			case cmd.GetMerge() != nil && len(r.mu.merges) > 0:
				res.result = r.mu.merges[len(r.mu.merges)-1].merged
			case cmd.GetFreeze() || cmd.GetUnfreeze():
				res.result = e.GetIndex()
			}
			r.mu.applyResults = append(r.mu.applyResults, res)
		}
	}
	if !touched {
		return nil
	}
	return b.Set(engine.LocalGroupKey(uint64(r.group), engine.KindRangeState), encodeRangeState(rangeState{compact: r.mu.compactRev, applied: r.mu.appliedRev, logCut: r.mu.logCut, frozen: r.mu.frozen}))
}

// storageError marks errors that must stop the apply (not a command result).
type storageError struct{ err error }

func (e storageError) Error() string { return e.err.Error() }
func (e storageError) Unwrap() error { return e.err }

func isStorageError(err error) bool {
	_, ok := err.(storageError)
	return ok
}

func (r *Replica) applyCommandLocked(b *engine.Batch, cmd *tesserapb.ShardCommand) (*pb.ResponseOp, error) {
	rev := engine.Revision(cmd.GetRevision())
	if g := cmd.GetGeneration(); g != 0 && g != r.mu.desc.GetGeneration() {
		return nil, r.checkRoutingLocked(g)
	}
	if cmd.GetFreeze() || cmd.GetUnfreeze() {
		r.mu.appliedRev = max(r.mu.appliedRev, rev)
		return r.applyFreezeLocked(cmd)
	}
	if r.mu.frozen {
		// Proposed before the freeze applied: refused alike everywhere.
		return nil, r.routeLocked().frozenError()
	}
	if cmd.GetMerge() != nil {
		resp, _, err := r.applyMergeLocked(b, cmd)
		return resp, err
	}
	if cmd.GetSplit() != nil {
		// Refused splits change nothing, not even the applied revision.
		resp, res, err := r.applySplitLocked(b, cmd)
		if err == nil {
			r.log.Debug("split applied", "left", res.Left.String(), "right", res.Right.String())
		}
		return resp, err
	}
	if err := r.checkCompactionLocked(cmd); err != nil {
		return nil, err
	}
	if err := r.checkAuthRevisionLocked(b, cmd); err != nil {
		return nil, err
	}
	if len(cmd.GetRequestOp()) > 0 || len(cmd.GetRevokeLeases()) > 0 {
		if err := r.checkWriteRevisionLocked(rev); err != nil {
			return nil, err
		}
		if err := r.forgetRevokedLocked(b, rev); err != nil {
			return nil, storageError{err: err}
		}
	}
	if rev > r.mu.appliedRev {
		r.mu.appliedRev = rev
	}
	if c := engine.Revision(cmd.GetCompactRevision()); c > 0 {
		if c <= r.mu.compactRev {
			return nil, rpctypes.ErrGRPCCompacted
		}
		r.mu.compactRev = c
		r.mu.compactNext = c
		// The change log below the compaction revision goes with the
		// history it indexes (in the same batch: every replica drops it at
		// the same index). The newest entry cut is remembered: only feeds
		// behind it lost events.
		span := changeLogSpan(uint64(r.group), 0, c)
		cut, err := lastChangeLogRev(b, span)
		if err != nil {
			return nil, storageError{err: err}
		}
		r.mu.logCut = max(r.mu.logCut, cut)
		if err := errors.Join(b.DeleteRange(span), b.DeleteRange(movedWriteSpan(uint64(r.group), 0, c))); err != nil {
			return nil, storageError{err: err}
		}
		return &pb.ResponseOp{}, nil
	}
	if len(cmd.GetRevokeLeases()) > 0 {
		return r.applyRevokeLocked(b, cmd, rev)
	}
	if err := checkLeaseLookups(cmd, rev); err != nil {
		return nil, err
	}
	op := &pb.RequestOp{}
	if err := proto.Unmarshal(cmd.GetRequestOp(), op); err != nil {
		return nil, fmt.Errorf("shard: range %d: decode request: %w", r.group, err)
	}
	env := TxnEnv{CompactRev: r.mu.compactRev, LeaseExists: r.leaseCheck(b, cmd)}
	var out *pb.ResponseOp
	var err error
	b.TrackDataWrites()
	b.TakeDataWrites()
	switch req := op.GetRequest().(type) {
	case *pb.RequestOp_RequestPut:
		if l := req.RequestPut.GetLease(); l != 0 && !env.LeaseExists(l) {
			return nil, rpctypes.ErrGRPCLeaseNotFound
		}
		var resp *pb.PutResponse
		if resp, err = ApplyPut(b, req.RequestPut, rev); err == nil {
			out = &pb.ResponseOp{Response: &pb.ResponseOp_ResponsePut{ResponsePut: resp}}
		}
	case *pb.RequestOp_RequestDeleteRange:
		var resp *pb.DeleteRangeResponse
		if resp, err = ApplyDeleteRange(b, req.RequestDeleteRange, rev); err == nil {
			out = &pb.ResponseOp{Response: &pb.ResponseOp_ResponseDeleteRange{ResponseDeleteRange: resp}}
		}
	case *pb.RequestOp_RequestTxn:
		var resp *pb.TxnResponse
		if resp, err = ApplyTxnEnv(b, req.RequestTxn, rev, env); err == nil {
			out = &pb.ResponseOp{Response: &pb.ResponseOp_ResponseTxn{ResponseTxn: resp}}
		}
	default:
		return nil, fmt.Errorf("shard: range %d: unsupported write %T", r.group, op.GetRequest())
	}
	if err != nil && !isEtcdError(err) {
		return nil, storageError{err: err}
	}
	if written := b.TakeDataWrites(); err == nil && len(written) > 0 {
		if lerr := b.Set(changeLogKey(uint64(r.group), rev), encodeChangeLog(written)); lerr != nil {
			return nil, storageError{err: lerr}
		}
		if lerr := updateLeaseIndex(b, uint64(r.group), written, rev); lerr != nil {
			return nil, storageError{err: lerr}
		}
	}
	return out, err
}

// checkCompactionLocked refuses, before the command changes anything, a
// compaction that would move the compaction revision above the range's
// applied revision (this command's own revision included). A compaction the
// router sends is at a revision the TSO issued before the command's own
// revision was fetched, so it is always below that; one above it names
// history that has not happened, and compacting there would make every
// acknowledged revision unreadable and every later compaction impossible.
// The decision depends only on the command and the replicated state, so
// every replica refuses it alike.
func (r *Replica) checkCompactionLocked(cmd *tesserapb.ShardCommand) error {
	c := engine.Revision(cmd.GetCompactRevision())
	switch {
	case c < 0:
		return rpctypes.ErrGRPCCompacted
	case c > 0 && c > max(r.mu.appliedRev, engine.Revision(cmd.GetRevision())):
		r.log.Warn("refused a compaction above the applied revision", "compact_revision", int64(c), "applied_revision", int64(r.mu.appliedRev), "command_revision", cmd.GetRevision())
		return rpctypes.ErrGRPCFutureRev
	case c > 0 && len(cmd.GetRequestOp()) > 0:
		return status.Errorf(codes.InvalidArgument, "shard: range %d: a command with both a compaction and a request", r.group)
	}
	return nil
}

// checkWriteRevisionLocked refuses a write whose revision is not above the
// range's applied revision: revisions must increase along the log, or a read
// already served at a higher revision would miss the write. The leader's
// pipeline never proposes such a write (a batch whose term changed while it
// waited for timestamps is not proposed), so this is the last line of
// defence. It depends only on replicated state, so every replica refuses the
// same commands and their hashes stay equal. The proposer's client gets
// etcd's "leader changed": the write was not applied and may be retried.
func (r *Replica) checkWriteRevisionLocked(rev engine.Revision) error {
	if rev > r.mu.appliedRev {
		return nil
	}
	r.log.Warn("refused a write whose revision is not above the applied revision", "revision", rev, "applied_revision", r.mu.appliedRev)
	return rpctypes.ErrGRPCLeaderChanged
}

// isEtcdError reports whether err is one of etcd's client-facing errors (a
// command result) rather than a storage failure.
func isEtcdError(err error) bool {
	_, ok := status.FromError(err)
	return ok
}

// Applied implements raftgroup.StateMachine: the apply batch is committed, so
// the results can be given to the waiting writers.
func (r *Replica) Applied(index uint64) {
	r.mu.Lock()
	splits, merges := r.mu.splits, r.mu.merges
	r.mu.splits, r.mu.merges = nil, nil
	r.mu.Unlock()
	for _, m := range merges {
		if h := r.cfg.OnMerge; h != nil {
			h(m.merged, m.rightID)
		}
	}
	// The split's batch is durable: the right half can be served. Outside
	// mu: the Store opens a replica and a raft group.
	for _, s := range splits {
		if h := r.cfg.OnSplit; h != nil {
			h(s.res, s.trigger)
		}
	}
	r.mu.Lock()
	removed := r.mu.removed
	desc := r.mu.desc
	r.mu.Unlock()
	if removed && r.cfg.OnRemoved != nil {
		r.cfg.OnRemoved(desc)
	}
	r.mu.Lock()
	r.mu.applied = index
	r.mu.publishedRev = r.mu.appliedRev
	for _, res := range r.mu.applyResults {
		if p, ok := r.mu.inflight[res.id]; ok {
			delete(r.mu.inflight, res.id)
			p.result = res.result
			p.finish(res.resp, res.err)
		}
	}
	r.mu.applyResults = r.mu.applyResults[:0]
	r.advanceClosedLocked()
	if r.mu.appliedRev > r.mu.resolved && len(r.mu.inflight) == 0 && !r.mu.flushing {
		r.mu.resolved = r.mu.appliedRev
	}
	if c := r.mu.compactNext; c > 0 {
		r.mu.compactNext = 0
		select {
		case r.compactions <- c:
		default:
			// A compaction is queued; the loop takes the newest revision.
			select {
			case <-r.compactions:
			default:
			}
			r.compactions <- c
		}
	}
	r.notifyLocked()
	r.mu.Unlock()
}

// SnapshotApplied implements raftgroup.StateMachine.
func (r *Replica) SnapshotApplied(index uint64) error {
	r.mu.Lock()
	if err := r.loadLocked(); err != nil {
		r.mu.Unlock()
		return err
	}
	r.mu.applied = index
	r.mu.publishedRev = r.mu.appliedRev
	r.advanceClosedLocked()
	r.notifyLocked()
	desc := r.mu.desc
	r.mu.Unlock()
	// The snapshot brought the descriptor the group now runs under: its
	// replicas are the group's peer map (a replica created empty by a
	// leader's message knew only itself and that leader).
	if ps, ok := r.cfg.Raft.(peerSetter); ok {
		if err := ps.SetPeers(r.group, RaftPeers(desc)); err != nil {
			return fmt.Errorf("shard: %s: peers after snapshot: %w", r.group, err)
		}
	}
	return nil
}

// peerSetter is the part of the raft host that takes a group's peer map.
type peerSetter interface {
	SetPeers(id raftgroup.GroupID, peers []raftgroup.Peer) error
}

var _ peerSetter = (*raftgroup.Host)(nil)

// compactLoop drops history below compaction revisions, in the background:
// reads below the compaction revision are refused from the moment the
// compaction applied, so the physical deletion may lag.
func (r *Replica) compactLoop() {
	for {
		select {
		case <-r.stop:
			return
		case rev := <-r.compactions:
			d := r.Descriptor()
			r.cfg.Metrics.compactions.Inc()
			_, err := r.cfg.Engine.MVCCCompactWithProgress(d.GetStartKey(), d.GetEndKey(), rev, r.cfg.CompactBatch,
				func(deleted int) { r.cfg.Metrics.compactedTotal.Add(float64(deleted)) })
			r.cfg.Metrics.compactions.Dec()
			if err != nil {
				r.cfg.Metrics.compactFailures.Inc()
				r.log.Error("compaction failed", "revision", rev, "err", err)
			}
		}
	}
}
