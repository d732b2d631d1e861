package scheduler

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// executorMetrics are the executor's metrics; they exist (and are updated)
// whether or not they are registered. Labels: the operation kind (five
// values) and the result (done, failed, dropped).
type executorMetrics struct {
	ops           *prometheus.CounterVec
	duration      *prometheus.HistogramVec
	running       prometheus.Gauge
	waiting       prometheus.Gauge
	paused        prometheus.Gauge
	snapshotBytes prometheus.Counter
}

func newExecutorMetrics(reg prometheus.Registerer) (*executorMetrics, error) {
	m := &executorMetrics{
		ops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tessera_scheduler_operations_total",
			Help: "Placement operations finished, by kind and result (done, failed, dropped: the queue was full).",
		}, []string{"kind", "result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tessera_scheduler_operation_duration_seconds",
			Help:    "Time from start to end of a placement operation (all its steps), by kind.",
			Buckets: prometheus.ExponentialBuckets(0.01, 2, 16),
		}, []string{"kind"}),
		running: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tessera_scheduler_operations_running",
			Help: "Placement operations running.",
		}),
		waiting: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tessera_scheduler_operations_waiting",
			Help: "Placement operations queued, waiting for a limit or a resume.",
		}),
		paused: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tessera_scheduler_paused",
			Help: "1 while rebalancing is paused.",
		}),
		snapshotBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tessera_scheduler_snapshot_bytes_total",
			Help: "Snapshot bytes of the placement operations started (their ranges' sizes).",
		}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.ops, m.duration, m.running, m.waiting, m.paused, m.snapshotBytes} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("scheduler: register metrics: %w", err)
			}
		}
	}
	return m, nil
}

func (m *executorMetrics) result(k OpKind, result string) {
	m.ops.WithLabelValues(k.String(), result).Inc()
}
