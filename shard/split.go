package shard

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/tesseradb/tessera/engine"
	"github.com/tesseradb/tessera/proto/tesserapb"
	"github.com/tesseradb/tessera/raftgroup"
)

// Splits.
//
// A split is a command of the range's own log (ShardCommand.split), so
// every replica applies it at the same index, after every write proposed
// before it and before every write proposed after it. Applying it writes,
// in the batch that also records the left's applied index:
//
//   - the left's descriptor: [start, split key), generation+1;
//   - the right's descriptor: the new range id, [split key, end),
//     generation+1, the same replicas;
//   - the right's range state: the left's compaction revision, applied
//     revision and change-log cut (the right's history is the left's, so
//     reads and watches from before the split see the same past);
//   - the right's share of the change log (the user keys of each entry that
//     are now on the right move to an entry of the right at the same
//     revision) and of the lease index, and a copy of the revoked leases;
//   - the right's initial raft state (raftgroup.WriteSplitBootstrap).
//
// No data moves: the MVCC versions of a user key all sort together, and a
// split key is a user key, so every version of a key stays on one side.
// After the batch committed, the node's Store opens the right replica and
// its raft group (Config.OnSplit). A crash before the commit re-applies the
// split from the log; a crash after it finds both descriptors when the
// Store scans the engine at start. Either way one layout.
//
// Requests in flight on the left carry the old generation: the apply
// refuses them with STALE_GENERATION and the new descriptor, and the router
// sends them again to the range that now holds their keys.

// ErrSplitRefused wraps the reasons a split is refused before or at apply.
var ErrSplitRefused = errors.New("shard: split refused")

// SplitResult is the layout a split produced.
type SplitResult struct {
	Left, Right *tesserapb.RangeDescriptor
}

// ValidateSplitKey checks that key cuts desc into two non-empty halves:
// start < key < end.
func ValidateSplitKey(desc *tesserapb.RangeDescriptor, key []byte) error {
	switch {
	case len(key) == 0:
		return fmt.Errorf("%w: empty split key", ErrSplitRefused)
	case bytes.Compare(key, desc.GetStartKey()) <= 0:
		return fmt.Errorf("%w: split key %q is not after the start %q of range %d", ErrSplitRefused, key, desc.GetStartKey(), desc.GetRangeId())
	case len(desc.GetEndKey()) > 0 && bytes.Compare(key, desc.GetEndKey()) >= 0:
		return fmt.Errorf("%w: split key %q is not before the end %q of range %d", ErrSplitRefused, key, desc.GetEndKey(), desc.GetRangeId())
	}
	return nil
}

// Split splits the range at key, giving the right half the id rightID
// (allocated by the meta group), and returns both halves once the split
// applied here. Only the leader splits; generation (0: any) must be the
// range's current one.
func (r *Replica) Split(ctx context.Context, generation uint64, key []byte, rightID uint64, trigger string) (SplitResult, error) {
	rt := r.route.Load()
	if err := rt.check(generation); err != nil {
		return SplitResult{}, err
	}
	if !rt.isLeader {
		return SplitResult{}, rt.notLeader()
	}
	if err := ValidateSplitKey(rt.desc, key); err != nil {
		return SplitResult{}, err
	}
	if rightID == 0 || raftgroup.GroupID(rightID) == r.group {
		return SplitResult{}, fmt.Errorf("%w: bad right range id %d", ErrSplitRefused, rightID)
	}
	p := &proposal{
		id: r.nextID.Add(1), generation: rt.desc.GetGeneration(), done: make(chan struct{}),
		split: &tesserapb.SplitTrigger{SplitKey: bytes.Clone(key), RightRangeId: rightID, Trigger: trigger},
	}
	start := time.Now()
	r.batches.Add(p, p.done)
	CrashPoint(CrashSplitAfterPropose)
	select {
	case <-p.done:
	case <-ctx.Done():
		return SplitResult{}, ctx.Err()
	}
	if p.err != nil {
		return SplitResult{}, p.err
	}
	res, _ := p.result.(SplitResult)
	if res.Left == nil {
		return SplitResult{}, fmt.Errorf("shard: range %d: split applied without a result", r.group)
	}
	r.cfg.Metrics.splits.WithLabelValues(TriggerLabel(trigger)).Inc()
	r.log.Info("range split", "split_key", string(key), "right_range", rightID, "trigger", trigger, "took", time.Since(start))
	return res, nil
}

// applySplitLocked applies a split command (its generation was checked).
func (r *Replica) applySplitLocked(b *engine.Batch, cmd *tesserapb.ShardCommand) (*pb.ResponseOp, SplitResult, error) {
	st := cmd.GetSplit()
	old := r.mu.desc
	if cmd.GetGeneration() == 0 {
		return nil, SplitResult{}, status.Errorf(codes.FailedPrecondition, "shard: range %d: split without a generation", r.group)
	}
	if err := ValidateSplitKey(old, st.GetSplitKey()); err != nil {
		return nil, SplitResult{}, status.Error(codes.FailedPrecondition, err.Error())
	}
	rightID := st.GetRightRangeId()
	if rightID == 0 || rightID == uint64(r.group) {
		return nil, SplitResult{}, status.Errorf(codes.FailedPrecondition, "shard: range %d: split: bad right range id %d", r.group, rightID)
	}
	if _, err := b.Get(engine.LocalGroupKey(rightID, engine.KindDescriptor)); err == nil {
		return nil, SplitResult{}, status.Errorf(codes.FailedPrecondition, "shard: range %d: split: range %d exists already", r.group, rightID)
	} else if !errors.Is(err, engine.ErrNotFound) {
		return nil, SplitResult{}, storageError{err: err}
	}
	left := proto.Clone(old).(*tesserapb.RangeDescriptor)
	left.EndKey = bytes.Clone(st.GetSplitKey())
	left.Generation = old.GetGeneration() + 1
	right := proto.Clone(old).(*tesserapb.RangeDescriptor)
	right.RangeId = rightID
	right.StartKey = bytes.Clone(st.GetSplitKey())
	right.Generation = left.GetGeneration()

	applied := max(r.mu.appliedRev, engine.Revision(cmd.GetRevision()))
	if err := writeSplitState(b, uint64(r.group), left, right, rangeState{compact: r.mu.compactRev, applied: applied, logCut: r.mu.logCut}); err != nil {
		return nil, SplitResult{}, storageError{err: fmt.Errorf("shard: range %d: split at %q: %w", r.group, st.GetSplitKey(), err)}
	}
	r.mu.appliedRev = applied
	r.mu.desc = left
	r.publishRouteLocked()
	res := SplitResult{Left: left, Right: right}
	r.mu.splits = append(r.mu.splits, splitApplied{res: res, trigger: st.GetTrigger()})
	return &pb.ResponseOp{}, res, nil
}

// writeSplitState writes everything a split changes on one replica into b
// (see the comment at the top of the file). The left's own range state is
// written by Apply with the command's applied revision.
func writeSplitState(b *engine.Batch, group uint64, left, right *tesserapb.RangeDescriptor, st rangeState) error {
	rg := right.GetRangeId()
	for _, d := range []*tesserapb.RangeDescriptor{left, right} {
		v, err := proto.Marshal(d)
		if err != nil {
			return fmt.Errorf("encode descriptor: %w", err)
		}
		if err := b.Set(engine.LocalGroupKey(d.GetRangeId(), engine.KindDescriptor), v); err != nil {
			return err
		}
	}
	if err := b.Set(engine.LocalGroupKey(rg, engine.KindRangeState), encodeRangeState(st)); err != nil {
		return err
	}
	if err := splitChangeLog(b, group, rg, right); err != nil {
		return fmt.Errorf("change log: %w", err)
	}
	if err := splitLeaseIndex(b, group, rg, right); err != nil {
		return fmt.Errorf("lease index: %w", err)
	}
	// Revoked leases (and when they may be forgotten) and the auth
	// revision hold for both halves.
	for _, kind := range []byte{engine.KindRevokedLease, engine.KindRevokedGC, engine.KindAuthRevision} {
		if err := copyLocalKind(b, group, rg, kind); err != nil {
			return fmt.Errorf("local keys of kind %q: %w", kind, err)
		}
	}
	return raftgroup.WriteSplitBootstrap(b, raftgroup.GroupID(rg), RaftVoters(right))
}

// splitChangeLog moves the right's keys of every change-log entry of the
// left to an entry of the right at the same revision.
func splitChangeLog(b *engine.Batch, group, rg uint64, right *tesserapb.RangeDescriptor) error {
	ents, err := readChangeLogEntries(b, group)
	if err != nil {
		return err
	}
	for _, e := range ents {
		keys, err := decodeChangeLog(e.v)
		if err != nil {
			return err
		}
		var l, rk [][]byte
		for _, k := range keys {
			if ContainsKey(right, k) {
				rk = append(rk, k)
			} else {
				l = append(l, k)
			}
		}
		if len(rk) == 0 {
			continue
		}
		if err := b.Set(changeLogKey(rg, e.rev), encodeChangeLog(rk)); err != nil {
			return err
		}
		if len(l) == 0 {
			err = errors.Join(b.Delete(changeLogKey(group, e.rev)), b.Set(movedWriteKey(group, e.rev), nil))
		} else {
			err = b.Set(changeLogKey(group, e.rev), encodeChangeLog(l))
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// splitLeaseIndex moves the lease-index entries of the right's keys.
func splitLeaseIndex(b *engine.Batch, group, rg uint64, right *tesserapb.RangeDescriptor) error {
	type entry struct {
		lease int64
		key   []byte
	}
	var moves []entry
	span := engine.LocalGroupKindSpan(group, engine.KindLeaseKey)
	it, err := b.NewIter(span)
	if err != nil {
		return err
	}
	for ok := it.First(); ok; ok = it.Next() {
		k := it.Key()
		uk, err := engine.UserKeyOfLeaseKey(k)
		if err != nil {
			it.Close()
			return err
		}
		if !ContainsKey(right, uk) {
			continue
		}
		lease, err := leaseOfLeaseKey(k)
		if err != nil {
			it.Close()
			return err
		}
		moves = append(moves, entry{lease: lease, key: bytes.Clone(uk)})
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return err
	}
	for _, m := range moves {
		if err := b.Delete(engine.LeaseKeyKey(group, m.lease, m.key)); err != nil {
			return err
		}
		if err := b.Set(engine.LeaseKeyKey(rg, m.lease, m.key), nil); err != nil {
			return err
		}
	}
	return nil
}

// leaseOfLeaseKey decodes the lease id of a lease-index key.
func leaseOfLeaseKey(k []byte) (int64, error) {
	// Layout: space(1) group(8) section(1) kind(1) lease(8) user key sentinel.
	const off = 1 + 8 + 1 + 1
	if len(k) < off+8+1 {
		return 0, fmt.Errorf("shard: not a lease index key: %q", k)
	}
	var id uint64
	for _, c := range k[off : off+8] {
		id = id<<8 | uint64(c)
	}
	return int64(id), nil
}

// copyLocalKind copies every key of one kind of the group's local keys to
// the same kind of group to (the suffix after the kind byte is kept).
func copyLocalKind(b *engine.Batch, from, to uint64, kind byte) error {
	span := engine.LocalGroupKindSpan(from, kind)
	toPrefix := engine.LocalGroupKindSpan(to, kind).Start
	type kv struct{ k, v []byte }
	var out []kv
	it, err := b.NewIter(span)
	if err != nil {
		return err
	}
	for ok := it.First(); ok; ok = it.Next() {
		v, err := it.Value()
		if err != nil {
			it.Close()
			return err
		}
		suffix := it.Key()[len(span.Start):]
		out = append(out, kv{k: append(bytes.Clone(toPrefix), suffix...), v: bytes.Clone(v)})
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return err
	}
	for _, e := range out {
		if err := b.Set(e.k, e.v); err != nil {
			return err
		}
	}
	return nil
}

// splitApplied is a split this replica applied, for the Store once the
// apply batch committed.
type splitApplied struct {
	res     SplitResult
	trigger string
}
