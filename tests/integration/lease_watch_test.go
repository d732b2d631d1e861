package integration_test

import (
	"context"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestLeaseRevokeWatchFromReadRevision is what clientv3/concurrency's
// waitDelete does: read a leased key, watch it from the read's header
// revision, and see the revocation (from another node) delete it.
func TestLeaseRevokeWatchFromReadRevision(t *testing.T) {
	c, _ := newClusterClient(t)
	for round := range 10 {
		cli := c.NodeClient(t, round%3)
		g, err := cli.Grant(tctx(t), 60)
		must(t, "grant", err)
		_, err = cli.Put(tctx(t), "e/lk", "v", clientv3.WithLease(g.ID))
		must(t, "put", err)
		put(t, cli, "a/other", "x")
		resp, err := cli.Get(tctx(t), "e/lk")
		must(t, "get", err)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		wch := cli.Watch(ctx, "e/lk", clientv3.WithRev(resp.Header.Revision))
		_, err = c.NodeClient(t, (round+1)%3).Revoke(tctx(t), g.ID)
		must(t, "revoke", err)
		got := false
		for wr := range wch {
			for _, ev := range wr.Events {
				if ev.Type == mvccpb.DELETE {
					got = true
				}
			}
			if got {
				break
			}
		}
		cancel()
		if !got {
			t.Fatalf("round %d: no delete event (hdr rev %d, kv %v)", round, resp.Header.Revision, resp.Kvs)
		}
	}
}
