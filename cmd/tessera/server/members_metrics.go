package server

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tesseradb/tessera/placement"
)

// membersMetrics are the membership series (bounded labels: three
// liveness states, two results).
type membersMetrics struct {
	nodes      *prometheus.GaugeVec
	heartbeats *prometheus.CounterVec
}

func newMembersMetrics(reg prometheus.Registerer) *membersMetrics {
	m := &membersMetrics{
		nodes: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tessera_placement_nodes",
			Help: "Nodes of the node table by liveness, as the placement driver (meta leader) sees them; 0 on other nodes.",
		}, []string{"liveness"}),
		heartbeats: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tessera_membership_heartbeats_total",
			Help: "Node heartbeats this node sent to the placement driver, by result (ok, error).",
		}, []string{"result"}),
	}
	for _, l := range []string{placement.Live, placement.Suspect, placement.Dead} {
		m.nodes.WithLabelValues(l)
	}
	m.heartbeats.WithLabelValues("ok")
	m.heartbeats.WithLabelValues("error")
	if reg != nil {
		reg.MustRegister(m.nodes, m.heartbeats)
	}
	return m
}

// observe sets the node gauges from a snapshot (nil: not the leader).
func (m *membersMetrics) observe(snap *placement.ClusterSnapshot) {
	counts := map[string]int{}
	if snap != nil {
		for _, n := range snap.Nodes {
			counts[n.Liveness]++
		}
	}
	for _, l := range []string{placement.Live, placement.Suspect, placement.Dead} {
		m.nodes.WithLabelValues(l).Set(float64(counts[l]))
	}
}
