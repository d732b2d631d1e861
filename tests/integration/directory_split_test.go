// Directory, watch and reconciliation tests across real splits and merges.

package integration_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tesseradb/tessera/cmd/tessera/server"
	"github.com/tesseradb/tessera/router"
	"github.com/tesseradb/tessera/tests/testcluster"
)

// TestDirectoryFollowsSplits: after splits and a merge, the directory on
// every node holds both halves of each split (generation + 1) and the
// merged range (max + 1) and nothing else overlapping; each is the range's
// own descriptor, and a router cache that knows nothing finds every range
// from it.
func TestDirectoryFollowsSplits(t *testing.T) {
	c := newCluster(t)
	splitAt(t, c, "a/5")
	splitAt(t, c, "g/5")
	_, right := splitAt(t, c, "g/7")
	waitReplicas(t, c, right.GetRangeId())
	// A merge: [d, e/5) and [e/5, f) split, then merged back.
	left4, right4 := splitAt(t, c, "e/5")
	waitReplicas(t, c, right4.GetRangeId())
	if _, err := mergeRange(t, c, left4.GetRangeId()); err != nil {
		t.Fatalf("merge: %v", err)
	}
	want := ""
	for i := range c.Size() {
		all, err := router.ScanAll(tctx(t), c.Node(i).Router().Directory())
		must(t, "scan", err)
		got := layoutString(all)
		if i == 0 {
			want = got
		} else if got != want {
			t.Fatalf("node %d directory %q, node 1 %q", i+1, got, want)
		}
	}
	if !strings.HasPrefix(want, "2[,a/5)g2 ") || !strings.Contains(want, " 4[d,f)g3 ") {
		t.Fatalf("directory %q: want range 2 split at a/5 and range 4 split and merged back (generation 3)", want)
	}
	all, err := router.ScanAll(tctx(t), c.Node(0).Router().Directory())
	must(t, "scan", err)
	if len(all) != 7 {
		t.Fatalf("directory %q: want 7 ranges", layoutString(all))
	}
	cache := router.NewRangeCache(nil)
	cache.SetDirectory(c.Node(2).Router().Directory())
	ds, err := cache.Cover(tctx(t), []byte{0}, []byte{0})
	must(t, "cover", err)
	if got := layoutString(ds); got != want {
		t.Fatalf("cover from an empty cache %q, want %q", got, want)
	}
	// Every range's own descriptor is the directory's.
	for _, d := range all {
		rep := c.Node(0).Replica(d.GetRangeId())
		if rep == nil || rep.Descriptor().GetGeneration() != d.GetGeneration() {
			t.Fatalf("range %d: replica %v, directory generation %d", d.GetRangeId(), rep.Descriptor(), d.GetGeneration())
		}
	}
}

// TestWatchAcrossSplits: watches over several ranges (one live, one from
// an earlier revision), opened through a node that learns of the changes
// only from the feeds' errors and the directory, see every write once and
// in revision order while the ranges under them split and merge; the hub
// resubscribed (tessera_watch_resubscriptions_total).
func TestWatchAcrossSplits(t *testing.T) {
	c := newCluster(t)
	wcli := c.NodeClient(t, 2)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	first := put(t, c.Client(t), "a/0", "x")
	live := wcli.Watch(ctx, "a", clientv3.WithRange("h"), clientv3.WithRev(first+1))
	past := wcli.Watch(ctx, "a", clientv3.WithRange("h"), clientv3.WithRev(first))
	before := metricValue(t, c.Endpoint(2), "tessera_watch_resubscriptions_total")

	var mu sync.Mutex
	acked := map[int64]string{first: "a/0"}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var clients []*clientv3.Client
	for i := range c.Size() {
		clients = append(clients, c.NodeClient(t, i))
	}
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				k := fmt.Sprintf("%s/%d/%d", rangeKeys[(w+i)%len(rangeKeys)], i%10, w)
				resp, err := clients[w%len(clients)].Put(context.Background(), k, "v")
				if err != nil {
					t.Errorf("put %s: %v", k, err)
					return
				}
				mu.Lock()
				acked[resp.Header.Revision] = k
				mu.Unlock()
			}
		}()
	}
	var lefts []uint64
	for _, key := range []string{"a/5", "c/5", "g/3", "g/7"} {
		left, right := splitAt(t, c, key)
		waitReplicas(t, c, right.GetRangeId())
		lefts = append(lefts, left.GetRangeId())
	}
	// And merges: [ , a/5) with [a/5, b), and [g/3, g/7) with [g/7, ).
	for _, id := range []uint64{lefts[0], lefts[3]} {
		if _, err := mergeRange(t, c, id); err != nil {
			t.Fatalf("merge range %d: %v", id, err)
		}
	}
	close(stop)
	wg.Wait()
	mu.Lock()
	total := len(acked)
	mu.Unlock()
	for _, w := range []struct {
		name string
		ch   clientv3.WatchChan
		want int
	}{{"live", live, total - 1}, {"from the first write", past, total}} {
		var last int64
		seen := 0
		for seen < w.want {
			resp, ok := <-w.ch
			if !ok {
				t.Fatalf("%s watch ended after %d of %d events", w.name, seen, w.want)
			}
			must(t, w.name+" watch", resp.Err())
			for _, ev := range resp.Events {
				rev := ev.Kv.ModRevision
				if rev <= last {
					t.Fatalf("%s watch: revision %d after %d", w.name, rev, last)
				}
				last = rev
				mu.Lock()
				k := acked[rev]
				mu.Unlock()
				if k != string(ev.Kv.Key) || ev.Type != mvccpb.PUT {
					t.Fatalf("%s watch: event %s@%d is not a write that was made (%q)", w.name, ev.Kv.Key, rev, k)
				}
				seen++
			}
		}
	}
	if after := metricValue(t, c.Endpoint(2), "tessera_watch_resubscriptions_total"); after <= before {
		t.Errorf("tessera_watch_resubscriptions_total %v -> %v: no feed was resubscribed across a split", before, after)
	}
}

// TestDirectoryHealsFromLeaders: splits whose directory update is lost (no
// node records them, as after a crash between the split and the update)
// reach the directory anyway through the range leaders' reports.
func TestDirectoryHealsFromLeaders(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Nodes: 3, SplitKeys: splitKeys, Configure: func(cfg *server.Config) {
		cfg.DirectoryReconcile = router.ReconcileConfig{Interval: 100 * time.Millisecond, Timeout: opTimeout}
	}})
	c.WaitReady(t)
	for i := range c.Size() {
		c.Node(i).Router().SetDirectoryHook(nil)
	}
	_, r1 := splitAt(t, c, "a/5")
	_, r2 := splitAt(t, c, "e/5")
	want := fmt.Sprintf("2[,a/5)g2 %d[a/5,b)g2 3[b,d)g1 4[d,e/5)g2 %d[e/5,f)g2 5[f,)g1", r1.GetRangeId(), r2.GetRangeId())
	waitFor(t, "the directory to hold the splits", func() bool {
		all, err := router.ScanAll(tctx(t), c.Node(1).Router().Directory())
		return err == nil && layoutString(all) == want
	})
	var reports float64
	for i := range c.Size() {
		reports += metricValue(t, c.Endpoint(i), "tessera_router_directory_reports_total")
	}
	if reports < 2 {
		t.Fatalf("tessera_router_directory_reports_total = %v over the nodes, want the split halves reported", reports)
	}
}
