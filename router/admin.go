package router

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tesseradb/tessera/placement"
	"github.com/tesseradb/tessera/proto/tesserapb"
	"github.com/tesseradb/tessera/raftgroup"
)

// RaftAdmin is what the operator RPCs need from the node's raft host.
type RaftAdmin interface {
	// TransferLeader asks the group's leader (this replica) to hand its
	// leadership to a voter.
	TransferLeader(id raftgroup.GroupID, to raftgroup.NodeID) error
	// Status is the group's raft status as this replica sees it.
	Status(id raftgroup.GroupID) (raftgroup.Status, error)
}

var _ RaftAdmin = (*raftgroup.Host)(nil)

// Defaults of the leader transfer.
const (
	// defaultTransferRetry: raft abandons a transfer that did not finish
	// within an election timeout (1 s by default), so ask again that often.
	defaultTransferRetry = time.Second
	// defaultTransferTimeout bounds a transfer whose caller set no deadline:
	// a few election timeouts, enough for a lagging target to catch up.
	defaultTransferTimeout = 10 * time.Second
	// transferPoll is how often the leadership is checked during a
	// transfer: well below an election round trip on loopback.
	transferPoll = 5 * time.Millisecond
)

// TransferLeader hands the leadership of a range (the meta group too) from
// this node, its leader, to target_node, and returns once the target leads.
// On a node that does not lead the range it answers with a NOT_LEADER
// routing error naming the leader it knows of.
func (s *Internal) TransferLeader(ctx context.Context, req *tesserapb.TransferLeaderRequest) (*tesserapb.TransferLeaderResponse, error) {
	h := s.r.cfg.Raft
	if h == nil {
		return nil, status.Error(codes.Unimplemented, "router: leader transfer is not wired on this node")
	}
	id, to := raftgroup.GroupID(req.GetRangeId()), raftgroup.NodeID(req.GetTargetNode())
	self := s.r.nodes.Self()
	st, err := h.Status(id)
	if err != nil {
		return &tesserapb.TransferLeaderResponse{RoutingError: &tesserapb.RoutingError{
			Code: tesserapb.RoutingError_RANGE_NOT_FOUND, Message: fmt.Sprintf("range %d not on node %d", id, self),
		}}, nil
	}
	if !st.IsLeader {
		return &tesserapb.TransferLeaderResponse{RoutingError: s.notLeader(id, st.Leader)}, nil
	}
	if !slices.Contains(st.Voters, to) {
		return nil, status.Errorf(codes.InvalidArgument, "router: range %d: node %d is not a voter (voters %v)", id, to, st.Voters)
	}
	if to == self {
		return &tesserapb.TransferLeaderResponse{}, nil
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultTransferTimeout)
		defer cancel()
	}
	retry := s.r.cfg.TransferLeaderRetry
	if retry <= 0 {
		retry = defaultTransferRetry
	}
	poll := time.NewTicker(transferPoll)
	defer poll.Stop()
	var asked time.Time
	for {
		st, err := h.Status(id)
		if err != nil {
			return nil, status.Errorf(codes.Unavailable, "router: range %d: transfer to node %d: %v", id, to, err)
		}
		switch {
		case st.Leader == to:
			s.r.log.Info("leadership transferred", "range", uint64(id), "to", uint64(to), "term", st.Term)
			return &tesserapb.TransferLeaderResponse{}, nil
		case st.IsLeader:
			// Raft drops a transfer it cannot finish within an election
			// timeout (target lagging, message lost): ask again.
			if time.Since(asked) >= retry {
				if err := h.TransferLeader(id, to); err != nil && !errors.Is(err, raftgroup.ErrNotLeader) {
					return nil, status.Errorf(codes.Unavailable, "router: range %d: transfer to node %d: %v", id, to, err)
				}
				asked = time.Now()
			}
		case st.Leader != 0:
			// Someone else won the election the transfer started.
			return nil, status.Errorf(codes.Aborted, "router: range %d: leadership moved to node %d, not %d", id, st.Leader, to)
		}
		// No leader known yet: the target's election is under way.
		select {
		case <-poll.C:
		case <-ctx.Done():
			return nil, status.Errorf(codes.DeadlineExceeded, "router: range %d: transfer to node %d: %v (leader now %d)", id, to, ctx.Err(), st.Leader)
		}
	}
}

// Hash reports the content hash of this node's replica of a range (the meta
// group too) and the applied index it is exactly at: replicas at the same
// applied index must report the same hash (tessctl check compares them).
func (s *Internal) Hash(ctx context.Context, req *tesserapb.HashRequest) (*tesserapb.HashResponse, error) {
	if req.GetRevision() > 0 {
		return s.hashAt(ctx, req) // maintenance_hash.go
	}
	self := uint64(s.r.nodes.Self())
	resp := &tesserapb.HashResponse{NodeId: self, RangeId: req.GetRangeId()}
	if m := s.r.cfg.Meta; m != nil && req.GetRangeId() == placement.MetaRangeID {
		idx, sum, err := m.Hash(ctx)
		if err != nil {
			return nil, toGRPCError(fmt.Errorf("router: hash of the meta group: %w", err))
		}
		resp.AppliedIndex, resp.Hash = idx, sum
		return resp, nil
	}
	rep := s.r.replicas.Replica(req.GetRangeId())
	if rep == nil {
		resp.RoutingError = &tesserapb.RoutingError{
			Code: tesserapb.RoutingError_RANGE_NOT_FOUND, Message: fmt.Sprintf("range %d not on node %d", req.GetRangeId(), self),
		}
		return resp, nil
	}
	res, err := rep.Hash(ctx)
	if err != nil {
		return nil, toGRPCError(fmt.Errorf("router: hash of range %d: %w", req.GetRangeId(), err))
	}
	resp.AppliedIndex, resp.Hash = res.AppliedIndex, res.Hash
	resp.Revision, resp.CompactRevision = int64(res.Revision), int64(res.CompactRevision)
	return resp, nil
}

// notLeader is the routing error of a node asked to act as a range's leader.
func (s *Internal) notLeader(id raftgroup.GroupID, leader raftgroup.NodeID) *tesserapb.RoutingError {
	return &tesserapb.RoutingError{
		Code:       tesserapb.RoutingError_NOT_LEADER,
		LeaderNode: uint64(leader),
		Message:    fmt.Sprintf("range %d: node %d is not the leader", id, s.r.nodes.Self()),
	}
}
