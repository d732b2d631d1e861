package integration_test

import (
	"fmt"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tesseradb/tessera/cmd/tessera/server"
	"github.com/tesseradb/tessera/tests/testcluster"
)

// TestWatchIdleRangesResolveByClosing: a watch over the whole keyspace with
// writes in one range only. Every event arrives, and the idle ranges the
// watch covers catch up through closing rounds of the side channel, never a
// ReadIndex round of their own (shard.Replica.ResolveCounts; the node metric
// is tessera_shard_feed_resolves_total).
func TestWatchIdleRangesResolveByClosing(t *testing.T) {
	// A long interval: only on-demand rounds can keep up with the puts.
	c := testcluster.Start(t, testcluster.Options{Nodes: 3, SplitKeys: splitKeys, Configure: func(cfg *server.Config) {
		cfg.ClosedRevisionInterval = time.Hour
		cfg.FeedResolveByClosing = true
	}})
	c.WaitReady(t)
	cli := c.NodeClient(t, 0)
	ctx := tctx(t)
	wch := cli.Watch(ctx, "", clientv3.WithPrefix(), clientv3.WithCreatedNotify())
	if resp := <-wch; !resp.Created {
		t.Fatalf("first watch response %+v, want created", resp)
	}
	type counts struct{ readIndex, closing uint64 }
	snapshot := func() map[uint64]counts {
		out := map[uint64]counts{}
		for i := range c.Size() {
			for _, g := range dataRanges {
				ri, cl := c.Node(i).Replica(g).ResolveCounts()
				n := out[g]
				n.readIndex += ri
				n.closing += cl
				out[g] = n
			}
		}
		return out
	}
	before := snapshot()
	const n = 20
	for i := range n {
		rev := put(t, cli, fmt.Sprintf("c/%d", i), "v") // range 3 only
		for {
			resp, ok := <-wch
			if !ok {
				t.Fatalf("watch ended: %v", resp.Err())
			}
			if len(resp.Events) > 0 {
				if ev := resp.Events[0]; ev.Kv.ModRevision != rev || len(resp.Events) != 1 {
					t.Fatalf("put %d at %d: events %v", i, rev, resp.Events)
				}
				break
			}
		}
	}
	after := snapshot()
	var closing uint64
	for _, g := range dataRanges {
		if g == 3 {
			continue
		}
		if d := after[g].readIndex - before[g].readIndex; d != 0 {
			t.Errorf("idle range %d: %d feed resolves by ReadIndex during %d puts, want 0", g, d, n)
		}
		closing += after[g].closing - before[g].closing
	}
	if closing == 0 {
		t.Errorf("idle ranges: no feed resolve served by a closing round during %d puts", n)
	}
}
