package server

import (
	"context"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/stats"
)

// rpcLatencyBuckets are the buckets of the per-RPC latency histograms:
// 0.5 ms to about 16 s, covering a local serializable read up to a write
// that waits out an election.
var rpcLatencyBuckets = prometheus.ExponentialBuckets(0.0005, 2, 16)

// grpcMetrics are the per-RPC metrics of one gRPC server, from the gRPC
// ecosystem's Prometheus middleware, plus the bytes it received and sent.
type grpcMetrics struct {
	rpc           *grpcprom.ServerMetrics
	received, snt prometheus.Counter
}

// newGRPCMetrics registers the metrics of one server on reg. The client
// port's carry etcd's names (grpc_server_handled_total, ...,
// etcd_network_client_grpc_{received,sent}_bytes_total) so that etcd's
// dashboards read them; the peer port's are prefixed tessera_peer_ so that
// forwarded requests are not counted twice as client requests.
func newGRPCMetrics(reg prometheus.Registerer, peer bool) *grpcMetrics {
	var counterOpts []grpcprom.CounterOption
	histOpts := []grpcprom.HistogramOption{grpcprom.WithHistogramBuckets(rpcLatencyBuckets)}
	recvName, sentName := "etcd_network_client_grpc_received_bytes_total", "etcd_network_client_grpc_sent_bytes_total"
	what := "client"
	if peer {
		counterOpts = append(counterOpts, grpcprom.WithNamespace("tessera_peer"))
		histOpts = append(histOpts, grpcprom.WithHistogramNamespace("tessera_peer"))
		recvName, sentName = "tessera_peer_grpc_received_bytes_total", "tessera_peer_grpc_sent_bytes_total"
		what = "peer"
	}
	m := &grpcMetrics{
		rpc: grpcprom.NewServerMetrics(
			grpcprom.WithServerCounterOptions(counterOpts...),
			grpcprom.WithServerHandlingTimeHistogram(histOpts...),
		),
		received: prometheus.NewCounter(prometheus.CounterOpts{
			Name: recvName, Help: "Bytes received on the " + what + " gRPC port (wire size of messages).",
		}),
		snt: prometheus.NewCounter(prometheus.CounterOpts{
			Name: sentName, Help: "Bytes sent on the " + what + " gRPC port (wire size of messages).",
		}),
	}
	reg.MustRegister(m.rpc, m.received, m.snt)
	return m
}

// serverOptions are the options that make a gRPC server report to m.
func (m *grpcMetrics) serverOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(m.rpc.UnaryServerInterceptor()),
		grpc.ChainStreamInterceptor(m.rpc.StreamServerInterceptor()),
		grpc.StatsHandler(byteCounter{m}),
	}
}

// initialize creates the series of every method of the services registered
// on srv (at zero), so that rates and alerts see them before the first call.
func (m *grpcMetrics) initialize(srv *grpc.Server) { m.rpc.InitializeMetrics(srv) }

// byteCounter is a stats.Handler counting the wire bytes of messages.
type byteCounter struct{ m *grpcMetrics }

func (b byteCounter) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context { return ctx }
func (b byteCounter) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	return ctx
}
func (b byteCounter) HandleConn(context.Context, stats.ConnStats) {}

func (b byteCounter) HandleRPC(_ context.Context, s stats.RPCStats) {
	switch s := s.(type) {
	case *stats.InPayload:
		b.m.received.Add(float64(s.WireLength))
	case *stats.OutPayload:
		b.m.snt.Add(float64(s.WireLength))
	}
}
