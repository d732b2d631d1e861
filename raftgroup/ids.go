package raftgroup

import "strconv"

// NodeID identifies a Tessera node (a process with one engine). Everything
// outside this package names replicas by the node that holds them: leaders,
// NotLeaderError, Status, TransferLeader and LeaderChanged all speak NodeIDs.
type NodeID uint64

// GroupID identifies one Raft group (one range, or the meta group).
type GroupID uint64

// ReplicaID identifies one replica within its group: it is the raft peer id
// inside the group, allocated from the range descriptor's next_replica_id and
// never reused within the group, so a replica removed from a node and added
// back later is a new replica (docs/decisions.md, "Replica ids"). The Host
// translates between ReplicaIDs and NodeIDs with each group's peer map.
type ReplicaID uint64

// Peer is one replica of a group: its raft peer id and the node holding it.
type Peer struct {
	Replica ReplicaID
	Node    NodeID
}

func (n NodeID) String() string    { return "n" + strconv.FormatUint(uint64(n), 10) }
func (g GroupID) String() string   { return "g" + strconv.FormatUint(uint64(g), 10) }
func (r ReplicaID) String() string { return "r" + strconv.FormatUint(uint64(r), 10) }

// peerMap is a group's immutable replica->node map; a change swaps the whole
// map (group.peers), so readers never lock.
type peerMap struct {
	nodes    map[ReplicaID]NodeID
	replicas map[NodeID]ReplicaID
}

func newPeerMap(peers []Peer) *peerMap {
	m := &peerMap{nodes: make(map[ReplicaID]NodeID, len(peers)), replicas: make(map[NodeID]ReplicaID, len(peers))}
	for _, p := range peers {
		m.nodes[p.Replica] = p.Node
		m.replicas[p.Node] = p.Replica
	}
	return m
}

// node returns the node of replica r (0: unknown).
func (m *peerMap) node(r ReplicaID) NodeID { return m.nodes[r] }

// replica returns node n's replica (0: none).
func (m *peerMap) replica(n NodeID) ReplicaID { return m.replicas[n] }
