package system_test

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
)

// sigtermTimeout is how soon a node must exit after SIGTERM. etcd exits
// within a second or two; a clean shutdown must not wait on peers (they may
// be stopping too).
const sigtermTimeout = 10 * time.Second

// TestSigtermRestart: SIGTERM stops a node cleanly (exit status 0, promptly)
// and a restart with the same flags resumes serving with the data intact.
// First the meta group's leader (the TSO) is stopped while the two others
// keep taking writes, then restarted and caught up; then all three nodes are
// stopped at once and restarted.
func TestSigtermRestart(t *testing.T) {
	splitKeys := []string{"g", "n", "t"}
	c := newCluster(t, clusterConfig{nodes: 3, splitKeys: splitKeys})
	state := map[string]ack{}
	put := func(cli *clientv3.Client, prefix string, count int) {
		t.Helper()
		for i := range count {
			key, value := fmt.Sprintf("%c/%s/%03d", 'a'+i%26, prefix, i), fmt.Sprintf("%s-%d", prefix, i)
			var resp *clientv3.PutResponse
			// The first puts after a node stopped may find a range without
			// a leader yet: retry (the key is rewritten with the same value).
			waitFor(t, 30*time.Second, "put "+key, func() error {
				ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
				defer cancel()
				var err error
				resp, err = cli.Put(ctx, key, value)
				return err
			})
			state[key] = ack{key: key, value: value, rev: resp.Header.Revision}
		}
	}
	var keys []string
	for i := range 26 {
		keys = append(keys, fmt.Sprintf("%c/x", 'a'+i))
	}
	requireSpread(t, c.nodes[0], len(splitKeys)+1, keys)
	put(c.client(), "before", 100)

	// Stop the meta group's leader while a gRPC client holds an idle
	// connection to it (one that has sent no request yet, as any client
	// that just connected or reconnected): shutdown must not wait for it.
	victim := metaLeader(t, c)
	idle := idleConn(t, victim)
	code, took := victim.sigterm()(sigtermTimeout)
	t.Logf("%s (meta leader) exited with status %d %v after SIGTERM", victim.name, code, took.Round(time.Millisecond))
	if code != 0 {
		t.Errorf("%s: exit status %d after SIGTERM with an idle client connection open (-1: still running after %v), want 0", victim.name, code, sigtermTimeout)
	}
	idle.Close()
	var rest []string
	for _, n := range c.nodes {
		if n != victim {
			rest = append(rest, n.clientURL)
		}
	}
	put(newClient(t, rest...), "while-down", 100)

	victim.start()
	if err := victim.awaitHealthy(startTimeout); err != nil {
		t.Fatal(err)
	}
	checkNodes(t, c, state)

	// Compact, so that the compaction too must survive the restart.
	all := c.client()
	put(all, "compacted", 1)
	old := state["a/compacted/000"]
	put(all, "compacted", 1)
	compactRev := state["a/compacted/000"].rev
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	_, err := all.Compact(ctx, compactRev)
	cancel()
	if err != nil {
		t.Fatalf("compact at %d: %v", compactRev, err)
	}
	checkCompacted(t, c, old, state["a/compacted/000"])

	// Stop all three at once.
	var waits []func(time.Duration) (int, time.Duration)
	for _, n := range c.nodes {
		waits = append(waits, n.sigterm())
	}
	for i, wait := range waits {
		code, took := wait(sigtermTimeout)
		t.Logf("%s exited with status %d %v after SIGTERM to all", c.nodes[i].name, code, took.Round(time.Millisecond))
		if code != 0 {
			t.Errorf("%s: exit status %d after SIGTERM to all nodes (-1: still running after %v), want 0", c.nodes[i].name, code, sigtermTimeout)
		}
	}
	c.startAll()
	checkNodes(t, c, state)
	checkCompacted(t, c, old, state["a/compacted/000"])
	put(c.client(), "after", 50)
	checkNodes(t, c, state)
}

// metaLeader returns the node that leads the meta group.
func metaLeader(t *testing.T, c *cluster) *node {
	t.Helper()
	var leader *node
	waitFor(t, 30*time.Second, "meta group leader", func() error {
		for _, n := range c.nodes {
			resp, err := n.ranges()
			if err != nil {
				return err
			}
			for _, r := range resp.GetRanges() {
				if r.GetIsMeta() && r.GetLeaderNode() == n.id {
					leader = n
					return nil
				}
			}
		}
		return fmt.Errorf("no node leads the meta group")
	})
	return leader
}

// checkNodes reads state through every node, linearizable and serializable
// (waiting for a lagging replica to catch up).
func checkNodes(t *testing.T, c *cluster, state map[string]ack) {
	t.Helper()
	var wants []want
	for _, a := range state {
		wants = append(wants, want{key: a.key, value: a.value, modRev: a.rev})
	}
	for _, n := range c.nodes {
		cli := n.client()
		for _, serializable := range []bool{false, true} {
			wrong, _ := checkReads(cli, wants, serializable, 30*time.Second)
			for _, err := range wrong {
				t.Errorf("%s (serializable %v): %v", n.name, serializable, err)
			}
			waitFor(t, 30*time.Second, "scan of "+n.name, func() error {
				mismatch, err := checkScan(cli, state, nil, serializable)
				if mismatch != nil && !serializable {
					t.Errorf("%s: linearizable scan: %v", n.name, mismatch)
					return nil
				}
				return errorsJoin(mismatch, err)
			})
		}
	}
	if t.Failed() {
		t.FailNow()
	}
}

// idleConn opens a gRPC connection to the node's client port and waits
// until it is ready (HTTP/2 handshake done) without sending any request.
func idleConn(t *testing.T, n *node) *grpc.ClientConn {
	t.Helper()
	u, err := url.Parse(n.clientURL)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(u.Host, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.Connect()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	for st := conn.GetState(); st != connectivity.Ready; st = conn.GetState() {
		if !conn.WaitForStateChange(ctx, st) {
			t.Fatalf("idle connection to %s: still %v after %v", n.name, st, opTimeout)
		}
	}
	return conn
}

// checkCompacted checks through every node, linearizable and serializable,
// that the revision of old is compacted and that cur is readable at its
// revision, the compaction revision.
func checkCompacted(t *testing.T, c *cluster, old, cur ack) {
	t.Helper()
	for _, n := range c.nodes {
		cli := n.client()
		for _, serializable := range []bool{false, true} {
			waitFor(t, 30*time.Second, fmt.Sprintf("compaction seen by %s (serializable %v)", n.name, serializable), func() error {
				ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
				defer cancel()
				opts := []clientv3.OpOption{clientv3.WithRev(old.rev)}
				if serializable {
					opts = append(opts, clientv3.WithSerializable())
				}
				resp, err := cli.Get(ctx, old.key, opts...)
				if !errors.Is(err, rpctypes.ErrCompacted) {
					if err == nil {
						err = fmt.Errorf("%d kvs", len(resp.Kvs))
					}
					if !serializable {
						t.Errorf("%s: linearizable read at compacted revision %d: %v, want %v", n.name, old.rev, err, rpctypes.ErrCompacted)
						return nil
					}
					return fmt.Errorf("read at compacted revision %d: %v, want %v", old.rev, err, rpctypes.ErrCompacted)
				}
				mismatch, err := get(cli, want{key: cur.key, value: cur.value, modRev: cur.rev, atRev: cur.rev}, serializable)
				if mismatch != nil && !serializable {
					t.Errorf("%s: %v", n.name, mismatch)
					return nil
				}
				return errorsJoin(mismatch, err)
			})
		}
	}
}
