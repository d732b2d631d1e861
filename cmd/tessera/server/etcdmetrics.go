package server

import (
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/proto"
)

// etcdAlias exports a Tessera metric a second time under etcd's name, so
// that etcd's dashboards and alerts read it. docs/operations.md says what
// each means in a multi-range store.
type etcdAlias struct {
	etcd, tessera string
	// merge sums every series of the source into one (histograms of the
	// same buckets, counters), dropping its labels.
	merge bool
	// renameLabel, if set, renames the source's label [0] to etcd's [1].
	renameLabel [2]string
}

// etcdAliases are the etcd metrics that have a Tessera source of the same
// meaning. The rest of etcd's names are computed (nodeCollector) or come
// from the gRPC middleware (grpcmetrics.go).
var etcdAliases = []etcdAlias{
	{etcd: "etcd_disk_wal_fsync_duration_seconds", tessera: "tessera_raft_log_fsync_duration_seconds"},
	{etcd: "etcd_disk_backend_commit_duration_seconds", tessera: "tessera_engine_batch_commit_duration_seconds", merge: true},
	{etcd: "etcd_server_proposals_failed_total", tessera: "tessera_shard_proposals_failed_total"},
	{etcd: "etcd_network_peer_sent_bytes_total", tessera: "tessera_raft_transport_sent_bytes_total", renameLabel: [2]string{"peer", "To"}},
	{etcd: "etcd_network_peer_received_bytes_total", tessera: "tessera_raft_transport_received_bytes_total", renameLabel: [2]string{"peer", "From"}},
	{etcd: "etcd_network_peer_sent_failures_total", tessera: "tessera_raft_transport_send_errors_total", renameLabel: [2]string{"peer", "To"}},
}

// aliasGatherer gathers src and returns the etcd aliases of its families.
// It is served next to src (prometheus.Gatherers), never registered in it.
type aliasGatherer struct {
	src     prometheus.Gatherer
	aliases []etcdAlias
}

func (g aliasGatherer) Gather() ([]*dto.MetricFamily, error) {
	mfs, err := g.src.Gather()
	byName := make(map[string]*dto.MetricFamily, len(mfs))
	for _, mf := range mfs {
		byName[mf.GetName()] = mf
	}
	var out []*dto.MetricFamily
	for _, a := range g.aliases {
		src, ok := byName[a.tessera]
		if !ok || len(src.GetMetric()) == 0 {
			continue
		}
		out = append(out, aliasFamily(src, a))
	}
	return out, err
}

// aliasFamily copies src under a's etcd name.
func aliasFamily(src *dto.MetricFamily, a etcdAlias) *dto.MetricFamily {
	mf := proto.Clone(src).(*dto.MetricFamily)
	mf.Name = proto.String(a.etcd)
	mf.Help = proto.String("etcd's name for " + a.tessera + ": " + src.GetHelp())
	if a.renameLabel[0] != "" {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == a.renameLabel[0] {
					l.Name = proto.String(a.renameLabel[1])
				}
			}
		}
	}
	if a.merge && len(mf.GetMetric()) > 1 {
		mf.Metric = []*dto.Metric{mergeMetrics(mf.GetType(), mf.GetMetric())}
	}
	return mf
}

// mergeMetrics sums counters, gauges and histograms (with identical
// buckets, as every series of one HistogramVec has) into one series.
func mergeMetrics(t dto.MetricType, ms []*dto.Metric) *dto.Metric {
	out := proto.Clone(ms[0]).(*dto.Metric)
	out.Label = nil
	out.TimestampMs = nil
	for _, m := range ms[1:] {
		switch t {
		case dto.MetricType_COUNTER:
			out.Counter.Value = proto.Float64(out.GetCounter().GetValue() + m.GetCounter().GetValue())
		case dto.MetricType_GAUGE:
			out.Gauge.Value = proto.Float64(out.GetGauge().GetValue() + m.GetGauge().GetValue())
		case dto.MetricType_HISTOGRAM:
			h, o := out.GetHistogram(), m.GetHistogram()
			h.SampleCount = proto.Uint64(h.GetSampleCount() + o.GetSampleCount())
			h.SampleSum = proto.Float64(h.GetSampleSum() + o.GetSampleSum())
			for i, b := range h.GetBucket() {
				if i < len(o.GetBucket()) && o.GetBucket()[i].GetUpperBound() == b.GetUpperBound() {
					b.CumulativeCount = proto.Uint64(b.GetCumulativeCount() + o.GetBucket()[i].GetCumulativeCount())
				}
			}
		}
	}
	return out
}
