package integration_test

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/tesseradb/tessera/tests/testcluster"
)

// BenchmarkManyWatchers measures what 10,000 idle watchers on one prefix,
// all on one node, cost: heap per watcher (whole process, client side
// included, so an upper bound) and put throughput on keys of the same ranges
// with and without them.
//
//	go test ./tests/integration -run '^$' -bench BenchmarkManyWatchers -benchtime 4000x
func BenchmarkManyWatchers(b *testing.B) {
	const streams, perStream = 100, 100
	c := testcluster.Start(b, testcluster.Options{Nodes: 3, SplitKeys: splitKeys})
	c.WaitReady(b)
	cli := c.Client(b)
	node := c.NodeClient(b, 0)

	putRate := func() float64 {
		var n atomic.Int64
		var wg sync.WaitGroup
		start := time.Now()
		for w := 0; w < 16; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := n.Add(1); i <= int64(b.N); i = n.Add(1) {
					k := fmt.Sprintf("%s/put/%d", rangeKeys[i%int64(len(rangeKeys))], i%1000)
					if _, err := node.Put(context.Background(), k, "v"); err != nil {
						b.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		return float64(b.N) / time.Since(start).Seconds()
	}

	b.ResetTimer()
	without := putRate()
	b.StopTimer()

	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapInuse
	}
	before := heap()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wc := pb.NewWatchClient(node.ActiveConnection())
	var ws []pb.Watch_WatchClient
	for s := 0; s < streams; s++ {
		st, err := wc.Watch(ctx)
		if err != nil {
			b.Fatal(err)
		}
		for w := 0; w < perStream; w++ {
			if err := st.Send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: &pb.WatchCreateRequest{
				Key: []byte("z/watched/"), RangeEnd: []byte("z/watched0")}}}); err != nil {
				b.Fatal(err)
			}
			if r, err := st.Recv(); err != nil || !r.Created {
				b.Fatalf("create: %v %v", r, err)
			}
		}
		ws = append(ws, st)
	}
	after := heap()
	perWatcher := float64(int64(after)-int64(before)) / float64(streams*perStream)

	b.StartTimer()
	with := putRate()
	b.StopTimer()
	// The watchers are still there and still work.
	r, err := cli.Put(context.Background(), "z/watched/x", "1")
	if err != nil {
		b.Fatal(err)
	}
	if resp, err := ws[0].Recv(); err != nil || len(resp.Events) != 1 || resp.Events[0].Kv.ModRevision != r.Header.Revision {
		b.Fatalf("watcher after the run: %v %v", resp, err)
	}
	b.ReportMetric(perWatcher, "heap-B/watcher")
	b.ReportMetric(without, "puts/s-without")
	b.ReportMetric(with, "puts/s-with-10k")
	b.ReportMetric(with/without, "ratio")
}
