package raftgroup

import "github.com/tesseradb/tessera/engine"

// Bootstrap writes the initial raft state of a new group into an engine
// that no Host runs on yet (offline tools: a restore building data dirs).
// It is what Host.Bootstrap writes.
func Bootstrap(eng *engine.Engine, id GroupID, voters []ReplicaID) error {
	return writeBootstrap(eng, id, voters)
}
