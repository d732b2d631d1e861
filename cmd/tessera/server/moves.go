package server

import (
	"fmt"

	"github.com/tesseradb/tessera/placement"
	"github.com/tesseradb/tessera/proto/tesserapb"
	"github.com/tesseradb/tessera/raftgroup"
	"github.com/tesseradb/tessera/router"
)

// newReplica is the raft host's NewReplica hook: a message from a range's
// leader to a replica this node does not host yet (a learner being added)
// creates an uninitialized replica in the Store, which opens once its
// first snapshot applied (shard/store_replicas.go). The meta group is not
// a Store range: its replicas are created by the meta wiring only.
func (s *Server) newReplica(id raftgroup.GroupID, self raftgroup.ReplicaID) (raftgroup.StateMachine, bool) {
	if id == placement.MetaRangeID || s.store == nil {
		return nil, false
	}
	return s.store.NewReplica(id, self)
}

// registerAdmin serves the Admin service (replica moves, one step per
// call) on the peer port, beside the Internal service tessctl already uses.
func (s *Server) registerAdmin() error {
	a, err := router.NewAdmin(router.DefaultAdminConfig(), s.router, s.host, s.store)
	if err != nil {
		return err
	}
	tesserapb.RegisterAdminServer(s.peerGRPC, a)
	return nil
}

// MovesConfig configures replica moves on this node.
type MovesConfig struct {
	// SnapshotRate is --snapshot-rate: bytes per second of all snapshots
	// this node sends (0: raftgroup's default, 32 MiB/s).
	SnapshotRate int64
}

// Validate checks the configuration.
func (c MovesConfig) Validate() error {
	if c.SnapshotRate < 0 {
		return fmt.Errorf("server: --snapshot-rate %d must not be negative", c.SnapshotRate)
	}
	return nil
}

// apply puts the moves configuration into the raft host's.
func (c MovesConfig) apply(h *raftgroup.Config) {
	if c.SnapshotRate > 0 {
		h.SnapshotRate = c.SnapshotRate
	}
}
