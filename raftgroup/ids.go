package raftgroup

import "strconv"

// NodeID identifies a Tessera node (a process with one engine). Raft peer IDs
// inside every group are NodeIDs: a node holds at most one replica of a group.
// See docs/decisions.md ("raft peer IDs") for why and what changes when replicas
// can leave a node and come back.
type NodeID uint64

// GroupID identifies one Raft group (one range, or the meta group).
type GroupID uint64

func (n NodeID) String() string  { return "n" + strconv.FormatUint(uint64(n), 10) }
func (g GroupID) String() string { return "g" + strconv.FormatUint(uint64(g), 10) }
