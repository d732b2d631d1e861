package raftgroup

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkProposeManyGroups: 3 in-process hosts, 100 groups all led by n1,
// 100 concurrent proposers, each proposing to one group and waiting for its
// entry to apply on the leader. fsyncs/op is the number of WAL fsyncs on the
// leader's engine per committed proposal: the Ready round persists all
// groups' entries with one fsync, so it falls well below 1.
func BenchmarkProposeManyGroups(b *testing.B) {
	const groups, proposers = 100, 100
	c := newTestCluster(b, 3, groups, benchConfig)
	for _, g := range c.groups {
		if err := c.node(1).host.Campaign(g); err != nil {
			b.Fatal(err)
		}
	}
	c.makeLeader(c.groups, 1)
	leader := c.node(1)
	ctx := context.Background()
	var next atomic.Int64
	b.ResetTimer()
	syncs0 := leader.eng.WALSyncs()
	start := time.Now()
	var wg sync.WaitGroup
	for p := 0; p < proposers; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			g := c.groups[p%groups]
			for next.Add(1) <= int64(b.N) {
				if err := c.propose(ctx, g, "benchmark-payload-0123456789"); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	syncs := leader.eng.WALSyncs() - syncs0
	b.ReportMetric(float64(syncs)/float64(b.N), "fsyncs/op")
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "proposals/s")
}

// benchWorkers overrides Config.Workers in benchmarks (0: default).
var benchWorkers = 0

func benchConfig(cfg *Config) {
	if benchWorkers > 0 {
		cfg.Workers = benchWorkers
	}
}
