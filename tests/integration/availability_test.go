package integration_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestMinorityDown stops one node (the one leading the TSO and every data
// range): the other two keep serving reads and writes on every range, to a
// client of all endpoints and to clients of either node; once restarted, the
// node serves what was written while it was down (etcd's TestKVGetRetry,
// TestKVPutFailGetRetry, TestV3PutRestart).
func TestMinorityDown(t *testing.T) {
	c, cli := newClusterClient(t)
	m := &model{}
	for _, p := range rangeKeys {
		m.put(p, "before", put(t, cli, p, "before"))
	}
	for _, g := range append([]uint64{metaRange}, dataRanges...) {
		c.TransferLeader(g, 2)
	}
	c.Stop(2)
	for i, wc := range []*clientv3.Client{cli, c.NodeClient(t, 0), c.NodeClient(t, 1)} {
		for _, p := range rangeKeys {
			k := fmt.Sprintf("%s/down/%d", p, i)
			m.put(k, "while down", put(t, wc, k, "while down"))
		}
		g, err := wc.Get(tctx(t), "", clientv3.WithPrefix())
		must(t, "get with a node down", err)
		wantKVs(t, fmt.Sprintf("client %d with node 2 down", i), g.Kvs, m.at(m.writes[len(m.writes)-1].rev, "", ""))
	}
	for _, g := range append([]uint64{metaRange}, dataRanges...) {
		if l := c.Leader(g); l == 2 {
			t.Errorf("range %d led by the stopped node", g)
		}
	}
	c.Restart(2)
	c.WaitReady(t)
	last := m.writes[len(m.writes)-1].rev
	n2 := c.NodeClient(t, 2)
	g, err := n2.Get(tctx(t), "", clientv3.WithPrefix())
	must(t, "get on the restarted node", err)
	wantKVs(t, "linearizable read on the restarted node", g.Kvs, m.at(last, "", ""))
	deadline := time.Now().Add(opTimeout)
	for {
		g, err := n2.Get(tctx(t), "", clientv3.WithPrefix(), clientv3.WithSerializable())
		must(t, "serializable get on the restarted node", err)
		if len(g.Kvs) == len(m.at(last, "", "")) {
			wantKVs(t, "serializable read on the restarted node", g.Kvs, m.at(last, "", ""))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the restarted node never caught up: %s", fmtKVs(g.Kvs))
		}
		time.Sleep(10 * time.Millisecond)
	}
	r := put(t, n2, "g/after", "x")
	if r <= last {
		t.Errorf("write through the restarted node at %d <= %d", r, last)
	}
}

// TestMajorityDown stops two of three nodes: the survivor has no leader for
// any range, so (etcd's TestGRPCRequireLeader, TestKVPutWithRequireLeader) a
// put or a get with the require-leader metadata fails with ErrNoLeader once
// an election timeout has passed, and a put without it does not succeed.
// Once the nodes are back, writes work again and nothing was written.
func TestMajorityDown(t *testing.T) {
	c, cli := newClusterClient(t)
	put(t, cli, "c", "before")
	n0 := c.NodeClient(t, 0)
	c.Stop(1)
	c.Stop(2)

	// Poll with reads: ErrNoLeader needs the survivor to notice it lost its
	// quorum (CheckQuorum: an election timeout). A put is not used to poll:
	// one that times out before then is ambiguous and may still be committed
	// once the other nodes return.
	deadline := time.Now().Add(opTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		_, err := n0.Get(clientv3.WithRequireLeader(ctx), "c")
		cancel()
		if errIs(err, rpctypes.ErrGRPCNoLeader) {
			break
		}
		// err == nil: served before the leader stepped down; try again.
		if time.Now().After(deadline) {
			t.Fatalf("get with require-leader and no quorum: err = %v, want %v", err, rpctypes.ErrGRPCNoLeader)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	_, err := n0.Put(clientv3.WithRequireLeader(ctx), "c", "no leader")
	cancel()
	wantErr(t, "put with require-leader and no quorum", err, rpctypes.ErrGRPCNoLeader)
	ctx, cancel = context.WithTimeout(context.Background(), 3*time.Second)
	_, err = n0.Get(clientv3.WithRequireLeader(ctx), "c")
	cancel()
	wantErr(t, "linearizable get with require-leader and no quorum", err, rpctypes.ErrGRPCNoLeader)
	ctx, cancel = context.WithTimeout(context.Background(), 2*time.Second)
	_, err = n0.Put(ctx, "e", "no quorum")
	cancel()
	if err == nil {
		t.Error("put without require-leader and no quorum succeeded")
	}

	c.Restart(1)
	c.Restart(2)
	c.WaitReady(t)
	put(t, n0, "g", "after")
	g, err := cli.Get(tctx(t), "", clientv3.WithPrefix())
	must(t, "get", err)
	wantKeys(t, "after the majority came back", g.Kvs, "c", "g")
	if len(g.Kvs) > 0 && string(g.Kvs[0].Value) != "before" {
		t.Errorf("c = %q, want before", g.Kvs[0].Value)
	}
}
