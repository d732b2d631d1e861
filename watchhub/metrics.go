package watchhub

import (
	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	watchers        prometheus.Gauge
	streams         prometheus.Gauge
	subscriptions   prometheus.Gauge
	eventsSent      prometheus.Counter
	pendingEvents   prometheus.Gauge
	resubscriptions prometheus.Counter
	unsynced        prometheus.Counter
	eventLatency    prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		watchers: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tessera_watch_watchers", Help: "Watchers open on this node.",
		}),
		streams: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tessera_watch_streams", Help: "Watch gRPC streams open on this node.",
		}),
		subscriptions: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tessera_watch_range_subscriptions", Help: "Range feeds the watch hub of this node subscribes to.",
		}),
		eventsSent: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tessera_watch_events_sent_total", Help: "Watch events sent to clients.",
		}),
		pendingEvents: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tessera_watch_pending_events", Help: "Events received from range feeds and not yet released (waiting for other ranges to resolve).",
		}),
		resubscriptions: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tessera_watch_resubscriptions_total", Help: "Range feeds subscribed again after they ended (leader change, restart, network).",
		}),
		unsynced: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tessera_watch_unsynced_total", Help: "Times a watcher fell behind its stream and caught up from history.",
		}),
		eventLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "tessera_watch_event_latency_seconds",
			Help:    "Time from an event's revision timestamp (taken just before it was proposed) to its send to a watcher.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}),
	}
	if reg != nil {
		reg.MustRegister(m.watchers, m.streams, m.subscriptions, m.eventsSent, m.pendingEvents, m.resubscriptions, m.unsynced, m.eventLatency)
	}
	return m
}
