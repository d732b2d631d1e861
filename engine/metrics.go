package engine

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	syncs        *prometheus.CounterVec
	syncDuration *prometheus.HistogramVec
	commits      *prometheus.CounterVec
	commitDur    *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		syncs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tessera_engine_fsyncs_total",
			Help: "fsync calls issued by the storage engine, by file kind (wal or other).",
		}, []string{"file"}),
		syncDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tessera_engine_fsync_duration_seconds",
			Help:    "Latency of fsync calls issued by the storage engine.",
			Buckets: prometheus.ExponentialBuckets(50e-6, 2, 16),
		}, []string{"file"}),
		commits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tessera_engine_batch_commits_total",
			Help: "Batches committed, by whether they were synced.",
		}, []string{"sync"}),
		commitDur: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tessera_engine_batch_commit_duration_seconds",
			Help:    "Latency of batch commits, by whether they were synced.",
			Buckets: prometheus.ExponentialBuckets(10e-6, 2, 18),
		}, []string{"sync"}),
	}
	if reg != nil {
		reg.MustRegister(m.syncs, m.syncDuration, m.commits, m.commitDur)
	}
	return m
}

func fileLabel(wal bool) string {
	if wal {
		return "wal"
	}
	return "other"
}

func (m *metrics) observeSync(wal bool, d time.Duration) {
	l := fileLabel(wal)
	m.syncs.WithLabelValues(l).Inc()
	m.syncDuration.WithLabelValues(l).Observe(d.Seconds())
}

func (m *metrics) observeCommit(sync bool, d time.Duration) {
	l := "false"
	if sync {
		l = "true"
	}
	m.commits.WithLabelValues(l).Inc()
	m.commitDur.WithLabelValues(l).Observe(d.Seconds())
}
