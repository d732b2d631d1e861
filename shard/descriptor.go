package shard

import (
	"bytes"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/tesseradb/tessera/proto/tesserapb"
	"github.com/tesseradb/tessera/raftgroup"
)

// ContainsKey reports whether key is in the descriptor's span.
func ContainsKey(d *tesserapb.RangeDescriptor, key []byte) bool {
	return bytes.Compare(key, d.GetStartKey()) >= 0 && (len(d.GetEndKey()) == 0 || bytes.Compare(key, d.GetEndKey()) < 0)
}

// ContainsSpan reports whether the etcd span [key, end) is in the
// descriptor's span. end follows etcd: empty is the single key, "\x00" is
// everything from key on.
func ContainsSpan(d *tesserapb.RangeDescriptor, key, end []byte) bool {
	if !ContainsKey(d, key) {
		return false
	}
	switch {
	case len(end) == 0:
		return true
	case len(end) == 1 && end[0] == 0:
		return len(d.GetEndKey()) == 0
	case len(d.GetEndKey()) == 0:
		return true
	}
	return bytes.Compare(end, d.GetEndKey()) <= 0
}

// OpWithinDescriptor reports whether every key an operation reads or writes
// is in the descriptor's span.
func OpWithinDescriptor(d *tesserapb.RangeDescriptor, op *pb.RequestOp) bool {
	switch r := op.GetRequest().(type) {
	case *pb.RequestOp_RequestRange:
		return ContainsSpan(d, r.RequestRange.GetKey(), r.RequestRange.GetRangeEnd())
	case *pb.RequestOp_RequestPut:
		return ContainsKey(d, r.RequestPut.GetKey())
	case *pb.RequestOp_RequestDeleteRange:
		return ContainsSpan(d, r.RequestDeleteRange.GetKey(), r.RequestDeleteRange.GetRangeEnd())
	case *pb.RequestOp_RequestTxn:
		t := r.RequestTxn
		for _, c := range t.GetCompare() {
			if !ContainsSpan(d, c.GetKey(), c.GetRangeEnd()) {
				return false
			}
		}
		for _, ops := range [][]*pb.RequestOp{t.GetSuccess(), t.GetFailure()} {
			for _, o := range ops {
				if !OpWithinDescriptor(d, o) {
					return false
				}
			}
		}
		return true
	}
	return false
}

// Replica helpers: the one place that reads a descriptor's replica list, so
// code elsewhere asks for nodes or raft peers and never walks it itself.

// ReplicaNodes returns the nodes holding a replica of d, in descriptor order.
func ReplicaNodes(d *tesserapb.RangeDescriptor) []raftgroup.NodeID {
	out := make([]raftgroup.NodeID, 0, len(d.GetReplicas()))
	for _, r := range d.GetReplicas() {
		out = append(out, raftgroup.NodeID(r.GetNodeId()))
	}
	return out
}

// ReplicaOn returns node n's replica of d, or nil when n holds none.
func ReplicaOn(d *tesserapb.RangeDescriptor, n raftgroup.NodeID) *tesserapb.ReplicaDescriptor {
	for _, r := range d.GetReplicas() {
		if raftgroup.NodeID(r.GetNodeId()) == n {
			return r
		}
	}
	return nil
}

// HasReplicaOn reports whether node n holds a replica of d.
func HasReplicaOn(d *tesserapb.RangeDescriptor, n raftgroup.NodeID) bool {
	return ReplicaOn(d, n) != nil
}

// RaftPeers returns d's replicas as its raft group's peer map.
func RaftPeers(d *tesserapb.RangeDescriptor) []raftgroup.Peer {
	out := make([]raftgroup.Peer, 0, len(d.GetReplicas()))
	for _, r := range d.GetReplicas() {
		out = append(out, raftgroup.Peer{Replica: raftgroup.ReplicaID(r.GetReplicaId()), Node: raftgroup.NodeID(r.GetNodeId())})
	}
	return out
}

// RaftVoters returns the replica ids of d's voters (the initial
// configuration of its raft group).
func RaftVoters(d *tesserapb.RangeDescriptor) []raftgroup.ReplicaID {
	var out []raftgroup.ReplicaID
	for _, r := range d.GetReplicas() {
		if r.GetType() == tesserapb.ReplicaType_VOTER {
			out = append(out, raftgroup.ReplicaID(r.GetReplicaId()))
		}
	}
	return out
}

// NewReplicas builds a descriptor's replica list for voters on nodes, with
// replica ids first, first+1, … in that order; it returns the list and the
// next unused replica id.
func NewReplicas(nodes []raftgroup.NodeID, first raftgroup.ReplicaID) ([]*tesserapb.ReplicaDescriptor, uint64) {
	out := make([]*tesserapb.ReplicaDescriptor, 0, len(nodes))
	id := first
	for _, n := range nodes {
		out = append(out, &tesserapb.ReplicaDescriptor{NodeId: uint64(n), ReplicaId: uint64(id), Type: tesserapb.ReplicaType_VOTER})
		id++
	}
	return out, uint64(id)
}
