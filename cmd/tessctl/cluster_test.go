package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tesseradb/tessera/cmd/tessera/server"
	"github.com/tesseradb/tessera/tests/testcluster"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// testCluster is the in-process test cluster (tests/testcluster), as
// `tessera dev` runs one, with tessctl pointed at it.
type testCluster struct {
	*testcluster.Cluster
	endpoints []string
}

func startCluster(t *testing.T, n int, split []string) *testCluster {
	t.Helper()
	return startClusterWith(t, n, split, "http", nil)
}

// startClusterWith starts a cluster whose URLs have the given scheme;
// configure, if set, adjusts each node's config (its TLS) before it starts.
func startClusterWith(t *testing.T, n int, split []string, scheme string, configure func(*server.Config)) *testCluster {
	t.Helper()
	c := testcluster.Start(t, testcluster.Options{Nodes: n, SplitKeys: split, Scheme: scheme, Configure: configure})
	return &testCluster{Cluster: c, endpoints: c.Endpoints()}
}

// tessctl runs tessctl against the cluster.
func (tc *testCluster) tessctl(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var o, e bytes.Buffer
	args = append([]string{"--endpoints", strings.Join(tc.endpoints, ",")}, args...)
	code = run(t.Context(), args, &o, &e)
	return o.String(), e.String(), code
}

// eventually calls check until it returns nil, failing t after timeout.
func eventually(t *testing.T, timeout time.Duration, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %v", timeout, err)
		}
		<-time.After(50 * time.Millisecond)
	}
}

func decodeRanges(t *testing.T, out string) []rangeInfo {
	t.Helper()
	var v struct {
		Ranges []rangeInfo `json:"ranges"`
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("ranges -w json: %v in %q", err, out)
	}
	return v.Ranges
}

func decodeNodes(t *testing.T, out string) []nodeStatus {
	t.Helper()
	var v struct {
		Nodes []nodeStatus `json:"nodes"`
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("status -w json: %v in %q", err, out)
	}
	return v.Nodes
}

// TestAgainstCluster runs tessctl ranges and status against a 3-node
// cluster cut into 4 ranges, then with one node stopped.
func TestAgainstCluster(t *testing.T) {
	tc := startCluster(t, 3, []string{"g", "n", "t"})
	cli, err := clientv3.New(clientv3.Config{Endpoints: tc.endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	// One write per range; each range's leader has applied it, so its
	// resolved revision is at least the write's.
	putRev := map[string]int64{}
	for _, k := range []string{"apple", "hello", "orange", "zebra"} {
		eventually(t, 30*time.Second, func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			resp, err := cli.Put(ctx, k, "v")
			if err == nil {
				putRev[k] = resp.Header.Revision
			}
			return err
		})
	}

	var ranges []rangeInfo
	eventually(t, 30*time.Second, func() error {
		out, stderr, code := tc.tessctl(t, "ranges", "-w", "json")
		if code != 0 {
			return fmt.Errorf("ranges: exit status %d: %s", code, stderr)
		}
		ranges = decodeRanges(t, out)
		for _, r := range ranges {
			if r.Leader == 0 || r.AppliedIndex == nil || len(r.Reports) != 3 {
				return fmt.Errorf("range %d: leader %d, %d replicas reported", r.ID, r.Leader, len(r.Reports))
			}
		}
		return nil
	})
	wantSpans := []string{"", `["", "g")`, `["g", "n")`, `["n", "t")`, `["t", "")`}
	if len(ranges) != len(wantSpans) {
		t.Fatalf("%d ranges, want %d: %+v", len(ranges), len(wantSpans), ranges)
	}
	for i, r := range ranges {
		if r.Span != wantSpans[i] || r.Meta != (i == 0) || r.ID != uint64(i+1) {
			t.Errorf("range #%d: id %d meta %v span %s; want id %d span %s", i, r.ID, r.Meta, r.Span, i+1, wantSpans[i])
		}
		// InitialLayout gives replica ids 1..3 in round-robin order:
		// range i's replica 1 is on node (i-2) mod 3 + 1.
		want := []replicaRef{{1, 1, "voter"}, {2, 2, "voter"}, {3, 3, "voter"}}
		if !r.Meta {
			for j := range want {
				want[j].Replica = uint64((j-int(r.ID)+2+3)%3 + 1)
			}
		}
		if !slices.Equal(r.Replicas, want) || !slices.Contains(r.nodes(), r.Leader) {
			t.Errorf("range %d: replicas %v, want %v; leader %d", r.ID, r.Replicas, want, r.Leader)
		}
		if *r.AppliedIndex == 0 {
			t.Errorf("range %d: applied index 0", r.ID)
		}
		if i > 0 {
			key := []string{"apple", "hello", "orange", "zebra"}[i-1]
			if r.ResolvedRevision == nil || *r.ResolvedRevision < putRev[key] {
				t.Errorf("range %d: resolved revision %v, below the revision %d of its write %q", r.ID, r.ResolvedRevision, putRev[key], key)
			}
		} else if r.ResolvedRevision != nil {
			t.Errorf("meta group: resolved revision %d", *r.ResolvedRevision)
		}
	}

	out, stderr, code := tc.tessctl(t, "ranges")
	table, legend, _ := strings.Cut(out, "\n\n")
	lines := strings.Split(table, "\n")
	if code != 0 || stderr != "" || len(lines) != 6 || !strings.HasPrefix(legend, "REPLICAS: ") {
		t.Fatalf("ranges: exit status %d, stderr %q, stdout:\n%s", code, stderr, out)
	}
	col := strings.Index(lines[0], "REPLICAS")
	for i, l := range lines[1:] {
		if !strings.HasPrefix(l[col:], joinReplicas(ranges[i].Replicas)+" ") {
			t.Errorf("ranges table not aligned or replicas not node/replica id:\n%s", out)
		}
	}
	if !strings.HasPrefix(lines[1], "meta ") || !strings.HasPrefix(lines[2], `2      ["", "g")`) {
		t.Errorf("ranges table:\n%s", out)
	}

	out, stderr, code = tc.tessctl(t, "status", "-w", "json")
	if code != 0 || stderr != "" {
		t.Fatalf("status: exit status %d, stderr %q, stdout:\n%s", code, stderr, out)
	}
	nodes := decodeNodes(t, out)
	leaders, metaLeaders := 0, 0
	for i, n := range nodes {
		if n.ID != uint64(i+1) || n.Name != fmt.Sprintf("node%d", i+1) || n.ClientURL != tc.endpoints[i] || !n.Healthy || n.Error != "" ||
			n.Replicas == nil || *n.Replicas != 5 || n.Leaders == nil || !n.HasMeta {
			t.Errorf("node %d: %s", i+1, mustJSON(t, n))
			continue
		}
		leaders += *n.Leaders
		if n.MetaLeader {
			metaLeaders++
		}
	}
	if len(nodes) != 3 || leaders != 5 || metaLeaders != 1 {
		t.Errorf("status: %d nodes leading %d ranges, %d meta leaders; want 3, 5, 1:\n%s", len(nodes), leaders, metaLeaders, out)
	}
	out, _, code = tc.tessctl(t, "status")
	if lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n"); code != 0 || len(lines) != 4 || !strings.HasPrefix(lines[0], "ID  NAME   CLIENT URL") {
		t.Errorf("status table: exit status %d:\n%s", code, out)
	}

	// Stop node 3: status reports it and fails; ranges lists every range,
	// led by the others once they have elected leaders.
	tc.Stop(2)
	out, stderr, code = tc.tessctl(t, "status", "-w", "json")
	nodes = decodeNodes(t, out)
	if code != 1 || len(nodes) != 3 || nodes[2].Healthy || nodes[2].Replicas != nil || !nodes[0].Healthy || !nodes[1].Healthy {
		t.Errorf("status with node3 stopped: exit status %d, stderr %q:\n%s", code, stderr, out)
	}
	eventually(t, 30*time.Second, func() error {
		out, stderr, code := tc.tessctl(t, "ranges", "-w", "json")
		if code != 0 || !strings.Contains(stderr, "warning: member 3 (node3)") {
			return fmt.Errorf("ranges: exit status %d, stderr %q", code, stderr)
		}
		ranges := decodeRanges(t, out)
		if len(ranges) != 5 {
			return fmt.Errorf("%d ranges", len(ranges))
		}
		for _, r := range ranges {
			if r.Leader == 0 || r.Leader == 3 || r.AppliedIndex == nil || len(r.Reports) != 2 {
				return fmt.Errorf("range %d: leader %d, %d replicas reported", r.ID, r.Leader, len(r.Reports))
			}
		}
		return nil
	})
}
