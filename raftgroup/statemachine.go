package raftgroup

import (
	"github.com/tesseradb/tessera/engine"
	"go.etcd.io/raft/v3/raftpb"
)

// StateMachine is what a group's committed entries are applied to. The host
// calls it from one worker at a time per group, in log order.
type StateMachine interface {
	// DataSpan is the engine span of the group's replicated data. It travels
	// in replica snapshots together with the group's replicated local keys.
	DataSpan() engine.Span
	// Apply applies committed entries, in order, by writing into b. The host
	// adds the group's applied state to the same b and commits it after
	// Apply returns, so effects and applied index are atomic. Entries of
	// every type are passed (conf changes after the host applied them to
	// raft); entries with no data (leader no-ops) too. An error is fatal.
	Apply(b *engine.Batch, ents []*raftpb.Entry) error
	// Applied is called after b committed, with the last applied index.
	Applied(index uint64)
	// SnapshotApplied is called after a snapshot replaced the group's
	// replicated state (data span and replicated local keys) at index.
	SnapshotApplied(index uint64) error
	// LeaderChanged is called when this replica learns of a new leader
	// (0 while none is known) or of its own change of role.
	LeaderChanged(leader NodeID, term uint64, isLeader bool)
}
