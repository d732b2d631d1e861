package router

import (
	"context"
	"fmt"
	"slices"

	"github.com/tesseradb/tessera/engine"
	"github.com/tesseradb/tessera/proto/tesserapb"
	"github.com/tesseradb/tessera/raftgroup"
	"github.com/tesseradb/tessera/shard"
)

// InternalMaintenance serves tesserapb.InternalMaintenance to peers.
type InternalMaintenance struct {
	tesserapb.UnimplementedInternalMaintenanceServer
	r *Router
}

// NewInternalMaintenance returns the service of a router.
func NewInternalMaintenance(r *Router) *InternalMaintenance { return &InternalMaintenance{r: r} }

// RecentWrites lists the newest write revisions of a local replica.
func (s *InternalMaintenance) RecentWrites(_ context.Context, req *tesserapb.RecentWritesRequest) (*tesserapb.RecentWritesResponse, error) {
	rep := s.r.replicas.Replica(req.GetRangeId())
	if rep == nil {
		return &tesserapb.RecentWritesResponse{RoutingError: &tesserapb.RoutingError{
			Code: tesserapb.RoutingError_RANGE_NOT_FOUND, Message: fmt.Sprintf("range %d not on node %d", req.GetRangeId(), s.r.nodes.Self()),
		}}, nil
	}
	if req.GetLimit() == 0 || req.GetLimit() > maxRevisionRetention {
		return nil, invalidArg("recent writes: limit %d not in [1, %d]", req.GetLimit(), maxRevisionRetention)
	}
	revs, err := rep.RecentWrites(int(req.GetLimit()))
	if err != nil {
		return nil, toGRPCError(err)
	}
	resp := &tesserapb.RecentWritesResponse{}
	for _, r := range revs {
		resp.Revisions = append(resp.Revisions, int64(r))
	}
	return resp, nil
}

// revisionToKeep returns the revision of the n-th newest write of the
// whole cluster (0 when there were n writes or fewer since the last
// compaction): compacting there keeps the newest n writes' history, which
// is what etcd's revision retention keeps (its revisions count writes;
// Tessera's are timestamps, so the writes are counted from the ranges'
// change logs). Each range's newest n revisions are read from a local
// replica when there is one, else from its replicas' nodes.
func (r *Router) revisionToKeep(ctx context.Context, n int) (engine.Revision, error) {
	ranges, err := r.cache.CoverAll(ctx)
	if err != nil {
		return 0, err
	}
	var all []engine.Revision
	for _, d := range ranges {
		revs, err := r.recentWrites(ctx, d, n)
		if err != nil {
			return 0, err
		}
		all = append(all, revs...)
	}
	if len(all) <= n {
		return 0, nil
	}
	slices.Sort(all)
	return all[len(all)-n], nil
}

func (r *Router) recentWrites(ctx context.Context, d *tesserapb.RangeDescriptor, n int) ([]engine.Revision, error) {
	if rep := r.replicas.Replica(d.GetRangeId()); rep != nil {
		return rep.RecentWrites(n)
	}
	var lastErr error
	for _, id := range shard.ReplicaNodes(d) {
		conn, err := r.nodes.Conn(raftgroup.NodeID(id))
		if err != nil {
			lastErr = err
			continue
		}
		resp, err := tesserapb.NewInternalMaintenanceClient(conn).RecentWrites(ctx, &tesserapb.RecentWritesRequest{RangeId: d.GetRangeId(), Limit: uint32(n)})
		if err == nil && resp.GetRoutingError() != nil {
			err = fmt.Errorf("%s", resp.GetRoutingError().GetMessage())
		}
		if err != nil {
			lastErr = err
			continue
		}
		out := make([]engine.Revision, 0, len(resp.GetRevisions()))
		for _, rv := range resp.GetRevisions() {
			out = append(out, engine.Revision(rv))
		}
		return out, nil
	}
	return nil, fmt.Errorf("router: range %d: recent writes: no replica answered: %w", d.GetRangeId(), lastErr)
}
