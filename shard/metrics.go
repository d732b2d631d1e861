package shard

import (
	"context"
	"errors"
	"math"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the shard metrics of one node, shared by all its replicas
// (one series per metric, whatever the number of ranges: per-range views
// are the node's top-N collector, fed by Replica.Load).
type Metrics struct {
	writes          prometheus.Counter
	writesFailed    prometheus.Counter
	writeDuration   prometheus.Histogram
	reads           prometheus.Counter
	applyDuration   prometheus.Histogram
	compactions     prometheus.Gauge
	compactedTotal  prometheus.Counter
	compactFailures prometheus.Counter
	authOldRevision prometheus.Counter
}

// NewMetrics returns a node's shard metrics, registered on reg (nil: not
// registered, as in tests that build replicas alone).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		writes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tessera_shard_proposals_total",
			Help: "Writes (puts, deletes, txns, compactions) a range leader on this node accepted into its proposal pipeline.",
		}),
		writesFailed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tessera_shard_proposals_failed_total",
			Help: "Writes of the proposal pipeline that failed without applying (no revision, leader lost, proposal dropped, outcome unknown). Cancelled by the client is not counted.",
		}),
		writeDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "tessera_shard_proposal_duration_seconds",
			Help:    "Time from a write entering a leader's proposal pipeline to its result (revision, raft commit, apply).",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}),
		reads: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tessera_shard_reads_total",
			Help: "Reads served by the replicas of this node.",
		}),
		applyDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "tessera_shard_apply_duration_seconds",
			Help:    "Time to apply one round of committed entries of a range to MVCC (into the round's batch).",
			Buckets: prometheus.ExponentialBuckets(10e-6, 2, 18),
		}),
		compactions: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tessera_shard_compactions_in_progress",
			Help: "Physical MVCC compactions of ranges running now on this node.",
		}),
		compactedTotal: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tessera_shard_compaction_deleted_versions_total",
			Help: "Versions deleted by physical compactions, counted per committed batch (its rate is the progress of a running compaction).",
		}),
		compactFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tessera_shard_compaction_failures_total",
			Help: "Physical compactions that failed.",
		}),
		authOldRevision: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tessera_shard_auth_old_revision_total",
			Help: "Writes proposed on this node refused at apply because they were permission-checked under an older auth revision than the range knew (etcd's \"auth: revision in header is old\").",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.writes, m.writesFailed, m.writeDuration, m.reads, m.applyDuration,
			m.compactions, m.compactedTotal, m.compactFailures, m.authOldRevision)
	}
	return m
}

// observeWrite records a write's outcome.
func (m *Metrics) observeWrite(start time.Time, err error) {
	m.writeDuration.Observe(time.Since(start).Seconds())
	if err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
		m.writesFailed.Inc()
	}
}

// DefaultLoadHalfLife is the half-life of a replica's load: a range that
// turns idle drops out of the top ranges within a few minutes.
const DefaultLoadHalfLife = time.Minute

// loadMeter is an exponentially decaying request rate: each request adds
// one, and the sum halves every halfLife. rate() is requests per second
// averaged over about halfLife/ln 2.
type loadMeter struct {
	mu       sync.Mutex
	halfLife time.Duration
	sum      float64
	at       time.Time
}

// decayLocked decays the sum to now. Time never goes back: a caller with an
// older now (concurrent callers) leaves the sum as is.
func (l *loadMeter) decayLocked(now time.Time) {
	if l.at.IsZero() {
		l.at = now
		return
	}
	if now.After(l.at) {
		l.sum *= math.Exp2(-float64(now.Sub(l.at)) / float64(l.halfLife))
		l.at = now
	}
}

func (l *loadMeter) add(now time.Time, n float64) {
	l.mu.Lock()
	l.decayLocked(now)
	l.sum += n
	l.mu.Unlock()
}

// rate returns the decayed request rate in requests per second.
func (l *loadMeter) rate(now time.Time) float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.decayLocked(now)
	// The sum of a steady rate r is r * halfLife / ln 2.
	return l.sum * math.Ln2 / l.halfLife.Seconds()
}
