package placement

import "github.com/prometheus/client_golang/prometheus"

// tsoClientMetrics are the metrics of a node's TSO client. They exist (and
// are updated) whether or not they are registered.
type tsoClientMetrics struct {
	calls         prometheus.Counter
	errors        prometheus.Counter
	retries       prometheus.Counter
	leaderChanges prometheus.Counter
	batchRequests prometheus.Histogram
	batchStamps   prometheus.Histogram
	duration      prometheus.Histogram
}

func newTSOClientMetrics() *tsoClientMetrics {
	return &tsoClientMetrics{
		calls: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tessera_tso_calls_total",
			Help: "Batched calls of this node's TSO client (each serves every request that waited for it).",
		}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tessera_tso_errors_total",
			Help: "TSO calls that failed (no TSO leader within the call timeout); their writes fail.",
		}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tessera_tso_retries_total",
			Help: "Attempts of a TSO call after the first (the target was not the leader or unreachable).",
		}),
		leaderChanges: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tessera_tso_leader_changes_total",
			Help: "Times this node's TSO client found the TSO at a different node than before.",
		}),
		batchRequests: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "tessera_tso_batch_requests",
			Help:    "Requests coalesced into one TSO call.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 14),
		}),
		batchStamps: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "tessera_tso_batch_timestamps",
			Help:    "Timestamps handed out by one TSO call.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 14),
		}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "tessera_tso_call_duration_seconds",
			Help:    "Latency of one TSO call of this node's client, retries included.",
			Buckets: prometheus.ExponentialBuckets(50e-6, 2, 18),
		}),
	}
}

// RegisterMetrics registers the client's metrics on reg.
func (c *TSOClient) RegisterMetrics(reg prometheus.Registerer) error {
	m := c.metrics
	for _, col := range []prometheus.Collector{m.calls, m.errors, m.retries, m.leaderChanges, m.batchRequests, m.batchStamps, m.duration} {
		if err := reg.Register(col); err != nil {
			return err
		}
	}
	return nil
}
