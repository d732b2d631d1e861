package router

import "github.com/prometheus/client_golang/prometheus"

// Reasons a request to a range is tried again (label "reason" of
// tessera_router_retries_total).
const (
	retryNotLeader     = "not_leader"      // the replica tried is not the leader
	retryRangeNotFound = "range_not_found" // the node tried holds no replica
	retryTransport     = "transport"       // the node tried could not be reached
	retryElection      = "election"        // every replica tried: waiting for a leader
	retryResplit       = "resplit"         // the range split or merged: re-split over the new ranges
)

// metrics are the router's metrics. They exist whether or not they are
// registered (Config.Registerer nil).
type metrics struct {
	requests *prometheus.CounterVec // target: local or remote
	retries  *prometheus.CounterVec // reason
	fanOut   prometheus.Histogram
	// dirReports: descriptors this node reported to the range directory.
	dirReports prometheus.Counter

	// Progress of a backup (Maintenance.Snapshot) served by this node.
	backupInProgress prometheus.Gauge
	backupRanges     *prometheus.GaugeVec // state: done, total (of the running or last backup)
	backupBytes      prometheus.Counter

	probes *probeMetrics // current_revision.go
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tessera_router_range_requests_total",
			Help: "Requests the router sent to one range's replica, by target: local (this node) or remote (forwarded over the peer port).",
		}, []string{"target"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tessera_router_retries_total",
			Help: "Requests to a range tried again, by reason.",
		}, []string{"reason"}),
		fanOut: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "tessera_router_fanout_ranges",
			Help:    "Ranges one client Range request covers (1: no fan-out).",
			Buckets: prometheus.ExponentialBuckets(1, 2, 12),
		}),
		dirReports: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tessera_router_directory_reports_total",
			Help: "Descriptors of ranges this node leads that it reported to the range directory (reconciliation).",
		}),
	}
	m.probes = newProbeMetrics(reg)
	m.backupInProgress = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "tessera_backup_in_progress",
		Help: "Backups (etcdctl/tessctl snapshot save) this node is streaming now.",
	})
	m.backupRanges = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "tessera_backup_ranges",
		Help: "Ranges of the running (or last) backup served by this node: done so far and total.",
	}, []string{"state"})
	m.backupBytes = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tessera_backup_sent_bytes_total",
		Help: "Bytes of backups this node has streamed.",
	})
	for _, st := range []string{"done", "total"} {
		m.backupRanges.WithLabelValues(st)
	}
	for _, t := range []string{"local", "remote"} {
		m.requests.WithLabelValues(t)
	}
	for _, r := range []string{retryNotLeader, retryRangeNotFound, retryTransport, retryElection, retryResplit} {
		m.retries.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.retries, m.fanOut, m.dirReports, m.backupInProgress, m.backupRanges, m.backupBytes)
	}
	return m
}
