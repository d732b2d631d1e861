package server

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/tesseradb/tessera/placement"
	"github.com/tesseradb/tessera/raftgroup"
)

// DefaultPeerProbeInterval is how often a node measures the round trip to
// each peer: etcd probes its peers every few seconds too.
const DefaultPeerProbeInterval = 5 * time.Second

// peerProber measures the round-trip time to every other node over the
// peer port (a gRPC health check on the connection the node uses for its
// peer RPCs) into etcd's etcd_network_peer_round_trip_time_seconds.
type peerProber struct {
	nodes    *placement.Nodes
	interval time.Duration
	rtt      *prometheus.HistogramVec // To: the peer's node id
	failures *prometheus.CounterVec   // To

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func newPeerProber(nodes *placement.Nodes, interval time.Duration, reg prometheus.Registerer) *peerProber {
	p := &peerProber{
		nodes: nodes, interval: interval,
		rtt: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "etcd_network_peer_round_trip_time_seconds",
			Help:    "Round-trip time of a health check to a peer node over the peer port.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}, []string{"To"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tessera_network_peer_probe_failures_total",
			Help: "Health checks of a peer node over the peer port that failed.",
		}, []string{"To"}),
	}
	reg.MustRegister(p.rtt, p.failures)
	return p
}

// registerHealth serves the health check the probers of other nodes call.
func registerHealth(srv grpc.ServiceRegistrar) {
	healthpb.RegisterHealthServer(srv, health.NewServer())
}

func (p *peerProber) start() {
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		t := time.NewTicker(p.interval)
		defer t.Stop()
		for {
			p.probeAll(ctx)
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
}

func (p *peerProber) probeAll(ctx context.Context) {
	for _, n := range p.nodes.List() {
		id := raftgroup.NodeID(n.GetNodeId())
		if id == p.nodes.Self() {
			continue
		}
		to := strconv.FormatUint(uint64(id), 10)
		if err := p.probe(ctx, id, to); err != nil && ctx.Err() == nil {
			p.failures.WithLabelValues(to).Inc()
		}
	}
}

func (p *peerProber) probe(ctx context.Context, id raftgroup.NodeID, to string) error {
	conn, err := p.nodes.Conn(id)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, p.interval)
	defer cancel()
	start := time.Now()
	if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		return err
	}
	p.rtt.WithLabelValues(to).Observe(time.Since(start).Seconds())
	return nil
}

func (p *peerProber) close() {
	if p.cancel != nil {
		p.cancel()
	}
	p.wg.Wait()
}
