package integration_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	pmodel "github.com/prometheus/common/model"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tesseradb/tessera/cmd/tessera/server"
	"github.com/tesseradb/tessera/tests/testcluster"
)

// etcdMetricNames are the etcd metrics every node must export (their
// meaning in a multi-range store: docs/operations.md).
var etcdMetricNames = []string{
	"etcd_server_has_leader",
	"etcd_server_is_leader",
	"etcd_server_leader_changes_seen_total",
	"etcd_server_proposals_committed_total",
	"etcd_server_proposals_applied_total",
	"etcd_server_proposals_pending",
	"etcd_server_proposals_failed_total",
	"etcd_server_quota_backend_bytes",
	"etcd_disk_wal_fsync_duration_seconds",
	"etcd_disk_backend_commit_duration_seconds",
	"etcd_mvcc_db_total_size_in_bytes",
	"etcd_mvcc_db_total_size_in_use_in_bytes",
	"etcd_network_peer_round_trip_time_seconds",
	"etcd_network_peer_sent_bytes_total",
	"etcd_network_peer_received_bytes_total",
	"etcd_network_peer_sent_failures_total",
	"etcd_network_client_grpc_received_bytes_total",
	"etcd_network_client_grpc_sent_bytes_total",
	"grpc_server_started_total",
	"grpc_server_handled_total",
	"grpc_server_handling_seconds",
	"grpc_server_msg_received_total",
	"grpc_server_msg_sent_total",
}

// scrape reads a node's /metrics.
func scrape(hc *http.Client, endpoint string) (map[string]*dto.MetricFamily, error) {
	resp, err := hc.Get(endpoint + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s/metrics: %s", endpoint, resp.Status)
	}
	p := expfmt.NewTextParser(pmodel.UTF8Validation)
	return p.TextToMetricFamilies(resp.Body)
}

// sumOf sums the values of a family's series whose labels include want.
func sumOf(mf *dto.MetricFamily, want map[string]string) (float64, int) {
	var v float64
	n := 0
metrics:
	for _, m := range mf.GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		for k, w := range want {
			if have[k] != w {
				continue metrics
			}
		}
		n++
		switch mf.GetType() {
		case dto.MetricType_COUNTER:
			v += m.GetCounter().GetValue()
		case dto.MetricType_GAUGE:
			v += m.GetGauge().GetValue()
		case dto.MetricType_HISTOGRAM:
			v += float64(m.GetHistogram().GetSampleCount())
		case dto.MetricType_UNTYPED:
			v += m.GetUntyped().GetValue()
		}
	}
	return v, n
}

// TestMetrics checks /metrics on every node of a cluster under a little
// traffic: etcd's names are there with their multi-range meaning, per-RPC
// metrics count requests by method and code, per-range series stay within
// --metrics-top-ranges, and peers' round trips are measured.
func TestMetrics(t *testing.T) {
	const topRanges = 2
	c := testcluster.Start(t, testcluster.Options{Nodes: 3, SplitKeys: splitKeys, Configure: func(cfg *server.Config) {
		cfg.MetricsTopRanges = topRanges
		cfg.PeerProbeInterval = 20 * time.Millisecond
	}})
	c.WaitReady(t)
	cli := c.Client(t)
	for _, k := range rangeKeys {
		put(t, cli, k+"/metrics", "v")
	}
	_, err := cli.Get(tctx(t), "", clientv3.WithFromKey())
	must(t, "get all", err)
	_, err = cli.Put(tctx(t), "", "v") // etcd's "key is not provided"
	if err == nil {
		t.Fatal("put of an empty key succeeded")
	}

	hc := &http.Client{Timeout: opTimeout}
	t.Cleanup(hc.CloseIdleConnections)
	var last error
	deadline := time.Now().Add(testcluster.ReadyTimeout)
	for {
		last = checkMetrics(hc, c.Endpoints(), topRanges)
		if last == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond) // polling /metrics until the deadline
	}
	if last != nil {
		t.Fatal(last)
	}
}

func checkMetrics(hc *http.Client, endpoints []string, topRanges int) error {
	var puts, badPuts, fanOuts float64
	for i, ep := range endpoints {
		mfs, err := scrape(hc, ep)
		if err != nil {
			return err
		}
		var missing []string
		for _, name := range etcdMetricNames {
			if mf, ok := mfs[name]; !ok || len(mf.GetMetric()) == 0 {
				missing = append(missing, name)
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("node %d: etcd metrics missing: %s", i+1, strings.Join(missing, ", "))
		}
		if v, _ := sumOf(mfs["etcd_server_has_leader"], nil); v != 1 {
			return fmt.Errorf("node %d: etcd_server_has_leader = %v", i+1, v)
		}
		// An alias has its source's value (both are from one gather).
		wal, _ := sumOf(mfs["etcd_disk_wal_fsync_duration_seconds"], nil)
		src, _ := sumOf(mfs["tessera_raft_log_fsync_duration_seconds"], nil)
		if wal != src || wal == 0 {
			return fmt.Errorf("node %d: etcd_disk_wal_fsync_duration_seconds count %v, tessera_raft_log_fsync_duration_seconds count %v", i+1, wal, src)
		}
		// Per-range series: exactly topRanges (every node holds four data ranges).
		for _, name := range []string{"tessera_range_load_requests_per_second", "tessera_range_is_leader", "tessera_range_resolved_revision"} {
			if _, n := sumOf(mfs[name], nil); n != topRanges {
				return fmt.Errorf("node %d: %d series of %s, want --metrics-top-ranges %d", i+1, n, name, topRanges)
			}
		}
		// Round trips to both peers.
		for j := range endpoints {
			if j == i {
				continue
			}
			if v, _ := sumOf(mfs["etcd_network_peer_round_trip_time_seconds"], map[string]string{"To": fmt.Sprint(j + 1)}); v == 0 {
				return fmt.Errorf("node %d: no round trip measured to node %d", i+1, j+1)
			}
		}
		v, _ := sumOf(mfs["grpc_server_handled_total"], map[string]string{"grpc_method": "Put", "grpc_code": "OK"})
		puts += v
		v, _ = sumOf(mfs["grpc_server_handled_total"], map[string]string{"grpc_method": "Put", "grpc_code": "InvalidArgument"})
		badPuts += v
		v, _ = sumOf(mfs["tessera_router_fanout_ranges"], nil)
		fanOuts += v
	}
	switch {
	case puts < float64(len(rangeKeys)):
		return fmt.Errorf("grpc_server_handled_total{Put,OK} = %v over the nodes, want >= %d", puts, len(rangeKeys))
	case badPuts < 1:
		return fmt.Errorf("grpc_server_handled_total{Put,InvalidArgument} = %v over the nodes, want >= 1", badPuts)
	case fanOuts < 1:
		return fmt.Errorf("no Range request counted in tessera_router_fanout_ranges")
	}
	return nil
}
