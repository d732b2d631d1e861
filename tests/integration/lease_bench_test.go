package integration_test

import (
	"bufio"
	"context"
	"fmt"
	"math"
	"net/http"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tesseradb/tessera/tests/testcluster"
)

// BenchmarkLeaseExpiryLag grants TESSERA_LEASES leases (default 2,000)
// with one key each on the four ranges; the last TESSERA_EXPIRING of them
// (default a tenth) have a TESSERA_SHORT_TTL (default 30 s) TTL, the
// others an hour; the short ones must all be granted within their TTL. Moving the meta
// group's leadership then restarts every deadline at once on the new
// leader, so the short leases all expire in the same instant. It reports
// the expiry lag (deadline → keys deleted on every range) at p99 from the
// new leader's histogram (an upper bound: a bucket's edge) and until the
// last key was gone.
//
//	TESSERA_LEASES=100000 TESSERA_EXPIRING=10000 TESSERA_SHORT_TTL=120 [TESSERA_TICK=100ms] go test -run XXX \
//	  -bench BenchmarkLeaseExpiryLag -benchtime 1x ./tests/integration/
//
// TESSERA_CPUPROFILE=FILE profiles the cluster from the leadership move
// until the last expired lease is counted.
func BenchmarkLeaseExpiryLag(b *testing.B) {
	total := envInt("TESSERA_LEASES", 2000)
	expiring := envInt("TESSERA_EXPIRING", total/10)
	shortTTL := envInt("TESSERA_SHORT_TTL", 30)
	for range b.N {
		b.StopTimer()
		// TESSERA_TICK: the raft tick (default the test cluster's 20 ms, a
		// 200 ms election timeout; 100ms gives etcd's 1 s, which keeps the
		// meta leadership in place on a loaded two-core machine).
		tick, _ := time.ParseDuration(os.Getenv("TESSERA_TICK"))
		cl := testcluster.Start(b, testcluster.Options{Nodes: 3, SplitKeys: splitKeys, Tick: tick})
		cl.WaitReady(b)
		cli := cl.Client(b)
		var long atomic.Int64 // long leases granted with their key
		grant := func(from, to int, ttl int64) {
			var next atomic.Int64
			next.Store(int64(from))
			var wg sync.WaitGroup
			for range 64 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						i := int(next.Add(1)) - 1
						if i >= to {
							return
						}
						ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
						g, err := cli.Grant(ctx, ttl)
						if err == nil {
							_, err = cli.Put(ctx, fmt.Sprintf("%s/lease%07d", rangeKeys[i%len(rangeKeys)], i), "v", clientv3.WithLease(g.ID))
						}
						cancel()
						switch {
						case err != nil && ttl == 3600:
							// Under load a grant may time out: the key
							// count below expects the ones that worked.
							b.Log(err)
						case err != nil:
							b.Error(err)
							return
						case ttl == 3600:
							long.Add(1)
						}
					}
				}()
			}
			wg.Wait()
		}
		start := time.Now()
		grant(0, total-expiring, 3600)
		grant(total-expiring, total, int64(shortTTL))
		b.Logf("granted %d leases with a key each in %v", total, time.Since(start))
		meta := cl.Leader(metaRange)
		to := (meta + 1) % cl.Size()
		// The meta leader counts a lease as expired once its keys are
		// gone from every range. Polling that counter (not a count of the
		// keys, which scans every range) keeps the wait off the cluster.
		// Under load the meta leadership may move again meanwhile (the
		// next leader extends the leases once more): the figures are
		// summed over the nodes.
		expired := func() float64 {
			var n float64
			for i := range cl.Size() {
				n += metricValue2(b, cl.Endpoint(i), "tessera_lease_expired_total")
			}
			return n
		}
		stopProfile := startProfile(b)
		cl.TransferLeader(metaRange, to)
		moved := time.Now()
		b.StartTimer()
		for expired() < float64(expiring) {
			if time.Since(moved) > 10*time.Minute {
				b.Fatalf("%v expired leases counted, want %d", expired(), expiring)
			}
			// Poll interval: each poll gathers three nodes' metrics, which
			// at 20 ms took a quarter of the CPU (gzip and label pairs).
			time.Sleep(200 * time.Millisecond)
		}
		gone := time.Now()
		b.StopTimer()
		stopProfile()
		resp, err := cli.Get(context.Background(), "", clientv3.WithFromKey(), clientv3.WithCountOnly())
		if err != nil || resp.Count != long.Load() {
			b.Fatalf("keys left after the expiry: %v %v, want %d", resp, err, long.Load())
		}
		// Deadline: the transfer plus the TTL plus the promotion extension
		// (an election timeout: ten ticks).
		if tick == 0 {
			tick = 20 * time.Millisecond
		}
		last := gone.Sub(moved) - time.Duration(shortTTL)*time.Second - 10*tick
		b.ReportMetric(last.Seconds(), "s-last-lag")
		var p99 float64
		for i := range cl.Size() {
			p99 = max(p99, histogramQuantile(b, cl.Endpoint(i), "tessera_lease_expiry_lag_seconds", 0.99))
		}
		b.ReportMetric(p99, "s-p99-lag")
	}
}

// startProfile writes a CPU profile of the process (the whole in-process
// cluster) to $TESSERA_CPUPROFILE until the returned function is called.
func startProfile(b *testing.B) func() {
	path := os.Getenv("TESSERA_CPUPROFILE")
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		b.Fatal(err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}
}

// plainHTTP fetches without asking for gzip (cheaper for the server).
var plainHTTP = &http.Client{Transport: &http.Transport{DisableCompression: true}}

// metricValue2 is metricValue for benchmarks.
func metricValue2(t testing.TB, endpoint, name string) float64 {
	resp, err := plainHTTP.Get(endpoint + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	s := bufio.NewScanner(resp.Body)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), name+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return math.NaN()
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// histogramQuantile returns the upper edge of the bucket holding quantile q
// of a histogram on a node's /metrics.
func histogramQuantile(t testing.TB, endpoint, name string, q float64) float64 {
	resp, err := http.Get(endpoint + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	type bucket struct{ le, n float64 }
	var buckets []bucket
	var count float64
	s := bufio.NewScanner(resp.Body)
	for s.Scan() {
		line := s.Text()
		if rest, ok := strings.CutPrefix(line, name+`_bucket{le="`); ok {
			le, n, _ := strings.Cut(rest, `"} `)
			lev, _ := strconv.ParseFloat(le, 64)
			nv, _ := strconv.ParseFloat(n, 64)
			buckets = append(buckets, bucket{lev, nv})
		}
		if v, ok := strings.CutPrefix(line, name+"_count "); ok {
			count, _ = strconv.ParseFloat(v, 64)
		}
	}
	for _, bk := range buckets {
		if bk.n >= q*count {
			return bk.le
		}
	}
	return math.Inf(1)
}
