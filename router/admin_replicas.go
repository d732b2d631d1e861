package router

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tesseradb/tessera/proto/tesserapb"
	"github.com/tesseradb/tessera/raftgroup"
	"github.com/tesseradb/tessera/shard"
)

// ReplicaGC is the part of the node's Store that destroys a replica its
// range no longer lists (shard.Store.GCReplica).
type ReplicaGC interface {
	GCReplica(id raftgroup.GroupID, desc *tesserapb.RangeDescriptor) (bool, error)
}

// RaftStatus reports a hosted group's raft status (raftgroup.Host.Status).
type RaftStatus interface {
	Status(id raftgroup.GroupID) (raftgroup.Status, error)
}

// AdminConfig configures the Admin service.
type AdminConfig struct {
	// CatchUpPoll is how often a promotion polls the learner's progress
	// (its match index reaching the leader's commit) before it promotes.
	CatchUpPoll time.Duration
}

// DefaultAdminConfig: poll every 20 ms (a snapshot takes longer; the poll
// is a map lookup on the leader).
func DefaultAdminConfig() AdminConfig { return AdminConfig{CatchUpPoll: 20 * time.Millisecond} }

// Validate checks the configuration.
func (c AdminConfig) Validate() error {
	if c.CatchUpPoll <= 0 {
		return errors.New("router: admin: CatchUpPoll must be positive")
	}
	return nil
}

// Admin implements tesserapb.AdminServer on the peer port: one step of a
// replica move at a time, on the range's leader (tessctl drives the steps
// and follows NOT_LEADER hints, as for splits).
type Admin struct {
	tesserapb.UnimplementedAdminServer
	cfg  AdminConfig
	r    *Router
	raft RaftStatus
	gc   ReplicaGC
}

// NewAdmin returns the Admin service of a node.
func NewAdmin(cfg AdminConfig, r *Router, raft RaftStatus, gc ReplicaGC) (*Admin, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Admin{cfg: cfg, r: r, raft: raft, gc: gc}, nil
}

// ChangeReplicas implements tesserapb.AdminServer.
func (a *Admin) ChangeReplicas(ctx context.Context, req *tesserapb.ChangeReplicasRequest) (*tesserapb.ChangeReplicasResponse, error) {
	id := req.GetRangeId()
	if id == 0 {
		return nil, status.Error(codes.InvalidArgument, "router: change replicas: no range id")
	}
	if id == 1 {
		// placement.MetaRangeID: the meta group is not a shard replica.
		return nil, status.Error(codes.Unimplemented, "router: change replicas: moving the meta group's replicas is not supported yet")
	}
	if d := req.GetGcDescriptor(); d != nil {
		if d.GetRangeId() != id {
			return nil, status.Errorf(codes.InvalidArgument, "router: change replicas: gc descriptor of range %d for range %d", d.GetRangeId(), id)
		}
		done, err := a.gc.GCReplica(raftgroup.GroupID(id), d)
		if err != nil {
			return nil, status.Errorf(codes.Internal, "router: gc replica of range %d: %v", id, err)
		}
		return &tesserapb.ChangeReplicasResponse{Destroyed: done}, nil
	}
	ch := shard.ReplicaChange{
		AddLearner: raftgroup.NodeID(req.GetAddLearner()), Promote: raftgroup.NodeID(req.GetPromote()),
		Demote: raftgroup.NodeID(req.GetDemote()), LeaveJoint: req.GetLeaveJoint(), RemoveLearner: raftgroup.NodeID(req.GetRemoveLearner()),
	}
	steps := 0
	for _, set := range []bool{ch.AddLearner != 0, ch.Promote != 0 || ch.Demote != 0, ch.LeaveJoint, ch.RemoveLearner != 0} {
		if set {
			steps++
		}
	}
	if steps != 1 {
		return nil, status.Error(codes.InvalidArgument, "router: change replicas: exactly one step (add_learner, promote/demote, leave_joint, remove_learner) per request")
	}
	rep := a.r.replicas.Replica(id)
	if rep == nil {
		return &tesserapb.ChangeReplicasResponse{RoutingError: (&shard.RoutingError{Code: tesserapb.RoutingError_RANGE_NOT_FOUND,
			Msg: fmt.Sprintf("range %d not on node %d", id, a.r.nodes.Self())}).Proto()}, nil
	}
	st := rep.Status()
	if !st.IsLeader {
		return &tesserapb.ChangeReplicasResponse{RoutingError: (&shard.RoutingError{Code: tesserapb.RoutingError_NOT_LEADER, LeaderNode: uint64(st.Leader),
			Descriptor: st.Descriptor, Msg: fmt.Sprintf("range %d: node %d is not the leader", id, a.r.nodes.Self())}).Proto()}, nil
	}
	if ch.Demote == a.r.nodes.Self() {
		return nil, status.Errorf(codes.FailedPrecondition, "router: change replicas: range %d: the leader (node %d) cannot demote itself; transfer leadership first", id, ch.Demote)
	}
	if ch.Promote != 0 {
		if err := a.waitCaughtUp(ctx, id, ch.Promote); err != nil {
			return nil, err
		}
	}
	d, err := rep.ChangeReplicas(ctx, ch)
	var re *shard.RoutingError
	var nl *raftgroup.NotLeaderError
	switch {
	case errors.As(err, &re):
		return &tesserapb.ChangeReplicasResponse{RoutingError: re.Proto()}, nil
	case errors.As(err, &nl):
		return &tesserapb.ChangeReplicasResponse{RoutingError: (&shard.RoutingError{Code: tesserapb.RoutingError_NOT_LEADER, LeaderNode: uint64(nl.Leader),
			Msg: err.Error()}).Proto()}, nil
	case errors.Is(err, shard.ErrChangeInProgress):
		return nil, status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return nil, status.Error(codes.DeadlineExceeded, err.Error())
	case err != nil:
		return nil, status.Error(codes.FailedPrecondition, err.Error())
	}
	a.r.cache.Insert(d)
	rs, _ := a.raft.Status(raftgroup.GroupID(id))
	return &tesserapb.ChangeReplicasResponse{Descriptor_: d, Joint: rs.Joint}, nil
}

// waitCaughtUp waits until node's learner has the log the leader had
// committed when the wait began (it applied its snapshot and the entries
// after it), so that promoting it
// never leaves a quorum waiting on a replica still receiving a snapshot.
func (a *Admin) waitCaughtUp(ctx context.Context, id uint64, node raftgroup.NodeID) error {
	t := time.NewTicker(a.cfg.CatchUpPoll)
	defer t.Stop()
	// The target is the commit index when the wait starts: under steady
	// writes the commit index moves on and a learner's match trails it
	// by the appends in flight.
	var target uint64
	for {
		st, err := a.raft.Status(raftgroup.GroupID(id))
		if err != nil {
			return status.Errorf(codes.Unavailable, "router: range %d: %v", id, err)
		}
		if !st.IsLeader {
			return status.Errorf(codes.Unavailable, "router: range %d: leadership moved while waiting for node %d to catch up", id, node)
		}
		if target == 0 {
			target = st.Commit
		}
		if m, ok := st.Match[node]; ok && m >= target {
			return nil
		}
		select {
		case <-ctx.Done():
			return status.Errorf(codes.DeadlineExceeded, "router: range %d: node %d's learner has not caught up: %v", id, node, ctx.Err())
		case <-t.C:
		}
	}
}
