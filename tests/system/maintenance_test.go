package system_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestEtcdctlMaintenance runs etcdctl's maintenance commands against a
// 3-node cluster: endpoint hashkv --cluster (one hash on every node),
// defrag --cluster, move-leader (the meta group's leadership, as endpoint
// status reports it, moves to the target; not-leader and bad-transferee
// answers as etcd's), and periodic auto-compaction
// (--auto-compaction-retention 2s compacts history older than 2 s).
func TestEtcdctlMaintenance(t *testing.T) {
	e := &etcdctl{t: t, bin: etcdctlPath(t)}
	c := newCluster(t, clusterConfig{nodes: 3, splitKeys: []string{"m"}, prepare: func(n *node) {
		n.args = append(n.args, "--auto-compaction-mode", "periodic", "--auto-compaction-retention", "2s")
	}})
	e.endpoints = c.endpoints()
	cli := c.client()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	first, err := cli.Put(ctx, "apple", "1")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 200 {
		if _, err := cli.Put(ctx, fmt.Sprintf("%c/%d", 'a'+i%26, i), strings.Repeat("x", 1000)); err != nil {
			t.Fatal(err)
		}
	}

	// hashkv: one hash on every member.
	var hashes []struct {
		Endpoint string `json:"Endpoint"`
		HashKV   struct {
			Hash uint32 `json:"hash"`
		} `json:"HashKV"`
	}
	out := e.ok("endpoint", "hashkv", "--cluster", "-w", "json")
	if err := json.Unmarshal([]byte(out), &hashes); err != nil || len(hashes) != 3 {
		t.Fatalf("endpoint hashkv --cluster: %v: %s", err, out)
	}
	for _, h := range hashes {
		if h.HashKV.Hash != hashes[0].HashKV.Hash || h.HashKV.Hash == 0 {
			t.Errorf("endpoint hashkv --cluster: %s", out)
		}
	}
	t.Logf("endpoint hashkv --cluster:\n%s", e.ok("endpoint", "hashkv", "--cluster"))

	// defrag every member.
	out = e.ok("defrag", "--cluster")
	if n := strings.Count(out, "Finished defragmenting etcd member"); n != 3 {
		t.Errorf("defrag --cluster: %d members defragmented:\n%s", n, out)
	}
	// Its progress metrics: every step of the last run done, none running.
	for _, n := range c.nodes {
		m := scrapeMetrics(t, n)
		if m[`tessera_defrag_in_progress`] != 0 || m[`tessera_defrag_steps{state="total"}`] < 3 || m[`tessera_defrag_steps{state="done"}`] != m[`tessera_defrag_steps{state="total"}`] {
			t.Errorf("%s: defrag progress after defrag: in progress %v, steps %v of %v", n.name, m[`tessera_defrag_in_progress`], m[`tessera_defrag_steps{state="done"}`], m[`tessera_defrag_steps{state="total"}`])
		}
	}

	// move-leader: to a node that does not lead the meta group.
	leader := metaLeader(t, c)
	var target *node
	for _, n := range c.nodes {
		if n != leader {
			target = n
			break
		}
	}
	out = e.ok("move-leader", fmt.Sprintf("%x", target.id))
	if !strings.Contains(out, "Leadership transferred") {
		t.Errorf("move-leader: %s", out)
	}
	waitFor(t, opTimeout, "endpoint status shows the new leader", func() error {
		if l := metaLeader(t, c); l != target {
			return fmt.Errorf("meta leader %s, want %s", l.name, target.name)
		}
		return nil
	})
	// Sent to a node that does not lead: etcd's "not leader".
	mc := newClient(t, leader.clientURL)
	if _, err := mc.MoveLeader(ctx, target.id); !errors.Is(err, rpctypes.ErrNotLeader) {
		t.Errorf("move-leader on a follower: %v, want %v", err, rpctypes.ErrNotLeader)
	}
	if _, err := newClient(t, target.clientURL).MoveLeader(ctx, 99); !errors.Is(err, rpctypes.ErrBadLeaderTransferee) {
		t.Errorf("move-leader to a non-member: %v, want %v", err, rpctypes.ErrBadLeaderTransferee)
	}

	// Auto-compaction: the first put's revision is compacted within a few
	// seconds (retention 2 s, compactions every second).
	waitFor(t, 30*time.Second, "auto-compaction past the first put", func() error {
		_, err := cli.Get(ctx, "apple", clientv3.WithRev(first.Header.Revision))
		if errors.Is(err, rpctypes.ErrCompacted) {
			return nil
		}
		return fmt.Errorf("read at the first put's revision: %v", err)
	})
}

// scrapeMetrics reads a node's /metrics: series (name and labels as
// written) to value, for the series without a timestamp.
func scrapeMetrics(t *testing.T, n *node) map[string]float64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, n.clientURL+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s /metrics: %v", n.name, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, line := range strings.Split(string(body), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			out[line[:i]] = v
		}
	}
	return out
}
