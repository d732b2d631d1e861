package integration_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tesseradb/tessera/tests/testcluster"
)

// BenchmarkWatchBesideIdleRanges: 1,000 idle ranges on 3 nodes and one
// prefix watch over 4 active ranges; one client puts to the 4 ranges in turn
// and waits for each event. It reports the put→event p50/p99 and the feed
// resolves of the idle ranges served by a ReadIndex round (want 0).
//
//	go test ./tests/integration -run '^$' -bench BenchmarkWatchBesideIdleRanges -benchtime 500x
func BenchmarkWatchBesideIdleRanges(b *testing.B) {
	const idle = 1000
	var splits []string
	for i := range idle {
		splits = append(splits, fmt.Sprintf("i/%04d", i))
	}
	splits = append(splits, "w/0", "w/1", "w/2", "w/3", "w/4")
	c := testcluster.Start(b, testcluster.Options{Nodes: 3, SplitKeys: splits})
	c.WaitReady(b)
	cli := c.NodeClient(b, 0)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wch := cli.Watch(ctx, "w/0", clientv3.WithRange("w/4"), clientv3.WithCreatedNotify())
	if r := <-wch; !r.Created {
		b.Fatalf("watch not created: %+v", r)
	}
	idleReadIndex := func() uint64 {
		var n uint64
		for i := range c.Size() {
			// Ranges 2.. in key order: the first idle+1 ranges are below w/0.
			for g := uint64(2); g < uint64(2+idle+1); g++ {
				if rep := c.Node(i).Replica(g); rep != nil {
					ri, _ := rep.ResolveCounts()
					n += ri
				}
			}
		}
		return n
	}
	before := idleReadIndex()
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		start := time.Now()
		pr, err := cli.Put(ctx, fmt.Sprintf("w/%d/k", i%4), "v")
		if err != nil {
			b.Fatal(err)
		}
		for got := false; !got; {
			r, ok := <-wch
			if !ok {
				b.Fatalf("watch ended: %v", r.Err())
			}
			for _, ev := range r.Events {
				got = got || ev.Kv.ModRevision == pr.Header.Revision
			}
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(idleReadIndex()-before), "idle-readindex-resolves")
}
