package server

import (
	"fmt"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tesseradb/tessera/placement"
	"github.com/tesseradb/tessera/shard"
)

// observability holds the node's metrics wiring beyond what each package
// registers itself: per-RPC metrics of both gRPC servers, the shard
// metrics shared by all replicas, the node collector (etcd's names and the
// busiest ranges) and the peer prober. docs/operations.md lists them all.
type observability struct {
	reg    *prometheus.Registry
	client *grpcMetrics
	peer   *grpcMetrics
	shard  *shard.Metrics
	prober *peerProber
}

// newObservability registers the metrics that exist before the node's
// components do (they are handed to them as they are built).
func newObservability(reg *prometheus.Registry) *observability {
	return &observability{
		reg:    reg,
		client: newGRPCMetrics(reg, false),
		peer:   newGRPCMetrics(reg, true),
		shard:  shard.NewMetrics(reg),
	}
}

// startObservability registers what needs the running node (its TSO
// client, replicas and peers) and starts the peer prober. Called once the
// node serves.
func (s *Server) startObservability(clock *placement.TSOClient) error {
	if err := clock.RegisterMetrics(s.reg); err != nil {
		return fmt.Errorf("server: register TSO client metrics: %w", err)
	}
	if err := s.reg.Register(newNodeCollector(s)); err != nil {
		return fmt.Errorf("server: register node metrics: %w", err)
	}
	interval := s.cfg.PeerProbeInterval
	if interval <= 0 {
		interval = DefaultPeerProbeInterval
	}
	s.obs.prober = newPeerProber(s.nodes, interval, s.reg)
	s.obs.prober.start()
	return nil
}

// metricsHandler serves /metrics: the node's registry, plus the etcd names
// of Tessera metrics (etcdmetrics.go).
func (o *observability) metricsHandler() http.Handler {
	g := prometheus.Gatherers{o.reg, aliasGatherer{src: o.reg, aliases: etcdAliases}}
	return promhttp.HandlerFor(g, promhttp.HandlerOpts{})
}

func (o *observability) close() {
	if o != nil && o.prober != nil {
		o.prober.close()
	}
}
