package integration_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/tesseradb/tessera/cmd/tessera/server"
	"github.com/tesseradb/tessera/proto/tesserapb"
	"github.com/tesseradb/tessera/shard"
	"github.com/tesseradb/tessera/tests/testcluster"
)

// internalClient dials node i's peer port (the Internal service).
func internalClient(t *testing.T, c *testcluster.Cluster, i int) tesserapb.InternalClient {
	t.Helper()
	conn, err := grpc.NewClient(c.Node(i).PeerAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return tesserapb.NewInternalClient(conn)
}

// splitAt asks the leader of the range holding key to split it at key,
// following leader hints, and returns both halves.
func splitAt(t *testing.T, c *testcluster.Cluster, key string) (*tesserapb.RangeDescriptor, *tesserapb.RangeDescriptor) {
	t.Helper()
	ctx := tctx(t)
	var rangeID uint64
	for _, d := range c.Node(0).Store().Replicas() {
		desc := d.Descriptor()
		if string(desc.GetStartKey()) <= key && (len(desc.GetEndKey()) == 0 || key < string(desc.GetEndKey())) {
			rangeID = desc.GetRangeId()
		}
	}
	if rangeID == 0 {
		t.Fatalf("no range holds %q", key)
	}
	leader := c.Leader(rangeID)
	for attempt := 0; attempt < 20; attempt++ {
		resp, err := internalClient(t, c, leader).SplitRange(ctx, &tesserapb.SplitRangeRequest{RangeId: rangeID, SplitKey: []byte(key)})
		if err != nil {
			t.Fatalf("split range %d at %q: %v", rangeID, key, err)
		}
		if re := resp.GetRoutingError(); re != nil {
			leader = c.Leader(rangeID)
			continue
		}
		return resp.GetLeft(), resp.GetRight()
	}
	t.Fatalf("split range %d at %q: no leader accepted it", rangeID, key)
	return nil, nil
}

// waitReplicas waits until every node holds a replica of the range.
func waitReplicas(t *testing.T, c *testcluster.Cluster, rangeID uint64) {
	t.Helper()
	deadline := time.Now().Add(opTimeout)
	for i := range c.Size() {
		for c.Node(i).Replica(rangeID) == nil {
			if time.Now().After(deadline) {
				t.Fatalf("node %d never opened range %d", i+1, rangeID)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// requireHashesEqual compares etcd's HashKV of every node at one revision.
func requireHashesEqual(t *testing.T, c *testcluster.Cluster, rev int64) {
	t.Helper()
	var first uint32
	for i := range c.Size() {
		resp, err := c.NodeClient(t, i).HashKV(tctx(t), c.Endpoint(i), rev)
		if err != nil {
			t.Fatalf("node %d: hashkv at %d: %v", i+1, rev, err)
		}
		if i == 0 {
			first = resp.Hash
		} else if resp.Hash != first {
			t.Fatalf("node %d: hashkv at %d is %08x, node 1 %08x", i+1, rev, resp.Hash, first)
		}
	}
}

// reader reads continuously: single keys and the whole keyspace.
type reader struct {
	stop chan struct{}
	wg   sync.WaitGroup
	mu   sync.Mutex
	errs []error
	n    int
}

func startReaders(clients []*clientv3.Client) *reader {
	rd := &reader{stop: make(chan struct{})}
	for i, cli := range clients {
		rd.wg.Add(1)
		go func() {
			defer rd.wg.Done()
			for j := 0; ; j++ {
				select {
				case <-rd.stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
				var err error
				if j%2 == 0 {
					_, err = cli.Get(ctx, fmt.Sprintf("%s/traffic/%d", rangeKeys[j%len(rangeKeys)], i))
				} else {
					_, err = cli.Get(ctx, "", clientv3.WithFromKey(), clientv3.WithKeysOnly(), clientv3.WithSerializable())
					if err == nil {
						_, err = cli.Get(ctx, "a", clientv3.WithRange("z"), clientv3.WithCountOnly())
					}
				}
				cancel()
				rd.mu.Lock()
				rd.n++
				if err != nil {
					rd.errs = append(rd.errs, err)
				}
				rd.mu.Unlock()
			}
		}()
	}
	return rd
}

func (rd *reader) halt() []error {
	select {
	case <-rd.stop:
	default:
		close(rd.stop)
	}
	rd.wg.Wait()
	rd.mu.Lock()
	defer rd.mu.Unlock()
	return rd.errs
}

// TestSplitUnderTraffic: ranges split while writers put and readers read
// through every node; no client sees an error, every writer's history is
// exactly its acknowledged puts in real-time order, both halves exist on
// every node with generation+1 and the right half serves its keys, every
// key reads back, and the replicas hash alike.
func TestSplitUnderTraffic(t *testing.T) {
	c, cli := newClusterClient(t)
	var clients []*clientv3.Client
	for i := range c.Size() {
		clients = append(clients, c.NodeClient(t, i))
	}
	tr := startTraffic(t, clients, 2)
	rd := startReaders(clients)
	t.Cleanup(func() { rd.halt() })
	tr.waitWrites(t, 60)

	// Split range 2 ([ , b)) between its two writers' keys, and range 5
	// ([f, )) twice.
	var rights []uint64
	for _, key := range []string{"a/traffic/4", "g/traffic/3", "g/traffic/7"} {
		left, right := splitAt(t, c, key)
		if string(left.GetEndKey()) != key || string(right.GetStartKey()) != key || left.GetGeneration() != right.GetGeneration() {
			t.Fatalf("split at %q: left %v right %v", key, left, right)
		}
		waitReplicas(t, c, right.GetRangeId())
		rights = append(rights, right.GetRangeId())
		tr.waitWrites(t, 60)
	}
	if errs := rd.halt(); len(errs) > 0 {
		t.Errorf("%d of %d reads failed, first: %v", len(errs), rd.n, errs[0])
	}
	tr.check(t, cli, false)

	// Every writer's key is readable through every node, from the range
	// that holds it now.
	for i := range c.Size() {
		resp, err := c.NodeClient(t, i).Get(tctx(t), "", clientv3.WithFromKey(), clientv3.WithKeysOnly())
		if err != nil {
			t.Fatal(err)
		}
		if got := len(resp.Kvs); got != len(rangeKeys)*2 {
			t.Fatalf("node %d sees %d keys, want %d", i+1, got, len(rangeKeys)*2)
		}
	}
	for _, id := range rights {
		rep := c.Node(0).Replica(id)
		if rep == nil || rep.Descriptor().GetGeneration() < 2 {
			t.Fatalf("range %d: %v", id, rep)
		}
	}
	resp, err := cli.Put(tctx(t), "g/traffic/9", "after")
	if err != nil {
		t.Fatal(err)
	}
	requireHashesEqual(t, c, resp.Header.Revision)
	// Refused: a key that already starts a range.
	if _, err := internalClient(t, c, c.Leader(rights[0])).SplitRange(tctx(t), &tesserapb.SplitRangeRequest{RangeId: rights[0], SplitKey: []byte("a/traffic/4")}); err == nil {
		t.Fatal("a split at a range's own start key was accepted")
	}
	_ = pb.RangeRequest{}
}

// TestSizeSplit: with --range-max-bytes 64 KiB, writing about 250 KiB into
// one range splits it by size into several ranges, each under twice the
// limit (slack for the check interval); every key reads back and the
// replicas hash alike; tessera_range_splits_total{trigger="size"} counts.
func TestSizeSplit(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Configure: func(cfg *server.Config) {
		cfg.Split.RangeMaxBytes = 64 << 10
		cfg.Split.CheckInterval = 50 * time.Millisecond
	}})
	c.WaitReady(t)
	cli := c.Client(t)
	const keys = 1200
	val := strings.Repeat("v", 200)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < keys; i += 8 {
				if _, err := cli.Put(tctx(t), fmt.Sprintf("key/%05d", i), val); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("put: %v", err)
	}
	// Wait until the layout settles under the limit (with slack).
	deadline := time.Now().Add(opTimeout)
	for {
		n, big := 0, false
		for _, rep := range c.Node(0).Store().Replicas() {
			n++
			if st, ok := rep.LastSize(); ok && st.Bytes > 2*(64<<10) {
				big = true
			}
		}
		if n >= 4 && !big {
			t.Logf("%d ranges", n)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d ranges, some above twice the limit: %v", n, big)
		}
		time.Sleep(20 * time.Millisecond)
	}
	resp, err := cli.Get(tctx(t), "key/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil || resp.Count != keys {
		t.Fatalf("count %v, %v; want %d", resp, err, keys)
	}
	requireHashesEqual(t, c, resp.Header.Revision)
	var splits float64
	for i := range c.Size() {
		splits += metricValue(t, c.Endpoint(i), `tessera_range_splits_total{trigger="size"}`)
	}
	if splits < 3 {
		t.Fatalf("tessera_range_splits_total{trigger=\"size\"} sums to %v over the nodes, want >= 3", splits)
	}
}

// TestSplitCrashBeforeRightOpens: node 3 applies a split (its batch
// commits) but skips the post-commit step that opens the right half, as a
// crash between the two would leave it. The other two replicas serve the
// right half meanwhile (a quorum); after node 3 restarts, its Store finds
// the right half's descriptor, opens it, and the right half's replica on
// node 3 catches up: every node hashes alike.
func TestSplitCrashBeforeRightOpens(t *testing.T) {
	var skip atomic.Bool
	skip.Store(true)
	c := testcluster.Start(t, testcluster.Options{SplitKeys: splitKeys, Configure: func(cfg *server.Config) {
		if cfg.Name == "node3" {
			cfg.StoreKnobs = &shard.StoreKnobs{SkipSplitOpen: func(shard.SplitResult) bool { return skip.Load() }}
		}
	}})
	c.WaitReady(t)
	cli := c.Client(t)
	for i := range 20 {
		put(t, cli, fmt.Sprintf("g/%02d", i), "before")
	}
	_, right := splitAt(t, c, "g/10")
	// Node 3 applied the split (its left half narrowed) without opening the right.
	deadline := time.Now().Add(opTimeout)
	for string(c.Node(2).Replica(5).Descriptor().GetEndKey()) != "g/10" {
		if time.Now().After(deadline) {
			t.Fatal("node 3 never applied the split")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if c.Node(2).Replica(right.GetRangeId()) != nil {
		t.Fatal("node 3 opened the right half although its knob skipped it")
	}
	for i := range 20 {
		put(t, cli, fmt.Sprintf("g/%02d", i), "after")
	}
	skip.Store(false)
	c.Restart(2)
	waitReplicas(t, c, right.GetRangeId())
	resp, err := cli.Put(tctx(t), "g/19", "last")
	if err != nil {
		t.Fatal(err)
	}
	// Node 3's right replica catches up; then every node hashes alike.
	deadline = time.Now().Add(opTimeout)
	for {
		rep := c.Node(2).Replica(right.GetRangeId())
		if rep != nil && int64(rep.PublishedRevision()) >= resp.Header.Revision {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("node 3's right half never caught up")
		}
		time.Sleep(10 * time.Millisecond)
	}
	requireHashesEqual(t, c, resp.Header.Revision)
	got, err := c.NodeClient(t, 2).Get(tctx(t), "g/", clientv3.WithPrefix(), clientv3.WithSerializable())
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Kvs) != 20 {
		t.Fatalf("node 3 serves %d keys of g/", len(got.Kvs))
	}
}

// mergeRange asks the leader of range id to merge its right neighbour.
func mergeRange(t *testing.T, c *testcluster.Cluster, id uint64) (*tesserapb.RangeDescriptor, error) {
	t.Helper()
	for attempt := 0; attempt < 20; attempt++ {
		resp, err := internalClient(t, c, c.Leader(id)).MergeRange(tctx(t), &tesserapb.MergeRangeRequest{RangeId: id})
		if err != nil {
			return nil, err
		}
		if resp.GetRoutingError() == nil {
			return resp.GetMerged(), nil
		}
	}
	t.Fatalf("merge range %d: no leader accepted it", id)
	return nil, nil
}

// TestMergeUnderTraffic: ranges split and merge back while writers put and
// readers read through every node: no client sees an error, every writer's
// history is exact, the merged range spans both halves at generation
// max+1, the right's replica is gone from every node (its requests are sent
// to the merged range), every key reads back and the replicas hash alike.
// Merging the last range, or the meta group, is refused with a reason.
func TestMergeUnderTraffic(t *testing.T) {
	c, cli := newClusterClient(t)
	var clients []*clientv3.Client
	for i := range c.Size() {
		clients = append(clients, c.NodeClient(t, i))
	}
	tr := startTraffic(t, clients, 2)
	rd := startReaders(clients)
	t.Cleanup(func() { rd.halt() })
	tr.waitWrites(t, 60)

	left, right := splitAt(t, c, "c/traffic/5")
	waitReplicas(t, c, right.GetRangeId())
	tr.waitWrites(t, 60)
	merged, err := mergeRange(t, c, left.GetRangeId())
	if err != nil {
		t.Fatal(err)
	}
	if merged.GetRangeId() != left.GetRangeId() || string(merged.GetStartKey()) != string(left.GetStartKey()) ||
		string(merged.GetEndKey()) != string(right.GetEndKey()) || merged.GetGeneration() != right.GetGeneration()+1 {
		t.Fatalf("merged %v from %v and %v", merged, left, right)
	}
	deadline := time.Now().Add(opTimeout)
	for i := range c.Size() {
		for {
			gone := true
			for _, rep := range c.Node(i).Store().Replicas() {
				if rep.Descriptor().GetRangeId() == right.GetRangeId() {
					gone = false
				}
			}
			if gone && c.Node(i).Replica(left.GetRangeId()).Descriptor().GetGeneration() == merged.GetGeneration() {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("node %d still holds range %d", i+1, right.GetRangeId())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	tr.waitWrites(t, 60)
	if errs := rd.halt(); len(errs) > 0 {
		t.Errorf("%d of %d reads failed, first: %v", len(errs), rd.n, errs[0])
	}
	tr.check(t, cli, false)
	resp, err := cli.Put(tctx(t), "c/traffic/9", "after")
	if err != nil {
		t.Fatal(err)
	}
	requireHashesEqual(t, c, resp.Header.Revision)
	if got, err := cli.Get(tctx(t), "", clientv3.WithFromKey(), clientv3.WithCountOnly()); err != nil || got.Count != int64(len(rangeKeys)*2+1) {
		t.Fatalf("count %v %v", got, err)
	}
	// Refusals: the last range has no right neighbour; the meta group.
	last := c.Node(0).Store().Replicas()
	lastID := last[0].Descriptor().GetRangeId()
	for _, rep := range last {
		if len(rep.Descriptor().GetEndKey()) == 0 {
			lastID = rep.Descriptor().GetRangeId()
		}
	}
	if _, err := mergeRange(t, c, lastID); status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "no right neighbour") {
		t.Fatalf("merge of the last range: %v", err)
	}
	if _, err := internalClient(t, c, 0).MergeRange(tctx(t), &tesserapb.MergeRangeRequest{RangeId: 1}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("merge of the meta group: %v", err)
	}
}

// TestWatchAcrossSplitAndMerge: a watch over a range that splits and then
// merges back, while writers put on both sides of the split point, sees
// every acknowledged write exactly once, in revision order: the hub's
// subscription follows the new layout from the last revision it received.
func TestWatchAcrossSplitAndMerge(t *testing.T) {
	c, cli := newClusterClient(t)
	wctx, wcancel := context.WithCancel(context.Background())
	defer wcancel()
	wch := c.NodeClient(t, 1).Watch(wctx, "c/", clientv3.WithPrefix())
	// A second watch that starts after the split on the right half only.
	var mu sync.Mutex
	acked := map[int64]string{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
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
				k := fmt.Sprintf("c/%d/%d", w*3, i) // c/0, c/3, c/6, c/9: both sides of c/5
				resp, err := cli.Put(tctx(t), k, "v")
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
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(acked)
	}
	waitCount := func(n int) {
		deadline := time.Now().Add(opTimeout)
		for target := count() + n; count() < target; {
			if time.Now().After(deadline) {
				t.Fatal("writes stalled")
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitCount(40)
	left, right := splitAt(t, c, "c/5")
	waitReplicas(t, c, right.GetRangeId())
	waitCount(40)
	if _, err := mergeRange(t, c, left.GetRangeId()); err != nil {
		t.Fatal(err)
	}
	waitCount(40)
	close(stop)
	wg.Wait()
	mu.Lock()
	want := len(acked)
	mu.Unlock()
	seen := map[int64]bool{}
	var last int64
	deadline := time.After(opTimeout)
	for len(seen) < want {
		select {
		case resp, ok := <-wch:
			if !ok || resp.Err() != nil {
				t.Fatalf("watch ended: %v (%d of %d events)", resp.Err(), len(seen), want)
			}
			for _, ev := range resp.Events {
				rev := ev.Kv.ModRevision
				if rev <= last {
					t.Fatalf("event %s@%d after %d (repeated or out of order)", ev.Kv.Key, rev, last)
				}
				last = rev
				if acked[rev] != string(ev.Kv.Key) {
					t.Fatalf("event %s@%d was not written (acked %q)", ev.Kv.Key, rev, acked[rev])
				}
				seen[rev] = true
			}
		case <-deadline:
			t.Fatalf("the watch saw %d of %d writes", len(seen), want)
		}
	}
}
