package server

import (
	"github.com/tesseradb/tessera/proto/tesserapb"
	"github.com/tesseradb/tessera/shard"
)

// openStore opens the node's replicas (shard.Store): every range whose
// descriptor is in the engine, whatever the bootstrap layout says, so the
// ranges splits created come back after a restart.
func (s *Server) openStore(clock shard.Clock, limits shard.Limits) error {
	st, err := shard.NewStore(shard.StoreConfig{
		Engine: s.eng,
		Host:   s.host,
		Replica: shard.Config{
			NodeID:  s.self,
			Clock:   clock,
			Limits:  limits,
			Metrics: s.obs.shard,
			Logger:  s.log,
			// auth.go: the auth revision range leaders here stamp on writes.
			AuthRevision: s.auth.appliedRevision,
		},
		OnSplit: s.splitOpened,
		OnMerge: s.mergeDone,
		Knobs:   s.cfg.StoreKnobs,
		Logger:  s.log,
	})
	if err != nil {
		return err
	}
	s.store = st
	return st.Start()
}

// splitOpened runs once the right half of a split applied here is open: the
// router's cache learns both halves at once (routers elsewhere learn them
// from routing errors or the directory).
func (s *Server) splitOpened(res shard.SplitResult) {
	if s.router != nil {
		s.router.Cache().Insert(res.Left)
		s.router.Cache().Insert(res.Right)
	}
	if s.closer != nil && s.cfg.FeedResolveByClosing {
		if rep := s.store.Replica(res.Right.GetRangeId()); rep != nil {
			rep.SetCloseRequester(s.closer)
		}
	}
}

// Replica returns the node's replica of a range, or nil (tests reach
// replicas through it).
func (s *Server) Replica(rangeID uint64) *shard.Replica { return s.store.Replica(rangeID) }

// Store returns the node's replicas.
func (s *Server) Store() *shard.Store { return s.store }

// seedRangeCache adds the descriptors of the local replicas to the router's
// cache, which starts from the bootstrap layout: after a restart the ranges
// splits made are known at once (the generation decides).
func (s *Server) seedRangeCache() {
	for _, rep := range s.store.Replicas() {
		s.router.Cache().Insert(rep.Descriptor())
	}
}

// mergeDone runs once a merge into a local replica applied and the right's
// replica is destroyed: the router's cache learns the merged range (it
// replaces both halves: the generation decides).
func (s *Server) mergeDone(merged *tesserapb.RangeDescriptor) {
	if s.router != nil {
		s.router.Cache().Insert(merged)
	}
}
