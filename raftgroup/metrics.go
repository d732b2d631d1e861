package raftgroup

import "github.com/prometheus/client_golang/prometheus"

type hostMetrics struct {
	proposals         prometheus.Counter
	proposalsDropped  prometheus.Counter
	syncLatency       prometheus.Histogram
	syncedBatches     prometheus.Counter
	entriesPerBatch   prometheus.Histogram
	groupsPerBatch    prometheus.Histogram
	leaderChanges     prometheus.Counter
	groups            prometheus.Gauge
	confChanges       prometheus.Counter
	logTruncations    prometheus.Counter
	messagesDropped   *prometheus.CounterVec
	snapshotsSent     prometheus.Counter
	snapshotsFailed   prometheus.Counter
	snapshotsReceived prometheus.Counter
	snapshotsApplied  prometheus.Counter
}

func newHostMetrics(reg prometheus.Registerer) *hostMetrics {
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: "tessera_raft_" + name, Help: help})
	}
	m := &hostMetrics{
		proposals:        counter("proposals_total", "Proposals accepted into a leader's log."),
		proposalsDropped: counter("proposals_dropped_total", "Proposals refused (not leader, or uncommitted log full)."),
		syncLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "tessera_raft_log_fsync_duration_seconds",
			Help:    "Latency of one Ready round's synced write of raft state (all its groups, one fsync).",
			Buckets: prometheus.ExponentialBuckets(100e-6, 2, 16),
		}),
		syncedBatches: counter("log_synced_batches_total", "Synced writes of raft state (one per Ready round that needs one)."),
		entriesPerBatch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "tessera_raft_log_batch_entries",
			Help:    "Log entries persisted per Ready round batch.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 14),
		}),
		groupsPerBatch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "tessera_raft_log_batch_groups",
			Help:    "Groups whose raft state was persisted in one Ready round batch.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 14),
		}),
		leaderChanges: counter("leader_changes_total", "Changes of the known leader of hosted groups."),
		groups: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tessera_raft_groups", Help: "Raft groups hosted on this node.",
		}),
		confChanges:    counter("conf_changes_applied_total", "Configuration changes applied."),
		logTruncations: counter("log_truncations_total", "Raft log truncations."),
		messagesDropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tessera_raft_messages_dropped_total",
			Help: "Raft messages the host dropped instead of stepping or sending, by reason (no_group, stale_replica, tombstoned, unknown_sender, wrong_sender, unknown_replica).",
		}, []string{"reason"}),
		snapshotsSent:     counter("snapshots_sent_total", "Replica snapshots sent."),
		snapshotsFailed:   counter("snapshots_send_failed_total", "Replica snapshots that failed to send."),
		snapshotsReceived: counter("snapshots_received_total", "Replica snapshots received and staged."),
		snapshotsApplied:  counter("snapshots_applied_total", "Replica snapshots ingested."),
	}
	if reg != nil {
		reg.MustRegister(m.proposals, m.proposalsDropped, m.syncLatency, m.syncedBatches, m.entriesPerBatch,
			m.groupsPerBatch, m.leaderChanges, m.groups, m.confChanges, m.logTruncations, m.messagesDropped,
			m.snapshotsSent, m.snapshotsFailed, m.snapshotsReceived, m.snapshotsApplied)
	}
	return m
}

// Reasons a raft message is dropped (the bounded "reason" label of
// tessera_raft_messages_dropped_total).
const (
	// dropNoGroup: the group is not hosted here and no replica was created.
	dropNoGroup = "no_group"
	// dropStaleReplica: addressed to a replica id other than the local one
	// (an older or newer incarnation of the replica on this node).
	dropStaleReplica = "stale_replica"
	// dropTombstoned: addressed to a replica id below the group's tombstone.
	dropTombstoned = "tombstoned"
	// dropUnknownSender: the From replica is not in the group's peer map.
	dropUnknownSender = "unknown_sender"
	// dropWrongSender: the From replica belongs to another node than the
	// one the stream authenticated as.
	dropWrongSender = "wrong_sender"
	// dropUnknownReplica: an outgoing message for a replica id the group's
	// peer map does not know (no node to send it to).
	dropUnknownReplica = "unknown_replica"
)

func (m *hostMetrics) dropped(reason string) { m.messagesDropped.WithLabelValues(reason).Inc() }
