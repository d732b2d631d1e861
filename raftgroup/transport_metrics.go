package raftgroup

import "github.com/prometheus/client_golang/prometheus"

// Reasons a message is dropped by the Transport (label "reason" of
// tessera_raft_transport_messages_dropped_total).
const (
	dropReasonQueueFull = "queue_full" // the peer's send queue was full
	dropReasonSendError = "send_error" // lost with a batch whose dial or send failed
	dropReasonEncode    = "encode"     // the raftpb.Message could not be marshaled
	dropReasonClosed    = "closed"     // Send after Close
)

// Results of a snapshot (label "result" of the snapshot counters).
const (
	snapshotResultAccepted = "accepted" // the receiver's handler took it
	snapshotResultRejected = "rejected" // the receiver's handler returned an error
	snapshotResultError    = "error"    // the stream failed (dial, read, send, protocol)
)

// transportMetrics are the Prometheus metrics of one Transport. They exist
// (and are updated) even when no Registerer is configured.
type transportMetrics struct {
	messagesSent     *prometheus.CounterVec // peer
	messagesDropped  *prometheus.CounterVec // peer, reason
	batchesSent      *prometheus.CounterVec // peer
	sentBytes        *prometheus.CounterVec // peer
	sendErrors       *prometheus.CounterVec // peer
	streamReconnects *prometheus.CounterVec // peer

	messagesReceived *prometheus.CounterVec // peer (the sender)
	receivedBytes    *prometheus.CounterVec // peer (the sender)
	invalidReceived  prometheus.Counter

	snapshotsSent     *prometheus.CounterVec // result
	snapshotsReceived *prometheus.CounterVec // result
	snapshotSentBytes prometheus.Counter

	// Progress of snapshots (long operations): how many are streaming now,
	// and the bytes received so far (the rate is the progress).
	snapshotsInProgress   *prometheus.GaugeVec // direction
	snapshotReceivedBytes prometheus.Counter
}

func newTransportMetrics() *transportMetrics {
	const ns, sub = "tessera", "raft_transport"
	counterVec := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: name, Help: help,
		}, labels)
	}
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: name, Help: help,
		})
	}
	m := &transportMetrics{
		messagesSent: counterVec("messages_sent_total",
			"Raft messages handed to the stream to a peer node.", "peer"),
		messagesDropped: counterVec("messages_dropped_total",
			"Raft messages to a peer node that were dropped before they reached the stream, by reason.", "peer", "reason"),
		batchesSent: counterVec("batches_sent_total",
			"RaftBatches sent to a peer node.", "peer"),
		sentBytes: counterVec("sent_bytes_total",
			"Encoded size of the RaftBatches sent to a peer node.", "peer"),
		sendErrors: counterVec("send_errors_total",
			"Failures on the outbound path to a peer node: resolve, dial and stream errors, and batches the peer reported as invalid.", "peer"),
		streamReconnects: counterVec("stream_reconnects_total",
			"Attempts to open a new stream to a peer node after the previous stream or attempt failed.", "peer"),
		messagesReceived: counterVec("messages_received_total",
			"Raft messages received from a peer node and delivered to the handler.", "peer"),
		receivedBytes: counterVec("received_bytes_total",
			"Encoded size of the RaftBatches received from a peer node.", "peer"),
		invalidReceived: counter("invalid_received_total",
			"Received raft messages or batches dropped as invalid (undecodable, misaddressed)."),
		snapshotsSent: counterVec("snapshots_sent_total",
			"Snapshots sent, by result.", "result"),
		snapshotsReceived: counterVec("snapshots_received_total",
			"Snapshots received, by result.", "result"),
		snapshotSentBytes: counter("snapshot_sent_bytes_total",
			"Snapshot data bytes sent."),
		snapshotsInProgress: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "snapshots_in_progress",
			Help: "Snapshots streaming now, by direction (send or receive).",
		}, []string{"direction"}),
		snapshotReceivedBytes: counter("snapshot_received_bytes_total",
			"Snapshot data bytes received."),
	}
	for _, d := range []string{"send", "receive"} {
		m.snapshotsInProgress.WithLabelValues(d)
	}
	return m
}

func (m *transportMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{
		m.messagesSent, m.messagesDropped, m.batchesSent, m.sentBytes, m.sendErrors,
		m.streamReconnects, m.messagesReceived, m.invalidReceived, m.snapshotsSent,
		m.snapshotsReceived, m.snapshotSentBytes, m.receivedBytes, m.snapshotsInProgress,
		m.snapshotReceivedBytes,
	}
}

// register registers every metric on r, or none of them.
func (m *transportMetrics) register(r prometheus.Registerer) error {
	var done []prometheus.Collector
	for _, c := range m.collectors() {
		if err := r.Register(c); err != nil {
			for _, d := range done {
				r.Unregister(d)
			}
			return err
		}
		done = append(done, c)
	}
	return nil
}

// unregister undoes register; used by Close so that a node can build a new
// Transport on the same registry.
func (m *transportMetrics) unregister(r prometheus.Registerer) {
	for _, c := range m.collectors() {
		r.Unregister(c)
	}
}
