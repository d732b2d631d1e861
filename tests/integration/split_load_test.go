package integration_test

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tesseradb/tessera/cmd/tessera/server"
	"github.com/tesseradb/tessera/tests/testcluster"
)

// TestLoadSplit: one hot prefix (100 keys under hot/) served at the default
// --range-split-qps (2,500 requests/s, sustained 10 s) splits its range by
// load within 30 s of the onset, at a key inside the hot prefix (the split
// finder's choice from the sampled request keys), with about half the
// keys on each side; the split is counted under trigger="load", and the
// tessera_range_size_bytes and tessera_range_qps histograms saw the range.
func TestLoadSplit(t *testing.T) {
	if d := server.DefaultSplitConfig(); d.RangeSplitQPS != 2500 || d.LoadSplitSustain != 10*time.Second {
		t.Fatalf("default load split: %v requests/s for %v, want 2500 for 10s", d.RangeSplitQPS, d.LoadSplitSustain)
	}
	runLoadSplit(t, 0, 0)
}

// TestLoadSplitLowThreshold is TestLoadSplit at 200 requests/s for 3 s,
// which any machine serves: the mechanism and its metrics are checked even
// where TestLoadSplit skips.
func TestLoadSplitLowThreshold(t *testing.T) {
	runLoadSplit(t, 200, 3*time.Second)
}

// runLoadSplit runs the hot prefix against a cluster with the given
// threshold (0: the defaults).
func runLoadSplit(t *testing.T, threshold float64, sustain time.Duration) {
	var qps float64
	c := testcluster.Start(t, testcluster.Options{Configure: func(cfg *server.Config) {
		cfg.Split.CheckInterval = 200 * time.Millisecond
		if threshold > 0 {
			cfg.Split.RangeSplitQPS, cfg.Split.LoadSplitSustain = threshold, sustain
		}
		qps = cfg.Split.RangeSplitQPS
	}})
	c.WaitReady(t)
	cli := c.Client(t)
	const hotKeys = 100
	for i := range hotKeys {
		if _, err := cli.Put(tctx(t), fmt.Sprintf("hot/%03d", i), "v"); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	var served atomic.Int64
	var wg sync.WaitGroup
	for w := range 48 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; ctx.Err() == nil; i += 48 {
				rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
				_, err := cli.Get(rctx, fmt.Sprintf("hot/%03d", i%hotKeys))
				rcancel()
				if err == nil {
					served.Add(1)
				}
			}
		}()
	}
	onset := time.Now()
	defer func() { cancel(); wg.Wait() }()

	var leftEnd []byte
	deadline := onset.Add(30 * time.Second)
	for leftEnd == nil && time.Now().Before(deadline) {
		for _, rep := range c.Node(0).Store().Replicas() {
			d := rep.Descriptor()
			if k := d.GetEndKey(); len(k) > 0 && bytes.HasPrefix(k, []byte("hot/")) {
				leftEnd = k
			}
		}
		<-time.After(50 * time.Millisecond) // poll
	}
	took := time.Since(onset)
	rate := float64(served.Load()) / took.Seconds()
	if leftEnd == nil {
		if rate < qps {
			t.Skipf("this machine served %.0f requests/s, under --range-split-qps %v: no load-based split to expect", rate, qps)
		}
		t.Fatalf("no load-based split within 30 s at %.0f requests/s", rate)
	}
	t.Logf("split at %q %v after the onset (%.0f requests/s)", leftEnd, took.Round(time.Millisecond), rate)
	var n int
	if _, err := fmt.Sscanf(string(leftEnd), "hot/%03d", &n); err != nil || n < 20 || n > 80 {
		t.Errorf("split key %q: want a hot key near the middle (hot/020 .. hot/080)", leftEnd)
	}
	resp, err := cli.Get(tctx(t), "hot/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil || resp.Count != hotKeys {
		t.Fatalf("count %v, %v; want %d", resp, err, hotKeys)
	}
	var splits float64
	for i := range c.Size() {
		splits += metricValue(t, c.Endpoint(i), `tessera_range_splits_total{trigger="load"}`)
	}
	if splits < 1 {
		t.Fatalf("tessera_range_splits_total{trigger=\"load\"} sums to %v, want >= 1", splits)
	}
	// The split loop observed the hot range's load (decayed over about a
	// minute: above 20/s after 3 s at >= 200/s) and its size.
	var sizes, hot float64
	for i := range c.Size() {
		sizes += metricValue(t, c.Endpoint(i), `tessera_range_size_bytes_count`)
		hot += metricValue(t, c.Endpoint(i), `tessera_range_qps_count`) - metricValue(t, c.Endpoint(i), `tessera_range_qps_bucket{le="16"}`)
	}
	if sizes < 1 || hot < 1 {
		t.Fatalf("tessera_range_size_bytes has %v observations, tessera_range_qps %v above 16/s: want >= 1 each", sizes, hot)
	}
}
