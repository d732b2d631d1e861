package scheduler

import (
	"fmt"
	"time"

	"github.com/tesseradb/tessera/raftgroup"
)

// NodeID identifies a node.
type NodeID = raftgroup.NodeID

// RangeID identifies a range (its raft group id).
type RangeID = raftgroup.GroupID

// ReplicaID identifies a replica inside its range (its raft peer id); it is
// never reused within a range.
type ReplicaID = raftgroup.ReplicaID

// Liveness is what the placement driver believes of a node.
type Liveness int

const (
	// Live nodes serve and take new replicas.
	Live Liveness = iota
	// Suspect nodes missed heartbeats but are not dead yet: their replicas
	// stay, they take no new ones, and nothing is moved off them yet.
	Suspect
	// Dead nodes have been unreachable longer than the dead-node timeout:
	// their replicas are rebuilt elsewhere.
	Dead
	// Draining nodes are being emptied by an operator: leaders and replicas
	// move off, nothing new arrives.
	Draining
	// Removed nodes left the cluster for good (member remove): like dead.
	Removed
)

var livenessNames = [...]string{"live", "suspect", "dead", "draining", "removed"}

func (l Liveness) String() string {
	if l >= 0 && int(l) < len(livenessNames) {
		return livenessNames[l]
	}
	return fmt.Sprintf("liveness(%d)", int(l))
}

// ParseLiveness parses the names String prints.
func ParseLiveness(s string) (Liveness, error) {
	for i, n := range livenessNames {
		if n == s {
			return Liveness(i), nil
		}
	}
	return 0, fmt.Errorf("scheduler: unknown liveness %q (want live, suspect, dead, draining or removed)", s)
}

// gone reports whether replicas on the node are lost for good.
func (l Liveness) gone() bool { return l == Dead || l == Removed }

// Node is one node of the cluster.
type Node struct {
	ID       NodeID
	Liveness Liveness
	// CapacityBytes is the space the node offers to replicas; 0 means
	// unknown (no node is refused a replica for space).
	CapacityBytes int64
	// LastHeartbeat is when the node's last heartbeat arrived. The
	// scheduler does not read it (liveness is decided by the caller); it is
	// carried for status output.
	LastHeartbeat time.Time
}

// ReplicaType says whether a replica votes.
type ReplicaType int

const (
	// Voter replicas are part of the range's quorum.
	Voter ReplicaType = iota
	// Learner replicas receive the log but do not vote; a move adds the
	// new replica as a learner first.
	Learner
)

func (t ReplicaType) String() string {
	if t == Learner {
		return "learner"
	}
	return "voter"
}

// Replica is one replica of a range.
type Replica struct {
	Node NodeID
	ID   ReplicaID
	Type ReplicaType
}

// Range is one range (or the meta range) as the placement driver sees it.
type Range struct {
	ID               RangeID
	StartKey, EndKey []byte
	// Generation is the descriptor generation the replicas below belong to.
	Generation uint64
	Replicas   []Replica
	// NextReplicaID is the id the next replica added gets (the
	// descriptor's); 0 means one above the highest present.
	NextReplicaID ReplicaID
	// Leader is the node of the leader's replica, 0 when unknown.
	Leader    NodeID
	SizeBytes int64
	Keys      int64
	QPS       float64
	// Meta marks the meta range, which wants Config.MetaReplicas voters
	// once that many nodes are live.
	Meta bool
}

// voters returns the number of voters.
func (r *Range) voters() int {
	n := 0
	for _, rep := range r.Replicas {
		if rep.Type == Voter {
			n++
		}
	}
	return n
}

// replicaOn returns the replica on node n.
func (r *Range) replicaOn(n NodeID) (Replica, bool) {
	for _, rep := range r.Replicas {
		if rep.Node == n {
			return rep, true
		}
	}
	return Replica{}, false
}

// Snapshot is the input of Schedule: the cluster at one moment.
type Snapshot struct {
	Nodes  []Node
	Ranges []Range
	// InFlight are the operations the executor runs or has queued; their
	// ranges are left alone and their effect is counted as if done.
	InFlight []Operation
}
