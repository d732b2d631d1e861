package router

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tesseradb/tessera/internal/backoff"
	"github.com/tesseradb/tessera/placement"
	"github.com/tesseradb/tessera/proto/tesserapb"
	"github.com/tesseradb/tessera/raftgroup"
	"github.com/tesseradb/tessera/shard"
)

// DirectoryHook is told of every layout change this node carried out, so
// the range directory (the meta group's copy of every descriptor) follows.
// Until the directory lands it is nil and routers learn new ranges from
// their own replicas and from routing errors.
type DirectoryHook interface {
	RangesChanged(ctx context.Context, descs []*tesserapb.RangeDescriptor) error
}

type directoryHolder struct{ h DirectoryHook }

// SetDirectoryHook sets the hook told of splits and merges (nil: none).
func (r *Router) SetDirectoryHook(h DirectoryHook) { r.split.dir.Store(&directoryHolder{h: h}) }

// splitState is the router's part of splits and merges.
type splitState struct {
	dir atomic.Pointer[directoryHolder]
}

// Limits of a split request.
const (
	// maxSplitKeyBytes bounds a split key: etcd's largest key (a request
	// of 1.5 MiB) would make descriptors, which every router caches, as
	// big. CockroachDB's keys are bounded by its request size too; 4 KiB
	// is far above any real key prefix.
	maxSplitKeyBytes = 4096
	// rangeIDWait bounds how long a split waits for the meta group to have
	// a leader that allocates the right's id.
	rangeIDWait = 5 * time.Second
)

// validateSplitRequest checks a SplitRange request strictly.
func validateSplitRequest(req *tesserapb.SplitRangeRequest) error {
	switch {
	case req.GetRangeId() == 0 && len(req.GetKey()) == 0:
		return status.Error(codes.InvalidArgument, "router: split: name the range by range_id or by a key")
	case req.GetRangeId() != 0 && len(req.GetKey()) > 0:
		return status.Error(codes.InvalidArgument, "router: split: name the range by range_id or by a key, not both")
	case req.GetRangeId() == placement.MetaRangeID:
		return status.Error(codes.InvalidArgument, "router: split: the meta group does not split")
	case len(req.GetSplitKey()) == 0:
		return status.Error(codes.InvalidArgument, "router: split: empty split key")
	case len(req.GetSplitKey()) > maxSplitKeyBytes:
		return status.Errorf(codes.InvalidArgument, "router: split: split key of %d bytes, at most %d", len(req.GetSplitKey()), maxSplitKeyBytes)
	case len(req.GetKey()) > maxSplitKeyBytes:
		return status.Errorf(codes.InvalidArgument, "router: split: key of %d bytes, at most %d", len(req.GetKey()), maxSplitKeyBytes)
	}
	return nil
}

// SplitRange implements the Internal service: the range's leader (this
// node) splits it. Another node answers with a NOT_LEADER routing error
// naming the leader it knows; one without a replica with RANGE_NOT_FOUND.
func (s *Internal) SplitRange(ctx context.Context, req *tesserapb.SplitRangeRequest) (*tesserapb.SplitRangeResponse, error) {
	if err := validateSplitRequest(req); err != nil {
		return nil, err
	}
	id := req.GetRangeId()
	if id == 0 {
		rs := s.r.cache.Overlapping(req.GetKey(), nil)
		if len(rs) == 0 {
			return nil, status.Errorf(codes.Unavailable, "router: split: no range holds %q in this node's cache", req.GetKey())
		}
		id = rs[0].GetRangeId()
		// A key that the local replica no longer holds: its descriptor is
		// newer than the cache.
		if rep := s.r.replicas.Replica(id); rep != nil && !shard.ContainsKey(rep.Descriptor(), req.GetKey()) {
			return nil, status.Errorf(codes.Unavailable, "router: split: range %d changed; ask again", id)
		}
	}
	res, err := s.r.Split(ctx, id, req.GetSplitKey(), shard.TriggerAdmin)
	var re *shard.RoutingError
	switch {
	case errors.As(err, &re):
		return &tesserapb.SplitRangeResponse{RoutingError: re.Proto()}, nil
	case err != nil:
		return nil, splitError(err)
	}
	return &tesserapb.SplitRangeResponse{Left: res.Left, Right: res.Right}, nil
}

// splitError maps a split's failure to a gRPC status with its reason.
func splitError(err error) error {
	switch {
	case errors.Is(err, shard.ErrSplitRefused):
		return status.Error(codes.FailedPrecondition, err.Error())
	case status.Code(err) != codes.Unknown:
		return err
	}
	return toGRPCError(err)
}

// Split splits a range this node leads at key and returns both halves: the
// right's id comes from the meta group, the split is a command of the
// range, and once it applied here the router's cache and the directory
// hook learn both halves. trigger labels the split (shard.TriggerAdmin,
// TriggerSize).
func (r *Router) Split(ctx context.Context, rangeID uint64, key []byte, trigger string) (shard.SplitResult, error) {
	rep := r.replicas.Replica(rangeID)
	if rep == nil {
		return shard.SplitResult{}, &shard.RoutingError{Code: tesserapb.RoutingError_RANGE_NOT_FOUND, Msg: fmt.Sprintf("range %d not on node %d", rangeID, r.nodes.Self())}
	}
	st := rep.Status()
	if !st.IsLeader {
		return shard.SplitResult{}, &shard.RoutingError{Code: tesserapb.RoutingError_NOT_LEADER, LeaderNode: uint64(st.Leader), Descriptor: st.Descriptor,
			Msg: fmt.Sprintf("range %d: node %d is not the leader", rangeID, r.nodes.Self())}
	}
	// Refuse a bad key before an id is spent on it (the apply checks again).
	if err := shard.ValidateSplitKey(st.Descriptor, key); err != nil {
		return shard.SplitResult{}, err
	}
	rightID, err := r.allocateRangeID(ctx)
	if err != nil {
		return shard.SplitResult{}, fmt.Errorf("router: split range %d: %w", rangeID, err)
	}
	res, err := rep.Split(ctx, st.Descriptor.GetGeneration(), key, rightID, trigger)
	if err != nil {
		return shard.SplitResult{}, fmt.Errorf("router: split range %d at %q: %w", rangeID, key, err)
	}
	shard.CrashPoint(shard.CrashSplitBeforeDirectory)
	r.cache.Insert(res.Left)
	r.cache.Insert(res.Right)
	if err := r.directoryChanged(ctx, res.Left, res.Right); err != nil {
		// The directory heals from the leaders' reports: the generation
		// decides.
		r.log.Warn("directory not updated after a split", "left", rangeID, "right", rightID, "err", err)
	}
	return res, nil
}

// allocateRangeID gets one new range id from the meta group's leader,
// waiting (bounded, jittered) for one to be elected.
func (r *Router) allocateRangeID(ctx context.Context) (uint64, error) {
	wctx, cancel := context.WithTimeout(ctx, rangeIDWait)
	defer cancel()
	bo := backoff.New(backoff.Config{Min: 10 * time.Millisecond, Max: 200 * time.Millisecond})
	for {
		id, err := r.allocateRangeIDOnce(wctx)
		if err == nil || !errors.Is(err, rpctypes.ErrGRPCNoLeader) {
			return id, err
		}
		if werr := bo.Wait(wctx); werr != nil {
			if ctx.Err() != nil {
				return 0, ctx.Err()
			}
			return 0, fmt.Errorf("allocate a range id: %w", err)
		}
	}
}

func (r *Router) allocateRangeIDOnce(ctx context.Context) (uint64, error) {
	if meta := r.cfg.Meta; meta != nil && meta.Leader() == r.nodes.Self() {
		id, err := meta.AllocateRangeIDs(ctx, 1)
		if err == nil || !errors.Is(err, raftgroup.ErrNotLeader) {
			return id, err
		}
	}
	var order []raftgroup.NodeID
	if meta := r.cfg.Meta; meta != nil && meta.Leader() != 0 && meta.Leader() != r.nodes.Self() {
		order = append(order, meta.Leader())
	}
	for _, n := range r.nodes.List() {
		if id := raftgroup.NodeID(n.GetNodeId()); id != r.nodes.Self() && !slices.Contains(order, id) {
			order = append(order, id)
		}
	}
	for _, id := range order {
		conn, err := r.nodes.Conn(id)
		if err != nil {
			continue
		}
		resp, err := tesserapb.NewInternalClient(conn).AllocateRangeIDs(ctx, &tesserapb.AllocateRangeIDsRequest{Count: 1})
		if err != nil {
			if ctx.Err() != nil {
				return 0, ctx.Err()
			}
			continue
		}
		if resp.GetRoutingError() != nil || resp.GetFirst() == 0 {
			continue
		}
		return resp.GetFirst(), nil
	}
	return 0, rpctypes.ErrGRPCNoLeader
}

// AllocateRangeIDs implements the Internal service on the meta leader.
func (s *Internal) AllocateRangeIDs(ctx context.Context, req *tesserapb.AllocateRangeIDsRequest) (*tesserapb.AllocateRangeIDsResponse, error) {
	meta := s.r.cfg.Meta
	if meta == nil {
		return &tesserapb.AllocateRangeIDsResponse{RoutingError: &tesserapb.RoutingError{Code: tesserapb.RoutingError_RANGE_NOT_FOUND, Message: "no meta replica"}}, nil
	}
	if req.GetCount() == 0 || req.GetCount() > 1024 {
		return nil, status.Errorf(codes.InvalidArgument, "router: allocate %d range ids: want 1..1024", req.GetCount())
	}
	first, err := meta.AllocateRangeIDs(ctx, req.GetCount())
	switch {
	case errors.Is(err, raftgroup.ErrNotLeader):
		return &tesserapb.AllocateRangeIDsResponse{RoutingError: &tesserapb.RoutingError{Code: tesserapb.RoutingError_NOT_LEADER, LeaderNode: uint64(meta.Leader())}}, nil
	case err != nil:
		return nil, toGRPCError(err)
	}
	return &tesserapb.AllocateRangeIDsResponse{First: first, Count: req.GetCount()}, nil
}

// directoryChanged records a layout change in the range directory (the
// hook, if one is set, else the meta group's directory).
func (r *Router) directoryChanged(ctx context.Context, descs ...*tesserapb.RangeDescriptor) error {
	if h := r.split.dir.Load(); h != nil && h.h != nil {
		return h.h.RangesChanged(ctx, descs)
	}
	return r.Directory().Update(ctx, descs...)
}
