package router

import (
	"context"
	"errors"
	"fmt"
	"slices"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/tesseradb/tessera/placement"
	"github.com/tesseradb/tessera/proto/tesserapb"
	"github.com/tesseradb/tessera/raftgroup"
	"github.com/tesseradb/tessera/shard"
)

// MoveLeader implements etcd's Maintenance.MoveLeader (etcdctl
// move-leader TARGET). etcd's "leader" is its one Raft group's; Tessera's
// Status reports the meta group's leader as the leader, so MoveLeader is
// served by that node (others answer etcd's "not leader", as etcd's
// followers do, and etcdctl sends it to the leader for that reason). It
// hands the meta group's leadership to the target, then the leadership of
// every data range this node leads that has a replica on the target:
// "move the leadership off this node to that one", what an operator wants
// before taking the node down. A target that is no meta group voter gets
// etcd's "bad leader transferee".
func (m *Maintenance) MoveLeader(ctx context.Context, req *pb.MoveLeaderRequest) (*pb.MoveLeaderResponse, error) {
	meta, h := m.r.cfg.Meta, m.r.cfg.Raft
	self := m.r.nodes.Self()
	if meta == nil || h == nil || meta.Leader() != self {
		return nil, rpctypes.ErrGRPCNotLeader
	}
	target := raftgroup.NodeID(req.GetTargetID())
	st, err := h.Status(placement.MetaRangeID)
	if err != nil {
		return nil, toGRPCError(err)
	}
	if !slices.Contains(st.Voters, target) {
		return nil, rpctypes.ErrGRPCBadLeaderTransferee
	}
	in := &Internal{r: m.r}
	move := func(id uint64) error {
		resp, err := in.TransferLeader(ctx, &tesserapb.TransferLeaderRequest{RangeId: id, TargetNode: uint64(target)})
		if err == nil && resp.GetRoutingError() != nil {
			err = errors.New(resp.GetRoutingError().GetMessage())
		}
		if err != nil {
			return fmt.Errorf("range %d: %w", id, err)
		}
		return nil
	}
	if target != self {
		if err := move(placement.MetaRangeID); err != nil {
			return nil, toGRPCError(fmt.Errorf("router: move-leader to %d: meta group: %w", target, err))
		}
	}
	var errs []error
	moved := 0
	for _, d := range m.r.cache.Ranges() {
		rep := m.r.replicas.Replica(d.GetRangeId())
		if rep == nil || !rep.Status().IsLeader || !shard.HasReplicaOn(d, target) || target == self {
			continue
		}
		if err := move(d.GetRangeId()); err != nil {
			errs = append(errs, err)
			continue
		}
		moved++
	}
	m.r.log.Info("move-leader", "to", uint64(target), "ranges_moved", moved, "failed", len(errs))
	if len(errs) > 0 {
		return nil, toGRPCError(fmt.Errorf("router: move-leader to %d: meta group moved, %d ranges moved, failed: %w", target, moved, errors.Join(errs...)))
	}
	return &pb.MoveLeaderResponse{Header: m.r.header(0)}, nil
}
