package shard

import (
	"fmt"

	"github.com/tesseradb/tessera/proto/tesserapb"
	"github.com/tesseradb/tessera/raftgroup"
)

// routeState is the part of a replica's state that decides whether it
// serves a request: published atomically so that the write path checks a
// request without taking Replica.mu (which an apply round holds while it
// applies a whole batch of commands).
type routeState struct {
	group    raftgroup.GroupID
	node     raftgroup.NodeID
	desc     *tesserapb.RangeDescriptor
	leader   raftgroup.NodeID
	isLeader bool
	closed   bool
	frozen   bool
	// mergedInto: the range was merged into this one (merge.go).
	mergedInto *tesserapb.RangeDescriptor
}

// routeLocked is the routing state as it is now.
func (r *Replica) routeLocked() *routeState {
	return &routeState{
		group: r.group, node: r.cfg.NodeID, desc: r.mu.desc,
		leader: r.mu.leader, isLeader: r.mu.isLeader, closed: r.mu.closed,
		frozen: r.mu.frozen, mergedInto: r.mu.mergedInto,
	}
}

// publishRouteLocked publishes the routing state; called under mu after
// every change of the descriptor, the leader or closed.
func (r *Replica) publishRouteLocked() { r.route.Store(r.routeLocked()) }

// check checks that a request naming generation (0: any) is for this range
// as it is.
func (s *routeState) check(generation uint64) error {
	if d := s.mergedInto; d != nil {
		return &RoutingError{
			Code:       tesserapb.RoutingError_STALE_GENERATION,
			Descriptor: d,
			Msg:        fmt.Sprintf("range %d was merged into range %d", s.group, d.GetRangeId()),
		}
	}
	if s.closed {
		return ErrReplicaClosed
	}
	if s.frozen {
		return s.frozenError()
	}
	if generation != 0 && generation != s.desc.GetGeneration() {
		return &RoutingError{
			Code:       tesserapb.RoutingError_STALE_GENERATION,
			Descriptor: s.desc,
			Msg:        fmt.Sprintf("range %d is at generation %d, request names %d", s.group, s.desc.GetGeneration(), generation),
		}
	}
	return nil
}

func (s *routeState) notLeader() error {
	return &RoutingError{
		Code:       tesserapb.RoutingError_NOT_LEADER,
		LeaderNode: uint64(s.leader),
		Descriptor: s.desc,
		Msg:        fmt.Sprintf("range %d: node %d is not the leader", s.group, s.node),
	}
}

func (s *routeState) keyMismatch() error {
	return &RoutingError{
		Code:       tesserapb.RoutingError_KEY_MISMATCH,
		Descriptor: s.desc,
		Msg:        fmt.Sprintf("request keys outside range %d [%q, %q)", s.group, s.desc.GetStartKey(), s.desc.GetEndKey()),
	}
}
