package shard

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/tesseradb/tessera/engine"
	"github.com/tesseradb/tessera/proto/tesserapb"
	"github.com/tesseradb/tessera/raftgroup"
)

// Merges.
//
// A range merges with its right neighbour when both have the same replica
// set (replicas do not move yet). The merge runs in three steps:
//
//  1. Freeze the right: a command of the right range (ShardCommand.freeze).
//     From its apply on, the right refuses every write and read with a
//     routing error (retried by routers), so its data is final; the frozen
//     flag is replicated state (range state), so it survives restarts.
//  2. Wait until every replica of the right applied the freeze (its index
//     F): then every node holds the right's final data.
//  3. A merge command of the left (ShardCommand.merge). Applying it widens
//     the left to the right's end (generation max(left, right)+1), takes
//     the right's change log and lease index, the higher incarnation of
//     each revoked lease, the higher compaction revision, applied revision
//     and log cut, deletes the right's replicated state and writes its
//     tombstone, in the batch of the left's applied index. After the
//     commit the Store stops the right's raft group, removes its raft state
//     and keeps a retired replica that sends requests to the left.
//
// If step 3 fails, the initiator thaws the right (ShardCommand.unfreeze).
// A range that stays frozen (the initiator died) is thawed by running the
// merge again, which freezes it (a no-op) and merges, or by an unfreeze.

// ErrMergeRefused wraps the reasons a merge is refused.
var ErrMergeRefused = errors.New("shard: merge refused")

// tombstoneKey marks a range destroyed on this node: it is never opened or
// recreated again (range ids are never reused).
func tombstoneKey(id uint64) []byte {
	return engine.StoreKey(fmt.Sprintf("tombstone/%020d", id))
}

// SameReplicas reports whether two ranges have the same replica set.
func SameReplicas(a, b *tesserapb.RangeDescriptor) bool {
	x, y := ReplicaNodes(a), ReplicaNodes(b)
	slices.Sort(x)
	slices.Sort(y)
	return slices.Equal(x, y)
}

// ValidateMerge checks that right is left's right neighbour on the same
// replicas.
func ValidateMerge(left, right *tesserapb.RangeDescriptor) error {
	switch {
	case len(left.GetEndKey()) == 0:
		return fmt.Errorf("%w: range %d is the last range, it has no right neighbour", ErrMergeRefused, left.GetRangeId())
	case !bytes.Equal(left.GetEndKey(), right.GetStartKey()):
		return fmt.Errorf("%w: range %d [%q, %q) does not start where range %d ends (%q)", ErrMergeRefused, right.GetRangeId(), right.GetStartKey(), right.GetEndKey(), left.GetRangeId(), left.GetEndKey())
	case !SameReplicas(left, right):
		return fmt.Errorf("%w: range %d has replicas on nodes %v and range %d on nodes %v: only ranges with the same replica set merge (replicas do not move yet)",
			ErrMergeRefused, left.GetRangeId(), ReplicaNodes(left), right.GetRangeId(), ReplicaNodes(right))
	}
	return nil
}

// Freeze freezes (unfreeze: thaws) the range for a merge, on its leader,
// and returns the raft index of the command and the range's descriptor.
func (r *Replica) Freeze(ctx context.Context, generation uint64, unfreeze bool) (uint64, *tesserapb.RangeDescriptor, error) {
	rt := r.route.Load()
	if rt.closed {
		return 0, nil, ErrReplicaClosed
	}
	if rt.mergedInto != nil || generation != 0 && generation != rt.desc.GetGeneration() {
		return 0, nil, rt.check(generation)
	}
	if !rt.isLeader {
		return 0, nil, rt.notLeader()
	}
	p := &proposal{id: r.nextID.Add(1), generation: rt.desc.GetGeneration(), done: make(chan struct{}), freeze: !unfreeze, unfreeze: unfreeze}
	r.batches.Add(p, p.done)
	select {
	case <-p.done:
	case <-ctx.Done():
		return 0, nil, ctx.Err()
	}
	if p.err != nil {
		return 0, nil, p.err
	}
	idx, _ := p.result.(uint64)
	return idx, r.Descriptor(), nil
}

// Merge merges the frozen right neighbour (frozen at index frozen) into
// this range, on its leader, and returns the merged descriptor.
func (r *Replica) Merge(ctx context.Context, generation uint64, right *tesserapb.RangeDescriptor, frozen uint64, trigger string) (*tesserapb.RangeDescriptor, error) {
	rt := r.route.Load()
	if err := rt.check(generation); err != nil {
		return nil, err
	}
	if !rt.isLeader {
		return nil, rt.notLeader()
	}
	if err := ValidateMerge(rt.desc, right); err != nil {
		return nil, err
	}
	start := time.Now()
	p := &proposal{id: r.nextID.Add(1), generation: rt.desc.GetGeneration(), done: make(chan struct{}),
		merge: &tesserapb.MergeTrigger{Right: right, FrozenIndex: frozen, Trigger: trigger}}
	r.batches.Add(p, p.done)
	select {
	case <-p.done:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if p.err != nil {
		return nil, p.err
	}
	merged, _ := p.result.(*tesserapb.RangeDescriptor)
	if merged == nil {
		return nil, fmt.Errorf("shard: range %d: merge applied without a result", r.group)
	}
	r.cfg.Metrics.merges.WithLabelValues(TriggerLabel(trigger)).Inc()
	r.log.Info("ranges merged", "right_range", right.GetRangeId(), "trigger", trigger, "took", time.Since(start))
	return merged, nil
}

// frozenError is what a frozen range answers: no leader to try, retry.
func (s *routeState) frozenError() error {
	return &RoutingError{
		Code:       tesserapb.RoutingError_NOT_LEADER,
		Descriptor: s.desc,
		Msg:        fmt.Sprintf("range %d is frozen for a merge", s.group),
	}
}

// applyFreezeLocked applies a freeze or an unfreeze.
func (r *Replica) applyFreezeLocked(cmd *tesserapb.ShardCommand) (*pb.ResponseOp, error) {
	r.mu.frozen = cmd.GetFreeze()
	r.noteFrozenLocked()
	r.publishRouteLocked()
	return &pb.ResponseOp{}, nil
}

// mergeApplied is a merge this replica applied, for the Store once the
// apply batch committed.
type mergeApplied struct {
	merged  *tesserapb.RangeDescriptor
	rightID uint64
}

// applyMergeLocked applies a merge command (its generation was checked).
func (r *Replica) applyMergeLocked(b *engine.Batch, cmd *tesserapb.ShardCommand) (*pb.ResponseOp, *tesserapb.RangeDescriptor, error) {
	mt := cmd.GetMerge()
	right := mt.GetRight()
	if err := ValidateMerge(r.mu.desc, right); err != nil {
		return nil, nil, status.Error(codes.FailedPrecondition, err.Error())
	}
	rg := right.GetRangeId()
	// The right's state on this node: its descriptor as frozen (the same on
	// every replica: only its own log changes it, and it is frozen).
	local, err := ReadDescriptor(b, raftgroup.GroupID(rg))
	if err != nil {
		return nil, nil, storageError{err: err}
	}
	if local == nil || local.GetGeneration() != right.GetGeneration() {
		return nil, nil, status.Errorf(codes.FailedPrecondition, "shard: range %d: merge: range %d here is %v, the merge names generation %d", r.group, rg, local, right.GetGeneration())
	}
	rst, err := readRangeState(b, rg)
	if err != nil {
		return nil, nil, storageError{err: err}
	}
	if !rst.frozen {
		return nil, nil, status.Errorf(codes.FailedPrecondition, "shard: range %d: merge: range %d is not frozen", r.group, rg)
	}
	if idx, err := raftgroup.AppliedIndex(b, raftgroup.GroupID(rg)); err != nil {
		return nil, nil, storageError{err: err}
	} else if idx < mt.GetFrozenIndex() {
		// The initiator checked every replica first; a replica behind here
		// would miss the right's last writes. Its hash will show it.
		r.log.Error("merge applied while the right replica is behind its freeze", "right", rg, "applied", idx, "frozen_index", mt.GetFrozenIndex())
	}
	merged := proto.Clone(r.mu.desc).(*tesserapb.RangeDescriptor)
	merged.EndKey = bytes.Clone(right.GetEndKey())
	merged.Generation = max(r.mu.desc.GetGeneration(), right.GetGeneration()) + 1
	v, err := proto.Marshal(merged)
	if err != nil {
		return nil, nil, storageError{err: err}
	}
	g := uint64(r.group)
	if err := errors.Join(
		b.Set(engine.LocalGroupKey(g, engine.KindDescriptor), v),
		mergeChangeLog(b, g, rg),
		moveLeaseIndex(b, g, rg),
		mergeRevokedLeases(b, g, rg),
		r.mergeAuthRevisionLocked(b, rg),
		copyLocalKind(b, rg, g, engine.KindMovedWrite),
		b.DeleteRange(engine.LocalGroupReplicatedSpan(rg)),
		b.Set(tombstoneKey(rg), nil),
	); err != nil {
		return nil, nil, storageError{err: fmt.Errorf("shard: range %d: merge range %d: %w", g, rg, err)}
	}
	r.mu.compactRev = max(r.mu.compactRev, rst.compact)
	r.mu.appliedRev = max(r.mu.appliedRev, rst.applied, engine.Revision(cmd.GetRevision()))
	r.mu.logCut = max(r.mu.logCut, rst.logCut)
	r.mu.desc = merged
	r.publishRouteLocked()
	r.mu.merges = append(r.mu.merges, mergeApplied{merged: merged, rightID: rg})
	return &pb.ResponseOp{}, merged, nil
}

// readRangeState reads a range's state from a reader.
func readRangeState(rd engine.Reader, group uint64) (rangeState, error) {
	v, err := rd.Get(engine.LocalGroupKey(group, engine.KindRangeState))
	switch {
	case errors.Is(err, engine.ErrNotFound):
		return rangeState{}, nil
	case err != nil:
		return rangeState{}, err
	}
	return decodeRangeState(v)
}

// mergeChangeLog moves the right's change-log entries to the left (an
// entry at a revision both have gets both key lists).
func mergeChangeLog(b *engine.Batch, left, right uint64) error {
	ents, err := readChangeLogEntries(b, right)
	if err != nil {
		return err
	}
	for _, e := range ents {
		v := e.v
		if old, err := b.Get(changeLogKey(left, e.rev)); err == nil {
			v = append(bytes.Clone(old), v...)
		} else if !errors.Is(err, engine.ErrNotFound) {
			return err
		}
		if err := b.Set(changeLogKey(left, e.rev), v); err != nil {
			return err
		}
	}
	return nil
}

// moveLeaseIndex moves the right's lease-index entries to the left.
func moveLeaseIndex(b *engine.Batch, left, right uint64) error {
	span := engine.LocalGroupKindSpan(right, engine.KindLeaseKey)
	var keys [][]byte
	it, err := b.NewIter(span)
	if err != nil {
		return err
	}
	for ok := it.First(); ok; ok = it.Next() {
		keys = append(keys, bytes.Clone(it.Key()))
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return err
	}
	for _, k := range keys {
		uk, err := engine.UserKeyOfLeaseKey(k)
		if err != nil {
			return err
		}
		lease, err := leaseOfLeaseKey(k)
		if err != nil {
			return err
		}
		if err := b.Set(engine.LeaseKeyKey(left, lease, uk), nil); err != nil {
			return err
		}
	}
	return nil
}

// mergeRevokedLeases keeps, per lease id, the record of the higher revoked
// incarnation (with its forget-after entry).
func mergeRevokedLeases(b *engine.Batch, left, right uint64) error {
	span := engine.LocalGroupKindSpan(right, engine.KindRevokedLease)
	type rec struct {
		id int64
		v  []byte
	}
	var recs []rec
	it, err := b.NewIter(span)
	if err != nil {
		return err
	}
	for ok := it.First(); ok; ok = it.Next() {
		idx, err := engine.DecodeLocalGroupIndexKey(it.Key())
		if err != nil {
			it.Close()
			return err
		}
		v, err := it.Value()
		if err != nil {
			it.Close()
			return err
		}
		recs = append(recs, rec{id: int64(idx), v: bytes.Clone(v)})
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return err
	}
	taken := map[int64]bool{}
	for _, x := range recs {
		have, err := revokedIncarnation(b, left, x.id)
		if err != nil {
			return err
		}
		inc, err := revokedIncarnation(b, right, x.id)
		if err != nil {
			return err
		}
		if inc > have {
			taken[x.id] = true
			if err := b.Set(revokedLeaseKey(left, x.id), x.v); err != nil {
				return err
			}
		}
	}
	// Forget-after entries (revision, lease id) of the records taken.
	gspan := engine.LocalGroupKindSpan(right, engine.KindRevokedGC)
	prefix := engine.LocalGroupKindSpan(left, engine.KindRevokedGC).Start
	type kv struct{ k, v []byte }
	var gc []kv
	it, err = b.NewIter(gspan)
	if err != nil {
		return err
	}
	for ok := it.First(); ok; ok = it.Next() {
		suffix := it.Key()[len(gspan.Start):]
		if len(suffix) < 16 {
			continue
		}
		id := int64(binary.BigEndian.Uint64(suffix[8:16]))
		if !taken[id] {
			continue
		}
		v, err := it.Value()
		if err != nil {
			it.Close()
			return err
		}
		gc = append(gc, kv{k: append(bytes.Clone(prefix), suffix...), v: bytes.Clone(v)})
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return err
	}
	for _, e := range gc {
		if err := b.Set(e.k, e.v); err != nil {
			return err
		}
	}
	return nil
}

// retire closes a replica whose range was merged into merged: from then on
// it answers every request with a routing error naming merged.
func (r *Replica) retire(merged *tesserapb.RangeDescriptor) {
	r.mu.Lock()
	r.mu.mergedInto = merged
	r.publishRouteLocked()
	r.mu.Unlock()
	r.Close()
}

// mergeAuthRevisionLocked keeps the higher auth revision of the two ranges.
func (r *Replica) mergeAuthRevisionLocked(b *engine.Batch, right uint64) error {
	v, err := b.Get(engine.LocalGroupKey(right, engine.KindAuthRevision))
	switch {
	case errors.Is(err, engine.ErrNotFound):
		return nil
	case err != nil:
		return err
	case len(v) != 8:
		return fmt.Errorf("shard: range %d: auth revision of %d bytes", right, len(v))
	}
	if rev := binary.BigEndian.Uint64(v); rev > r.mu.authRev {
		r.mu.authRev = rev
		return b.Set(engine.LocalGroupKey(uint64(r.group), engine.KindAuthRevision), v)
	}
	return nil
}

// changeLogEntry is one change-log entry as stored (its encoded keys).
type changeLogEntry struct {
	rev engine.Revision
	v   []byte
}

// readChangeLogEntries reads every change-log entry of a group, in
// revision order (splits and merges rewrite them in the same batch).
func readChangeLogEntries(rd engine.Reader, group uint64) ([]changeLogEntry, error) {
	var ents []changeLogEntry
	it, err := rd.NewIter(engine.LocalGroupKindSpan(group, engine.KindChangeLog))
	if err != nil {
		return nil, err
	}
	for ok := it.First(); ok; ok = it.Next() {
		idx, err := engine.DecodeLocalGroupIndexKey(it.Key())
		if err != nil {
			it.Close()
			return nil, err
		}
		v, err := it.Value()
		if err != nil {
			it.Close()
			return nil, err
		}
		ents = append(ents, changeLogEntry{rev: engine.Revision(idx), v: bytes.Clone(v)})
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return nil, err
	}
	return ents, nil
}
