package server

import (
	"slices"

	"github.com/tesseradb/tessera/router"
	"github.com/tesseradb/tessera/shard"
)

// startCloser starts the node's closed-revision side channel.
func (s *Server) startCloser() error {
	cfg := router.DefaultCloserConfig()
	cfg.Interval = s.cfg.ClosedRevisionInterval
	cfg.Registerer = s.reg
	cfg.Replicas = s.replicaList
	c, err := s.router.StartCloser(cfg)
	if err != nil {
		return err
	}
	s.closer = c
	return nil
}

// replicaList returns the node's replicas in range order (the registry does
// not change after start).
func (s *Server) replicaList() []*shard.Replica {
	ids := make([]uint64, 0, len(s.replicas))
	for id := range s.replicas {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	out := make([]*shard.Replica, 0, len(ids))
	for _, id := range ids {
		out = append(out, s.replicas[id])
	}
	return out
}
