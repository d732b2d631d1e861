package bench

import (
	"bytes"
	"context"
	"log/slog"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tesseradb/tessera/cmd/tessbench/internal/benchtest"
)

// TestAgainstEtcd runs every workload briefly against a real single-node
// etcd started for the test (skipped where etcd is not installed).
func TestAgainstEtcd(t *testing.T) {
	c := benchtest.StartEtcd(t, 1)
	eps := c.Endpoints()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	lg := slog.New(slog.DiscardHandler)

	run := DefaultRunConfig()
	run.Endpoints, run.Clients, run.Conns = eps, 4, 2
	run.Duration, run.Total = 0, 200
	wl := DefaultWorkloadConfig()
	wl.KeySpace = 500
	wl.Watchers = 3

	type check func(t *testing.T, r *Result)
	for _, tc := range []struct {
		name     string
		workload string
		mut      func(*RunConfig, *WorkloadConfig)
		check    check
	}{
		{"put", "put", nil, nil},
		{"put sequential", "put", func(_ *RunConfig, w *WorkloadConfig) { w.Sequential = true }, nil},
		{"range linearizable", "range", nil, nil},
		{"range serializable", "range", func(_ *RunConfig, w *WorkloadConfig) { w.Consistency = Serializable }, nil},
		{"range prefix", "range", func(_ *RunConfig, w *WorkloadConfig) { w.PrefixKeys = 100 }, nil},
		{"txn-put", "txn-put", nil, func(t *testing.T, r *Result) {
			ok, conflicts := r.Op("txn-put"), r.Op("txn-put-conflict")
			n := ok.Count
			if conflicts != nil {
				n += conflicts.Count
			}
			if n != 200 {
				t.Errorf("swaps + conflicts = %d, want 200", n)
			}
		}},
		{"watch", "watch", func(r *RunConfig, _ *WorkloadConfig) { r.Clients = 1 }, func(t *testing.T, r *Result) {
			ev := r.Op(watchEventOp)
			if ev == nil || ev.Count != 200*3 {
				t.Fatalf("watch events = %v, want 600 (200 puts × 3 watchers)", ev)
			}
			if ev.Latency.P50 <= 0 || ev.Throughput <= 0 {
				t.Errorf("watch event latency %+v throughput %g", ev.Latency, ev.Throughput)
			}
		}},
		{"lease-keepalive", "lease-keepalive", nil, nil},
		{"mixed", "mixed", func(_ *RunConfig, w *WorkloadConfig) { w.ReadRatio = 0.5 }, func(t *testing.T, r *Result) {
			if r.Op("read") == nil || r.Op("write") == nil || r.Op("read").Count+r.Op("write").Count != 200 {
				t.Errorf("mixed ops = %v, want reads and writes adding to 200", r.Ops)
			}
		}},
		{"open loop", "put", func(r *RunConfig, _ *WorkloadConfig) { r.Rate = 1000 }, func(t *testing.T, r *Result) {
			// 200 requests due over 199ms: the run cannot be shorter.
			if r.Elapsed.Duration() < 199*time.Millisecond {
				t.Errorf("open loop at 1000/s took %s for 200 requests", r.Elapsed.Duration())
			}
			if r.Mode != "open" || r.Unsent != 0 {
				t.Errorf("mode %s unsent %d", r.Mode, r.Unsent)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, w := run, wl
			if tc.mut != nil {
				tc.mut(&r, &w)
			}
			res, err := Execute(ctx, r, w, tc.workload, lg)
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Errors) != 0 {
				t.Errorf("errors: %v", res.Errors)
			}
			var total int64
			for _, o := range res.Ops {
				if o.Name != watchEventOp {
					total += o.Count
				}
			}
			if total != r.Total {
				t.Errorf("%d requests succeeded, want %d", total, r.Total)
			}
			if tc.check != nil {
				tc.check(t, res)
			}
			var buf bytes.Buffer
			if err := res.WriteJSON(&buf); err != nil {
				t.Fatal(err)
			}
			if _, err := ReadJSON(&buf); err != nil {
				t.Fatal(err)
			}
		})
	}

	// Cleanup: the leases were revoked and the watch prefix is the only one
	// with keys the workloads do not preload.
	cli, err := clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	leases, err := cli.Leases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(leases.Leases) != 0 {
		t.Errorf("%d leases left after lease-keepalive", len(leases.Leases))
	}
	resp, err := cli.Get(ctx, wl.KeyPrefix("range")+"prefix/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil || resp.Count != 100 {
		t.Errorf("range prefix holds %v keys (%v), want 100", resp, err)
	}
}

// TestAgainstStoppedEndpoint checks that an unreachable endpoint fails the
// run with a clear error instead of a table of errors.
func TestAgainstStoppedEndpoint(t *testing.T) {
	run := DefaultRunConfig()
	run.Endpoints = []string{"127.0.0.1:1"}
	run.DialTimeout = 200 * time.Millisecond
	_, err := Execute(context.Background(), run, DefaultWorkloadConfig(), "put", nil)
	if err == nil {
		t.Fatal("run against a closed port succeeded")
	}
}
