package server

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

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
	if s.cfg.FeedResolveByClosing {
		for _, rep := range s.replicaList() {
			rep.SetCloseRequester(c)
		}
	}
	if s.reg != nil {
		for _, via := range []string{"read_index", "closing"} {
			f := prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name:        "tessera_shard_feed_resolves_total",
				Help:        "Resolves the watch hub asked of range feeds led here, by how they were served (a ReadIndex round of the range, or a closing round of the node's side channel).",
				ConstLabels: prometheus.Labels{"via": via},
			}, func() float64 { return float64(s.feedResolves(via == "closing")) })
			if err := s.reg.Register(f); err != nil {
				return fmt.Errorf("server: register resolve metrics: %w", err)
			}
		}
	}
	return nil
}

// feedResolves sums the feed resolves of the node's replicas.
func (s *Server) feedResolves(closing bool) uint64 {
	var n uint64
	for _, rep := range s.replicaList() {
		ri, cl := rep.ResolveCounts()
		if closing {
			n += cl
		} else {
			n += ri
		}
	}
	return n
}

// replicaList returns the node's replicas in range order (splits add
// replicas: callers ask again each time).
func (s *Server) replicaList() []*shard.Replica { return s.store.Replicas() }
