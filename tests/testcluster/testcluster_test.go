package testcluster

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// TestCluster exercises the harness itself: start, ready, any-node access,
// leaders of every range, a leader transfer, a stop and a restart.
func TestCluster(t *testing.T) {
	c := Start(t, Options{Nodes: 3, SplitKeys: []string{"m"}})
	c.WaitReady(t)

	if got := c.Groups(); fmt.Sprint(got) != "[1 2 3]" {
		t.Fatalf("groups = %v, want [1 2 3] (meta, [\"\", m), [m, \"\"))", got)
	}
	if n := len(c.Endpoints()); n != 3 {
		t.Fatalf("%d endpoints, want 3", n)
	}
	for i := range 3 {
		if c.Node(i) == nil || c.Node(i).NodeID() != c.NodeID(i) {
			t.Fatalf("node %d: server %v, want node id %d", i, c.Node(i), c.NodeID(i))
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	put, err := c.NodeClient(t, 0).Put(ctx, "a", "1")
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.NodeClient(t, 2).Get(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Kvs) != 1 || string(got.Kvs[0].Value) != "1" || got.Kvs[0].ModRevision != put.Header.Revision {
		t.Fatalf("get a on node 2 = %v, want a=1 at %d", got.Kvs, put.Header.Revision)
	}

	for _, r := range c.Groups() {
		l := c.Leader(r)
		to := (l + 1) % 3
		c.TransferLeader(r, to)
		if l2 := c.Leader(r); l2 != to {
			t.Fatalf("range %d: leader %d after transfer to %d", r, l2, to)
		}
	}

	// A stopped node's ranges elect leaders elsewhere and serve.
	c.Stop(1)
	if c.Node(1) != nil {
		t.Fatal("node 1 still running after Stop")
	}
	c.WaitReady(t)
	for _, r := range c.Groups() {
		if l := c.Leader(r); l == 1 {
			t.Fatalf("range %d led by stopped node 1", r)
		}
	}
	if _, err := c.Client(t).Put(ctx, "z", "2"); err != nil {
		t.Fatalf("put with node 1 stopped: %v", err)
	}

	// Restart: same addresses, same data.
	c.Restart(1)
	c.WaitReady(t)
	got, err = c.NodeClient(t, 1).Get(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Kvs) != 1 || got.Kvs[0].ModRevision != put.Header.Revision {
		t.Fatalf("get a on restarted node 1 = %v, want mod revision %d", got.Kvs, put.Header.Revision)
	}
	// The restarted node can lead again.
	c.TransferLeader(2, 1)
}
