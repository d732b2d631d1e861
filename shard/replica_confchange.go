package shard

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/tesseradb/tessera/engine"
	"github.com/tesseradb/tessera/proto/tesserapb"
	"github.com/tesseradb/tessera/raftgroup"
)

// Replica changes: every change of a range's replica set is one
// ConfChangeV2 proposed through the range's own log. Its Context carries the
// descriptor the proposer expects afterwards; apply does not trust that
// descriptor's span or generation (a split may have applied in between) but
// derives the new descriptor from the descriptor it holds and the change
// itself, taking only the node of each added replica from the Context. So
// every replica computes the same descriptor from the same log.
//
// A move of a replica from node A to node B is four changes (CockroachDB's
// order, with a demotion so that the outgoing voter stays addressable
// during the joint configuration):
//
//	1. add learner B (replica id next_replica_id)      -> raft sends B a snapshot
//	2. enter joint: promote B to voter, demote A to learner
//	3. leave joint (an empty ConfChangeV2)
//	4. remove learner A                                 -> A is garbage collected
//
// Each applied change bumps the generation and replaces the raft host's
// peer map on every replica (SetPeers). The leader must not be A at step 2:
// the mover transfers leadership first.

// ErrChangeInProgress is returned when a replica change is refused because
// the range is in a joint configuration (leave it first) or the change
// names replicas the descriptor does not agree with.
var ErrChangeInProgress = errors.New("shard: a replica change is in progress")

// confChanger is the part of the raft host that proposes conf changes and
// reports a group's configuration.
type confChanger interface {
	ProposeConfChange(id raftgroup.GroupID, cc *raftpb.ConfChangeV2) error
	Status(id raftgroup.GroupID) (raftgroup.Status, error)
}

var _ confChanger = (*raftgroup.Host)(nil)

// ReplicaChange is one step of a replica change, in node terms.
type ReplicaChange struct {
	// AddLearner adds a learner on this node (a new replica id).
	AddLearner raftgroup.NodeID
	// Promote makes this node's learner a voter and Demote makes this
	// node's voter a learner, in one joint change.
	Promote, Demote raftgroup.NodeID
	// LeaveJoint leaves a joint configuration.
	LeaveJoint bool
	// RemoveLearner removes this node's learner.
	RemoveLearner raftgroup.NodeID
}

// buildConfChange turns a step into a ConfChangeV2 and the descriptor
// expected afterwards (the Context).
func buildConfChange(d *tesserapb.RangeDescriptor, c ReplicaChange) (*raftpb.ConfChangeV2, *tesserapb.RangeDescriptor, error) {
	cc := &raftpb.ConfChangeV2{}
	single := func(t raftpb.ConfChangeType, id uint64) {
		cc.Changes = append(cc.Changes, &raftpb.ConfChangeSingle{Type: t.Enum(), NodeId: proto.Uint64(id)})
	}
	want := proto.Clone(d).(*tesserapb.RangeDescriptor)
	switch {
	case c.AddLearner != 0:
		if HasReplicaOn(d, c.AddLearner) {
			return nil, nil, fmt.Errorf("shard: range %d: node %d already holds a replica", d.GetRangeId(), c.AddLearner)
		}
		id := max(d.GetNextReplicaId(), 1)
		want.Replicas = append(want.Replicas, &tesserapb.ReplicaDescriptor{NodeId: uint64(c.AddLearner), ReplicaId: id, Type: tesserapb.ReplicaType_LEARNER})
		single(raftpb.ConfChangeAddLearnerNode, id)
	case c.Promote != 0 || c.Demote != 0:
		if c.Promote != 0 {
			r := ReplicaOn(want, c.Promote)
			if r == nil || r.GetType() != tesserapb.ReplicaType_LEARNER {
				return nil, nil, fmt.Errorf("shard: range %d: node %d holds no learner to promote: %w", d.GetRangeId(), c.Promote, ErrChangeInProgress)
			}
			r.Type = tesserapb.ReplicaType_VOTER
			single(raftpb.ConfChangeAddNode, r.GetReplicaId())
		}
		if c.Demote != 0 {
			r := ReplicaOn(want, c.Demote)
			if r == nil || r.GetType() != tesserapb.ReplicaType_VOTER {
				return nil, nil, fmt.Errorf("shard: range %d: node %d holds no voter to demote: %w", d.GetRangeId(), c.Demote, ErrChangeInProgress)
			}
			r.Type = tesserapb.ReplicaType_LEARNER
			single(raftpb.ConfChangeAddLearnerNode, r.GetReplicaId())
		}
		cc.Transition = raftpb.ConfChangeTransitionJointExplicit.Enum()
	case c.LeaveJoint:
	case c.RemoveLearner != 0:
		r := ReplicaOn(d, c.RemoveLearner)
		if r == nil || r.GetType() != tesserapb.ReplicaType_LEARNER {
			return nil, nil, fmt.Errorf("shard: range %d: node %d holds no learner to remove (demote a voter first): %w", d.GetRangeId(), c.RemoveLearner, ErrChangeInProgress)
		}
		want.Replicas = slices.DeleteFunc(want.Replicas, func(x *tesserapb.ReplicaDescriptor) bool { return x.GetNodeId() == uint64(c.RemoveLearner) })
		single(raftpb.ConfChangeRemoveNode, r.GetReplicaId())
	default:
		return nil, nil, fmt.Errorf("shard: range %d: empty replica change", d.GetRangeId())
	}
	want, err := ApplyConfChangeToDescriptor(d, cc, want)
	if err != nil {
		return nil, nil, err
	}
	ctx, err := proto.Marshal(want)
	if err != nil {
		return nil, nil, fmt.Errorf("shard: encode descriptor: %w", err)
	}
	cc.Context = ctx
	return cc, want, nil
}

// ApplyConfChangeToDescriptor is the descriptor after cc applied to d: added
// replicas take their node from hint (the proposer's expected descriptor),
// next_replica_id moves past every added id and the generation is bumped
// once. Pure: every replica computes the same result.
func ApplyConfChangeToDescriptor(d *tesserapb.RangeDescriptor, cc *raftpb.ConfChangeV2, hint *tesserapb.RangeDescriptor) (*tesserapb.RangeDescriptor, error) {
	out := proto.Clone(d).(*tesserapb.RangeDescriptor)
	find := func(id uint64) int {
		return slices.IndexFunc(out.Replicas, func(r *tesserapb.ReplicaDescriptor) bool { return r.GetReplicaId() == id })
	}
	for _, c := range cc.GetChanges() {
		id := c.GetNodeId()
		typ := tesserapb.ReplicaType_VOTER
		switch c.GetType() {
		case raftpb.ConfChangeAddLearnerNode:
			typ = tesserapb.ReplicaType_LEARNER
			fallthrough
		case raftpb.ConfChangeAddNode:
			if i := find(id); i >= 0 {
				out.Replicas[i].Type = typ
				continue
			}
			var node uint64
			for _, r := range hint.GetReplicas() {
				if r.GetReplicaId() == id {
					node = r.GetNodeId()
				}
			}
			if node == 0 {
				return nil, fmt.Errorf("shard: range %d: conf change adds replica %d on no known node", d.GetRangeId(), id)
			}
			out.Replicas = append(out.Replicas, &tesserapb.ReplicaDescriptor{NodeId: node, ReplicaId: id, Type: typ})
			out.NextReplicaId = max(out.GetNextReplicaId(), id+1)
		case raftpb.ConfChangeRemoveNode:
			if i := find(id); i >= 0 {
				out.Replicas = slices.Delete(out.Replicas, i, i+1)
			}
		}
	}
	out.Generation = d.GetGeneration() + 1
	return out, nil
}

// ChangeReplicas proposes one replica change through the range's log (this
// replica must lead) and waits until this replica applied it; it returns
// the new descriptor. A range in a joint configuration accepts only
// LeaveJoint.
func (r *Replica) ChangeReplicas(ctx context.Context, c ReplicaChange) (*tesserapb.RangeDescriptor, error) {
	ch, ok := r.cfg.Raft.(confChanger)
	if !ok {
		return nil, fmt.Errorf("shard: range %d: raft host cannot change replicas", r.group)
	}
	st, err := ch.Status(r.group)
	if err != nil {
		return nil, fmt.Errorf("shard: range %d: status: %w", r.group, err)
	}
	if !st.IsLeader {
		r.mu.Lock()
		defer r.mu.Unlock()
		return nil, r.notLeaderLocked()
	}
	if st.Joint != c.LeaveJoint {
		if st.Joint {
			return nil, fmt.Errorf("shard: range %d is in a joint configuration; leave it first: %w", r.group, ErrChangeInProgress)
		}
		return nil, fmt.Errorf("shard: range %d is not in a joint configuration: %w", r.group, ErrChangeInProgress)
	}
	// A new leader refuses conf changes (raft turns them into empty
	// entries) until it applied its log as of its election: wait for an
	// entry of its own term to apply.
	r.mu.Lock()
	err = r.waitLocked(ctx, func() bool { return !r.mu.isLeader || r.mu.cl.appliedTerm >= r.mu.term })
	isLeader := r.mu.isLeader
	if err == nil && !isLeader {
		err = r.notLeaderLocked()
	}
	r.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("shard: range %d: wait for the leader's own entry: %w", r.group, err)
	}
	desc := r.Descriptor()
	cc, want, err := buildConfChange(desc, c)
	if err != nil {
		return nil, err
	}
	if err := ch.ProposeConfChange(r.group, cc); err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	// raft drops a conf change while another is pending (it becomes an
	// empty entry): the caller's deadline ends the wait then.
	err = r.waitLocked(ctx, func() bool { return r.mu.desc.GetGeneration() >= want.GetGeneration() })
	if err != nil {
		return nil, fmt.Errorf("shard: range %d: wait for replica change: %w", r.group, err)
	}
	return r.mu.desc, nil
}

// applyConfChangeLocked applies a committed conf change entry to the
// descriptor, in b. It returns the new descriptor.
func (r *Replica) applyConfChangeLocked(b *engine.Batch, e *raftpb.Entry) (*tesserapb.RangeDescriptor, error) {
	var cc raftpb.ConfChangeV2
	if e.GetType() == raftpb.EntryConfChange {
		var v1 raftpb.ConfChange
		if err := proto.Unmarshal(e.GetData(), &v1); err != nil {
			return nil, fmt.Errorf("shard: range %d: decode conf change at %d: %w", r.group, e.GetIndex(), err)
		}
		cc = *v1.AsV2()
	} else if err := proto.Unmarshal(e.GetData(), &cc); err != nil {
		return nil, fmt.Errorf("shard: range %d: decode conf change at %d: %w", r.group, e.GetIndex(), err)
	}
	hint := &tesserapb.RangeDescriptor{}
	if err := proto.Unmarshal(cc.GetContext(), hint); err != nil {
		return nil, fmt.Errorf("shard: range %d: decode conf change context at %d: %w", r.group, e.GetIndex(), err)
	}
	nd, err := ApplyConfChangeToDescriptor(r.mu.desc, &cc, hint)
	if err != nil {
		return nil, err
	}
	v, err := proto.Marshal(nd)
	if err != nil {
		return nil, fmt.Errorf("shard: range %d: encode descriptor: %w", r.group, err)
	}
	if err := b.Set(engine.LocalGroupKey(uint64(r.group), engine.KindDescriptor), v); err != nil {
		return nil, storageError{err}
	}
	r.mu.desc = nd
	r.publishRouteLocked()
	if !HasReplicaOn(nd, r.cfg.NodeID) {
		r.mu.removed = true
	}
	r.log.Debug("replica change applied", "generation", nd.GetGeneration(), "replicas", len(nd.GetReplicas()))
	return nd, nil
}

// setPeersAfterApply replaces the raft host's peer map with the
// descriptor's replicas after an apply round that changed them (outside
// mu: the host takes the group's raft lock). The leader sends to a new
// learner only after it applied the change, so the map knows it in time.
func (r *Replica) setPeersAfterApply() {
	r.mu.Lock()
	changed, desc := r.mu.peersChanged, r.mu.desc
	r.mu.peersChanged = false
	r.mu.Unlock()
	if !changed {
		return
	}
	if ps, ok := r.cfg.Raft.(peerSetter); ok {
		if err := ps.SetPeers(r.group, RaftPeers(desc)); err != nil {
			r.log.Warn("could not replace the peer map after a replica change", "err", err)
		}
	}
}
