// Package raftgroup hosts many go.etcd.io/raft/v3 groups on one node.
//
// A Host owns, for every group replica on the node, a raft.RawNode and its
// log storage (logStorage, on the node's one engine), and drives them all with
// a fixed pool of workers — never a goroutine per group. What the committed
// entries mean is the StateMachine's business; this package only promises
// order and durability.
//
// # The Ready round
//
// A scheduler queues a group when something happened to it (a message, a
// proposal, a tick). A worker takes every queued group (up to a bound) and
// runs one round for all of them, in raft's order:
//
//  1. Tick each group if its tick is due, and take its Ready.
//  2. Ingest received replica snapshots that raft accepted.
//  3. Persist the log entries and HardStates of ALL groups of the round in
//     ONE engine batch, with ONE fsync if any group needs it (raft.MustSync).
//  4. Only then send the round's messages, one transport call per peer node.
//  5. Apply committed entries: each group's StateMachine writes into one
//     shared batch, the host adds each group's applied state (index, term,
//     ConfState) to it, and commits it without fsync (the log is durable and
//     replays on restart).
//  6. Advance each group and queue it again if it has more to do.
//
// A failed write of raft state stops the process: continuing on a broken disk
// would acknowledge what is not durable.
//
// # Storage
//
// Per group, in the engine's local key space: HardState, log entries and the
// truncated state (unreplicated); the applied state (replicated: it travels in
// snapshots). A new group is bootstrapped at index 10, term 5 on each initial
// voter; a replica added later starts empty, so the leader always sends it a
// snapshot. The log is truncated locally once it holds LogTruncateThreshold
// applied entries, keeping LogKeepEntries for slow followers.
//
// # Snapshots
//
// raft's Storage.Snapshot only describes the applied state. When raft emits a
// MsgSnap, the host exports the group's replicated local keys and data span
// from one engine snapshot as SSTs (each clearing its span first) and streams
// them; the snapshot's index is the applied index found in that engine
// snapshot. The receiver stages the files, steps the MsgSnap, and when raft
// accepts it ingests them together with its own reset raft state atomically.
//
// # Peers
//
// Raft peer ids are ReplicaIDs, distinct per group and never reused. Each
// group has its local replica id and a replica->node map (CreateGroup,
// SetPeers); outgoing messages go to the node of their To, incoming ones are
// stepped only when To is the local replica and From is a replica of the
// node the stream authenticated as. RemoveGroup leaves a tombstone that
// keeps an old replica id from ever being recreated (tombstone.go,
// docs/decisions.md "Replica ids"). Outside this package replicas are named
// by NodeID. The Transport keeps one gRPC stream per peer node carrying
// batches of (group, message), reports unreachable peers and snapshot
// status back to raft, and has a fault hook for partition tests.
//
// # Not yet
//
// Quiescence of idle groups and coalesced heartbeats (every group ticks and
// heartbeats on its own for now); deleting a removed replica's data (the
// Store's job; RemoveGroup deletes only the raft state).
package raftgroup
