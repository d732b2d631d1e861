package router

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tesseradb/tessera/internal/backoff"
	"github.com/tesseradb/tessera/placement"
	"github.com/tesseradb/tessera/proto/tesserapb"
	"github.com/tesseradb/tessera/raftgroup"
	"github.com/tesseradb/tessera/shard"
)

// Merge timing.
const (
	// mergeCatchUpWait bounds the wait for every replica of the frozen
	// right to apply its freeze (a replica that is down blocks the merge:
	// refused, the right thawed).
	mergeCatchUpWait = 10 * time.Second
	// mergeUnfreezeTimeout bounds the thaw after a failed merge.
	mergeUnfreezeTimeout = 10 * time.Second
)

// MergeRange implements the Internal service: the leader of range_id (this
// node) merges its right neighbour into it.
func (s *Internal) MergeRange(ctx context.Context, req *tesserapb.MergeRangeRequest) (*tesserapb.MergeRangeResponse, error) {
	switch id := req.GetRangeId(); {
	case id == 0:
		return nil, status.Error(codes.InvalidArgument, "router: merge: no range_id")
	case id == placement.MetaRangeID:
		return nil, status.Error(codes.InvalidArgument, "router: merge: the meta group does not merge")
	}
	merged, err := s.r.Merge(ctx, req.GetRangeId(), shard.TriggerAdmin)
	var re *shard.RoutingError
	switch {
	case errors.As(err, &re) && (re.Code == tesserapb.RoutingError_NOT_LEADER || re.Code == tesserapb.RoutingError_RANGE_NOT_FOUND):
		return &tesserapb.MergeRangeResponse{RoutingError: re.Proto()}, nil
	case errors.Is(err, shard.ErrMergeRefused):
		return nil, status.Error(codes.FailedPrecondition, err.Error())
	case err != nil:
		return nil, splitError(err)
	}
	return &tesserapb.MergeRangeResponse{Merged: merged}, nil
}

// FreezeRange implements the Internal service on the range's leader.
func (s *Internal) FreezeRange(ctx context.Context, req *tesserapb.FreezeRangeRequest) (*tesserapb.FreezeRangeResponse, error) {
	rep := s.r.replicas.Replica(req.GetRangeId())
	if rep == nil {
		return &tesserapb.FreezeRangeResponse{RoutingError: &tesserapb.RoutingError{
			Code: tesserapb.RoutingError_RANGE_NOT_FOUND, Message: fmt.Sprintf("range %d not on node %d", req.GetRangeId(), s.r.nodes.Self()),
		}}, nil
	}
	idx, desc, err := rep.Freeze(ctx, req.GetGeneration(), req.GetUnfreeze())
	var re *shard.RoutingError
	switch {
	case errors.As(err, &re):
		return &tesserapb.FreezeRangeResponse{RoutingError: re.Proto()}, nil
	case err != nil:
		return nil, toGRPCError(err)
	}
	return &tesserapb.FreezeRangeResponse{AppliedIndex: idx, RangeDescriptor: desc}, nil
}

// Merge merges the right neighbour of a range this node leads into it and
// returns the merged descriptor: freeze the right on its leader, wait until
// every replica of the right applied the freeze, then a merge command of
// the left (shard/merge.go). If the merge fails after the freeze, the
// right is thawed.
func (r *Router) Merge(ctx context.Context, leftID uint64, trigger string) (*tesserapb.RangeDescriptor, error) {
	rep := r.replicas.Replica(leftID)
	if rep == nil {
		return nil, &shard.RoutingError{Code: tesserapb.RoutingError_RANGE_NOT_FOUND, Msg: fmt.Sprintf("range %d not on node %d", leftID, r.nodes.Self())}
	}
	st := rep.Status()
	if !st.IsLeader {
		return nil, &shard.RoutingError{Code: tesserapb.RoutingError_NOT_LEADER, LeaderNode: uint64(st.Leader), Descriptor: st.Descriptor,
			Msg: fmt.Sprintf("range %d: node %d is not the leader", leftID, r.nodes.Self())}
	}
	left := st.Descriptor
	if len(left.GetEndKey()) == 0 {
		return nil, fmt.Errorf("%w: range %d is the last range, it has no right neighbour", shard.ErrMergeRefused, leftID)
	}
	right, err := r.rightNeighbour(ctx, left)
	if err != nil {
		return nil, err
	}
	if err := shard.ValidateMerge(left, right); err != nil {
		return nil, err
	}
	frozenIdx, frozen, err := r.freeze(ctx, right, false)
	if err != nil {
		return nil, fmt.Errorf("router: merge %d and %d: freeze range %d: %w", leftID, right.GetRangeId(), right.GetRangeId(), err)
	}
	shard.CrashPoint(shard.CrashMergeAfterFreeze)
	merged, err := r.mergeFrozen(ctx, rep, left, frozen, frozenIdx, trigger)
	if err != nil {
		uctx, cancel := context.WithTimeout(context.Background(), mergeUnfreezeTimeout)
		if _, _, uerr := r.freeze(uctx, frozen, true); uerr != nil {
			r.log.Error("a failed merge left its right range frozen; merging again or an unfreeze thaws it", "range", frozen.GetRangeId(), "err", uerr)
		}
		cancel()
		return nil, err
	}
	shard.CrashPoint(shard.CrashMergeBeforeDirectory)
	r.cache.Insert(merged)
	if err := r.directoryChanged(ctx, merged); err != nil {
		r.log.Warn("directory not updated after a merge", "range", leftID, "err", err)
	}
	return merged, nil
}

// mergeFrozen waits for the frozen right's replicas, then merges.
func (r *Router) mergeFrozen(ctx context.Context, rep *shard.Replica, left, right *tesserapb.RangeDescriptor, frozenIdx uint64, trigger string) (*tesserapb.RangeDescriptor, error) {
	if err := r.waitApplied(ctx, right, frozenIdx); err != nil {
		return nil, fmt.Errorf("router: merge %d and %d: %w", left.GetRangeId(), right.GetRangeId(), err)
	}
	merged, err := rep.Merge(ctx, left.GetGeneration(), right, frozenIdx, trigger)
	if err != nil {
		return nil, fmt.Errorf("router: merge %d and %d: %w", left.GetRangeId(), right.GetRangeId(), err)
	}
	return merged, nil
}

// rightNeighbour finds the range that starts where left ends: in the cache,
// else from the replicas' nodes.
func (r *Router) rightNeighbour(ctx context.Context, left *tesserapb.RangeDescriptor) (*tesserapb.RangeDescriptor, error) {
	for attempt := 0; attempt < 2; attempt++ {
		if rs := r.cache.Overlapping(left.GetEndKey(), nil); len(rs) == 1 && string(rs[0].GetStartKey()) == string(left.GetEndKey()) && rs[0].GetRangeId() != left.GetRangeId() {
			return rs[0], nil
		}
		r.learnFromPeers(ctx, left)
	}
	return nil, status.Errorf(codes.Unavailable, "router: merge: the range starting at %q is not known here yet", left.GetEndKey())
}

// freeze freezes (or thaws) a range on its leader, following leader hints.
func (r *Router) freeze(ctx context.Context, d *tesserapb.RangeDescriptor, unfreeze bool) (uint64, *tesserapb.RangeDescriptor, error) {
	gen := d.GetGeneration()
	if unfreeze {
		gen = 0
	}
	tried := map[raftgroup.NodeID]bool{}
	var bo *backoff.Backoff
	var lastErr error
	for {
		target := r.pickTarget(d, false, tried)
		if target == 0 {
			if bo == nil {
				bo = backoff.New(retryBackoff)
			}
			if err := bo.Wait(ctx); err != nil {
				return 0, nil, fmt.Errorf("%w (last error: %v)", err, lastErr)
			}
			tried = map[raftgroup.NodeID]bool{}
			continue
		}
		tried[target] = true
		var resp *tesserapb.FreezeRangeResponse
		var err error
		if target == r.nodes.Self() {
			resp, err = (&Internal{r: r}).FreezeRange(ctx, &tesserapb.FreezeRangeRequest{RangeId: d.GetRangeId(), Generation: gen, Unfreeze: unfreeze})
		} else {
			conn, cerr := r.nodes.Conn(target)
			if cerr != nil {
				lastErr = cerr
				continue
			}
			resp, err = tesserapb.NewInternalClient(conn).FreezeRange(ctx, &tesserapb.FreezeRangeRequest{RangeId: d.GetRangeId(), Generation: gen, Unfreeze: unfreeze})
		}
		if err != nil {
			lastErr = err
			if ctx.Err() != nil {
				return 0, nil, err
			}
			continue
		}
		re := resp.GetRoutingError()
		if re == nil {
			r.cache.SetLeader(d.GetRangeId(), target)
			return resp.GetAppliedIndex(), resp.GetRangeDescriptor(), nil
		}
		lastErr = shard.RoutingErrorFromProto(re)
		switch re.GetCode() {
		case tesserapb.RoutingError_NOT_LEADER:
			r.cache.SetLeader(d.GetRangeId(), raftgroup.NodeID(re.GetLeaderNode()))
		case tesserapb.RoutingError_STALE_GENERATION:
			// The right changed (split, merged) since it was looked up.
			return 0, nil, fmt.Errorf("%w: range %d changed: %s", shard.ErrMergeRefused, d.GetRangeId(), re.GetMessage())
		}
	}
}

// waitApplied waits until every replica of d applied index idx, asking
// each node for its replicas (Ranges).
func (r *Router) waitApplied(ctx context.Context, d *tesserapb.RangeDescriptor, idx uint64) error {
	ctx, cancel := context.WithTimeout(ctx, mergeCatchUpWait)
	defer cancel()
	bo := backoff.New(retryBackoff)
	for {
		behind := raftgroup.NodeID(0)
		for _, n := range shard.ReplicaNodes(d) {
			applied, err := r.appliedOn(ctx, n, d.GetRangeId())
			if err != nil || applied < idx {
				behind = n
				break
			}
		}
		if behind == 0 {
			return nil
		}
		if err := bo.Wait(ctx); err != nil {
			return fmt.Errorf("the replica of range %d on node %d did not apply index %d: %w", d.GetRangeId(), behind, idx, err)
		}
	}
}

// appliedOn returns the applied index of a node's replica of a range.
func (r *Router) appliedOn(ctx context.Context, node raftgroup.NodeID, rangeID uint64) (uint64, error) {
	if node == r.nodes.Self() {
		rep := r.replicas.Replica(rangeID)
		if rep == nil {
			return 0, fmt.Errorf("no replica of range %d here", rangeID)
		}
		return rep.Status().Applied, nil
	}
	conn, err := r.nodes.Conn(node)
	if err != nil {
		return 0, err
	}
	resp, err := tesserapb.NewInternalClient(conn).Ranges(ctx, &tesserapb.RangesRequest{})
	if err != nil {
		return 0, err
	}
	for _, st := range resp.GetRanges() {
		if st.GetRangeDescriptor().GetRangeId() == rangeID && !st.GetIsMeta() {
			return st.GetAppliedIndex(), nil
		}
	}
	return 0, fmt.Errorf("node %d holds no replica of range %d", node, rangeID)
}
