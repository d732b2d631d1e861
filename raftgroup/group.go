package raftgroup

import (
	"log/slog"
	"sync"
	"sync/atomic"

	"go.etcd.io/raft/v3"
)

// group is one hosted replica of a Raft group.
type group struct {
	id      GroupID
	self    ReplicaID // this replica's raft peer id
	sm      StateMachine
	storage *logStorage
	log     *slog.Logger

	// raftMu guards rn. Workers hold it only to step, tick, take a Ready
	// and Advance; never across I/O. Lock order: raftMu before storage.mu.
	raftMu sync.Mutex
	rn     *raft.RawNode

	// peers maps the group's replica ids to nodes (SetPeers swaps it).
	peers atomic.Pointer[peerMap]

	leader atomic.Uint64 // NodeID of the known leader, 0 if none
	// isLeader is this replica's role as of its last Ready with a soft state
	// (set by the worker that holds the group).
	isLeader atomic.Bool
	// leaderChanges counts changes of the known leader (to a non-zero one).
	leaderChanges atomic.Uint64

	// reads coalesces ReadIndex requests (readindex.go).
	reads *readBatcher

	mu struct {
		sync.Mutex
		readWaiters map[string]chan uint64 // ReadIndex request ctx -> waiter
		staged      map[uint64]stagedSnapshot
		lastLead    uint64
		lastTerm    uint64
		wasLeader   bool
		removed     bool
	}
}

func (g *group) leaderID() NodeID { return NodeID(g.leader.Load()) }

// nodeOf returns the node holding replica r of the group (0: unknown).
func (g *group) nodeOf(r uint64) NodeID { return g.peers.Load().node(ReplicaID(r)) }

// replicaOn returns the group's replica on node n (0: none known).
func (g *group) replicaOn(n NodeID) ReplicaID { return g.peers.Load().replica(n) }
