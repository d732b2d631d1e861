package integration_test

import (
	"fmt"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tesseradb/tessera/cmd/tessera/server"
	"github.com/tesseradb/tessera/engine"
	"github.com/tesseradb/tessera/tests/testcluster"
)

// TestSerializableReadsSeeWritesAcknowledgedThroughTheNode: writes go through
// node A to ranges led by B and C, and serializable reads go through A, whose
// replicas are followers that may not have applied the writes yet. Every read
// must show every write A acknowledged before it, at a header revision at or
// above it, including a read at an explicit revision that is a write of
// another range, and a read over several ranges.
func TestSerializableReadsSeeWritesAcknowledgedThroughTheNode(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Nodes: 3, SplitKeys: splitKeys, Configure: func(cfg *server.Config) {
		cfg.ClosedRevisionInterval = 50 * time.Millisecond
	}})
	c.WaitReady(t)
	// A (node 0) leads no data range: B (1) leads [b, d), C (2) the others.
	for _, g := range dataRanges {
		to := 2
		if g == 3 {
			to = 1
		}
		c.TransferLeader(g, to)
	}
	cli := c.NodeClient(t, 0)

	type write struct {
		key, val string
		rev      int64
	}
	var hist []write
	latest := map[string]write{}
	keys := []string{"c", "e"} // ranges 3 (led by B) and 4 (led by C)
	for i := range 30 {
		ctx := tctx(t) // one step's bound
		w := write{key: keys[i%2], val: fmt.Sprint(i)}
		pr, err := cli.Put(ctx, w.key, w.val)
		must(t, fmt.Sprintf("step %d: put", i), err)
		w.rev = pr.Header.Revision
		hist = append(hist, w)
		latest[w.key] = w

		for _, k := range keys {
			gr, err := cli.Get(ctx, k, clientv3.WithSerializable())
			must(t, "serializable get", err)
			if gr.Header.Revision < w.rev {
				t.Fatalf("step %d: serializable get %q at header %d, below the write %d acknowledged before it", i, k, gr.Header.Revision, w.rev)
			}
			if want, ok := latest[k]; ok && (len(gr.Kvs) != 1 || string(gr.Kvs[0].Value) != want.val || gr.Kvs[0].ModRevision != want.rev) {
				t.Fatalf("step %d: serializable get %q = %v, want %q at %d", i, k, gr.Kvs, want.val, want.rev)
			}
		}
		// Both ranges at once: one consistent state.
		gr, err := cli.Get(ctx, "b", clientv3.WithRange("f"), clientv3.WithSerializable())
		must(t, "serializable range", err)
		if gr.Header.Revision < w.rev || len(gr.Kvs) != len(latest) {
			t.Fatalf("step %d: serializable range at %d: %v, want %d keys at or above %d", i, gr.Header.Revision, gr.Kvs, len(latest), w.rev)
		}
		for _, kv := range gr.Kvs {
			if want := latest[string(kv.Key)]; string(kv.Value) != want.val {
				t.Fatalf("step %d: serializable range: %q = %q, want %q", i, kv.Key, kv.Value, want.val)
			}
		}
		// The other range's key at this write's revision (a write of
		// another range): the other key's last value at or below it.
		other := keys[(i+1)%2]
		var want *write
		for j := range hist {
			if hist[j].key == other && hist[j].rev <= w.rev {
				want = &hist[j]
			}
		}
		gr, err = cli.Get(ctx, other, clientv3.WithSerializable(), clientv3.WithRev(w.rev))
		must(t, "serializable get at a revision", err)
		switch {
		case want == nil && len(gr.Kvs) != 0:
			t.Fatalf("step %d: %q at %d: %v, want nothing", i, other, w.rev, gr.Kvs)
		case want != nil && (len(gr.Kvs) != 1 || string(gr.Kvs[0].Value) != want.val):
			t.Fatalf("step %d: %q at %d: %v, want %q", i, other, w.rev, gr.Kvs, want.val)
		}
	}
	// A revision no write has and this node never saw issued is the future.
	_, err := cli.Get(tctx(t), "c", clientv3.WithSerializable(), clientv3.WithRev(hist[len(hist)-1].rev+1<<40))
	wantErr(t, "serializable get in the future", err, rpctypes.ErrGRPCFutureRev)
}

// TestIdleRangesCloseOnTheSideChannel: with no writes at all, every replica
// of every data range closes a revision above a timestamp taken now, and each
// leader's resolved revision follows, so neither a serializable read nor a
// resolve at it needs a quorum round.
func TestIdleRangesCloseOnTheSideChannel(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Nodes: 3, SplitKeys: splitKeys, Configure: func(cfg *server.Config) {
		cfg.ClosedRevisionInterval = 50 * time.Millisecond
	}})
	c.WaitReady(t)
	cli := c.NodeClient(t, 0)
	gr, err := cli.Get(tctx(t), "x") // linearizable: a fresh timestamp
	must(t, "get", err)
	now := engine.Revision(gr.Header.Revision)
	deadline := time.Now().Add(testcluster.ReadyTimeout)
	for {
		var lagging []string
		for i := range c.Size() {
			for _, g := range dataRanges {
				rep := c.Node(i).Replica(g)
				if rep.ClosedRevision() < now {
					lagging = append(lagging, fmt.Sprintf("node %d range %d closed %d", i, g, rep.ClosedRevision()))
				}
				if st := rep.Status(); st.IsLeader && st.Resolved < now {
					lagging = append(lagging, fmt.Sprintf("node %d range %d resolved %d", i, g, st.Resolved))
				}
			}
		}
		if len(lagging) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("idle ranges not closed at %d: %v", now, lagging)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
