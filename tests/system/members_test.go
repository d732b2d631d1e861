package system_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/tesseradb/tessera/placement"
	"github.com/tesseradb/tessera/proto/tesserapb"
	"github.com/tesseradb/tessera/tests/proccluster"
	"github.com/tesseradb/tessera/tests/testcerts"
)

// membersArgs are the membership flags of a test node: short liveness
// intervals (newCluster gives every node a free gossip address; a joining
// node takes one here, TCP and UDP).
func membersArgs(t *testing.T, deadTimeout string, gossip bool) []string {
	t.Helper()
	args := []string{"--dead-node-timeout", deadTimeout, "--node-heartbeat-interval", "200ms"}
	if gossip {
		addr, err := placement.FreeGossipAddr()
		if err != nil {
			t.Fatal(err)
		}
		args = append(args, "--gossip-addr", addr)
	}
	return args
}

// tessctlNodes runs tessctl nodes -w json.
type tessctlNode struct {
	ID         uint64   `json:"id"`
	Name       string   `json:"name"`
	PeerURLs   []string `json:"peer_urls"`
	ClientURLs []string `json:"client_urls"`
	GossipAddr string   `json:"gossip_addr"`
	State      string   `json:"state"`
	Liveness   string   `json:"liveness"`
	Gossip     string   `json:"gossip"`
	Replicas   int      `json:"replicas"`
	Leaders    int      `json:"leaders"`
	Bytes      uint64   `json:"bytes"`
}

func tessctlNodes(t *testing.T, endpoints []string) (map[string]tessctlNode, error) {
	t.Helper()
	out, err := tessctl(t, "--endpoints", strings.Join(endpoints, ","), "nodes", "-w", "json")
	if err != nil {
		return nil, err
	}
	var v struct {
		Nodes []tessctlNode `json:"nodes"`
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		return nil, fmt.Errorf("tessctl nodes -w json: %w: %s", err, out)
	}
	m := map[string]tessctlNode{}
	for _, n := range v.Nodes {
		m[n.Name] = n
	}
	return m, nil
}

// TestMemberJoinAndDeadNode: a 4th node joins a running 3-node cluster the
// etcd way (etcdctl member add, then --initial-cluster-state existing),
// shows in etcdctl member list and as live in tessctl nodes with no
// replicas; removing a node that holds replicas is refused with the
// reason; a SIGKILLed node is dead in tessctl nodes once --dead-node-timeout
// passed.
func TestMemberJoinAndDeadNode(t *testing.T) {
	bin := etcdctlPath(t)
	const dead = 4 * time.Second
	c := newCluster(t, clusterConfig{nodes: 3, splitKeys: []string{"m"}, prepare: func(n *node) {
		n.args = append(n.args, membersArgs(t, dead.String(), false)...)
	}})
	e := &etcdctl{t: t, bin: bin, endpoints: c.endpoints()}

	joiner, err := c.pc.NewJoiningNode("node4", append([]string{"--log-level", "warn"}, membersArgs(t, dead.String(), true)...)...)
	if err != nil {
		t.Fatal(err)
	}
	out := e.ok("member", "add", "node4", "--peer-urls="+joiner.AdvertisePeerURL)
	if !strings.Contains(out, "Member                4 added to cluster") || !strings.Contains(out, `ETCD_INITIAL_CLUSTER_STATE="existing"`) ||
		!strings.Contains(out, "node4="+joiner.AdvertisePeerURL) {
		t.Fatalf("etcdctl member add:\n%s", out)
	}
	// Unstarted: listed without a name (etcdctl shows "unstarted").
	if out := e.ok("member", "list"); !strings.Contains(out, "4, unstarted, , "+joiner.AdvertisePeerURL) {
		t.Errorf("member list before the join:\n%s", out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*startTimeout)
	defer cancel()
	if err := c.pc.StartJoining(ctx, joiner); err != nil {
		t.Fatalf("start the joining node: %v", err)
	}
	waitFor(t, startTimeout, "node4 in member list with its name and client URL", func() error {
		if out := e.ok("member", "list"); !strings.Contains(out, "4, started, node4, "+joiner.AdvertisePeerURL+", "+joiner.ClientURL+", false") {
			return fmt.Errorf("member list:\n%s", out)
		}
		return nil
	})
	// The new node serves clients (its router forwards to range leaders).
	e4 := &etcdctl{t: t, bin: bin, endpoints: []string{joiner.ClientURL}}
	e4.ok("put", "joined", "yes")
	e.expect("joined\nyes\n", "get", "joined")

	endpoints := append(c.endpoints(), joiner.ClientURL)
	waitFor(t, startTimeout, "4 live nodes in tessctl nodes", func() error {
		nodes, err := tessctlNodes(t, endpoints)
		if err != nil {
			return err
		}
		for _, name := range []string{"node1", "node2", "node3", "node4"} {
			if n, ok := nodes[name]; !ok || n.Liveness != "live" || n.Gossip != "alive" {
				return fmt.Errorf("%s: %+v", name, nodes[name])
			}
		}
		if n := nodes["node4"]; n.Replicas != 0 || n.ID != 4 {
			return fmt.Errorf("node4 has id %d and %d replicas, want 4 and none", n.ID, n.Replicas)
		}
		// The meta group and two data ranges, on each of the first three
		// nodes; each range's leader reported by its heartbeat.
		leaders := 0
		for _, name := range []string{"node1", "node2", "node3"} {
			if n := nodes[name]; n.Replicas != 3 {
				return fmt.Errorf("%s: %+v, want 3 replicas", name, n)
			}
			leaders += nodes[name].Leaders
		}
		if leaders != 3 {
			return fmt.Errorf("%d leaders reported, want 3", leaders)
		}
		return nil
	})
	table, _ := tessctl(t, "--endpoints", strings.Join(endpoints, ","), "nodes")
	t.Logf("tessctl nodes:\n%s", table)

	r := e.run("", "member", "remove", "2")
	if r.code == 0 || !strings.Contains(r.stderr, "node 2 still holds replicas of ranges") || !strings.Contains(r.stderr, "drain it first") {
		t.Errorf("member remove of a node with replicas: %v", r)
	}
	e.expectError("etcdserver: member not found", "member", "remove", "63")

	c.nodes[2].kill()
	killed := time.Now()
	live := append(c.endpoints()[:2], joiner.ClientURL)
	waitFor(t, dead+startTimeout, "node3 dead in tessctl nodes", func() error {
		nodes, err := tessctlNodes(t, live)
		if err != nil {
			return err
		}
		if n := nodes["node3"]; n.Liveness != "dead" {
			return fmt.Errorf("node3 is %s (gossip %s)", n.Liveness, n.Gossip)
		}
		return nil
	})
	took := time.Since(killed)
	// Dead counts from the last heartbeat, up to one interval (200 ms)
	// before the kill.
	if took < dead-200*time.Millisecond {
		t.Errorf("node3 dead %v after SIGKILL, before --dead-node-timeout %v", took, dead)
	}
	t.Logf("node3 dead %v after SIGKILL (--dead-node-timeout %v)", took.Round(100*time.Millisecond), dead)
	nodes, err := tessctlNodes(t, live)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"node1", "node2", "node4"} {
		if nodes[name].Liveness != "live" {
			t.Errorf("%s is %s after node3 died", name, nodes[name].Liveness)
		}
	}

	// node4 holds no replica: it can be removed, and is gone from both
	// lists.
	e2 := &etcdctl{t: t, bin: bin, endpoints: live}
	if out := e2.ok("member", "remove", "4"); !strings.Contains(out, "Member                4 removed from cluster") {
		t.Errorf("member remove 4: %q", out)
	}
	if out := e2.ok("member", "list"); strings.Contains(out, "node4") {
		t.Errorf("member list after the remove:\n%s", out)
	}
	if nodes, err := tessctlNodes(t, live[:2]); err != nil || len(nodes) != 3 {
		t.Errorf("tessctl nodes after the remove: %v %v", nodes, err)
	}
}

// TestJoinRefused: a node started with --initial-cluster-state existing
// whose peer URL no member has (never added) exits with the reason and
// writes nothing to its data dir.
func TestJoinRefused(t *testing.T) {
	c := newCluster(t, clusterConfig{nodes: 3})
	joiner, err := c.pc.NewJoiningNode("stranger")
	if err != nil {
		t.Fatal(err)
	}
	if err := joiner.Start(); err != nil {
		t.Fatal(err)
	}
	p := joiner.Process()
	if err := p.Wait(startTimeout); err != nil && p.Running() {
		t.Fatalf("the stranger did not exit: %v", err)
	}
	log := proccluster.Tail(joiner.LogPath, 4096)
	if p.ExitCode() == 0 || !strings.Contains(log, "the cluster has no member with peer URL "+joiner.AdvertisePeerURL) ||
		!strings.Contains(log, "etcdctl member add stranger") {
		t.Fatalf("exit code %d, log:\n%s", p.ExitCode(), log)
	}
	if _, err := os.Stat(joiner.DataDir + "/engine/MANIFEST-000001"); err == nil {
		// The engine directory may exist (opened before the join), but no
		// bootstrap record was written: a retry after member add succeeds.
		t.Logf("engine directory created: %s", joiner.DataDir)
	}
}

// TestTLSJoin: a node joins a cluster with client and peer mutual TLS,
// with certificates of its own (CN: its name): it fetches the node table
// over peer TLS, serves clients, is live in tessctl nodes, and the other
// nodes tie its certificate to its new id for raft streams (a stream from
// it claiming another node's id is refused).
func TestTLSJoin(t *testing.T) {
	tc := newTLSCluster(t, 3, []string{"m"})
	pc, pk := tc.peerCA.Issue("node4-peer", "node4")
	cc, ck := tc.clientCA.Issue("node4-client", "node4")
	joiner, err := tc.pc.NewJoiningNode("node4", append(membersArgs(t, "5m", true), "--log-level", "warn",
		"--cert-file", cc, "--key-file", ck, "--trusted-ca-file", tc.clientCA.CAPath, "--client-cert-auth",
		"--peer-cert-file", pc, "--peer-key-file", pk, "--peer-trusted-ca-file", tc.peerCA.CAPath, "--peer-client-cert-auth")...)
	if err != nil {
		t.Fatal(err)
	}
	cli := tc.nodes[0].client()
	ctx, cancel := context.WithTimeout(context.Background(), 2*startTimeout)
	defer cancel()
	if _, err := cli.MemberAdd(ctx, []string{joiner.AdvertisePeerURL}); err != nil {
		t.Fatal(err)
	}
	if err := tc.pc.StartJoining(ctx, joiner); err != nil {
		t.Fatalf("start the joining node: %v", err)
	}
	n4 := newTLSClient(t, tc.nodes[0].clientTLS, joiner.ClientURL)
	if _, err := n4.Put(ctx, "joined", "over-tls"); err != nil {
		t.Fatalf("put through node4: %v", err)
	}
	if r, err := cli.Get(ctx, "joined"); err != nil || len(r.Kvs) != 1 || string(r.Kvs[0].Value) != "over-tls" {
		t.Fatalf("get through node1: %v %v", r, err)
	}
	// tessctl takes one TLS configuration for client and peer ports, and
	// this cluster has a CA for each: ask the placement driver directly,
	// over peer TLS as an operator, what tessctl nodes asks.
	u, err := url.Parse(tc.nodes[0].peerURL)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(u.Host, grpc.WithTransportCredentials(credentials.NewTLS(tc.nodes[0].peerTLS)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	waitFor(t, startTimeout, "node4 live at the placement driver", func() error {
		resp, err := tesserapb.NewMembershipClient(conn).Nodes(ctx, &tesserapb.NodesRequest{})
		if err != nil {
			return err
		}
		live := 0
		for _, n := range resp.GetNodes() {
			if n.GetLiveness() == "live" {
				live++
			}
		}
		if len(resp.GetNodes()) != 4 || live != 4 || resp.GetNodes()[3].GetNode().GetName() != "node4" {
			return fmt.Errorf("nodes: %v", resp.GetNodes())
		}
		return nil
	})
	node4 := testcerts.ClientConfig(t, tc.peerCA, pc, pk)
	waitFor(t, startTimeout, "node1 accepts node4's raft stream as node 4", func() error {
		return raftStreamAs(u.Host, 1, node4, 4)
	})
	if err := raftStreamAs(u.Host, 1, node4, 2); status.Code(err) != codes.PermissionDenied {
		t.Errorf("node4's certificate claiming node 2: %v; want PermissionDenied", err)
	}
}
