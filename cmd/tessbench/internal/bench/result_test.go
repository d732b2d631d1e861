package bench

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
)

// sampleResult builds a result the way Run does: from a recorder.
func sampleResult(t *testing.T) *Result {
	t.Helper()
	rec := NewRecorder()
	for i := 1; i <= 100; i++ {
		rec.Record("put", time.Duration(i)*time.Millisecond, nil)
	}
	rec.Record("put", 0, rpctypes.ErrLeaderChanged)
	rec.Record("put", 0, rpctypes.ErrLeaderChanged)
	rec.Record("get", 500*time.Microsecond, nil)
	res := &Result{
		Workload:  "put",
		Endpoints: []string{"127.0.0.1:2379"},
		Conns:     1,
		Clients:   4,
		Mode:      "open",
		Rate:      50,
		Params:    map[string]any{"val-size": 256},
		Start:     t0,
		Elapsed:   2,
		Counters:  map[string]int64{"txn_conflicts": 3},
	}
	if err := res.fill(rec); err != nil {
		t.Fatal(err)
	}
	return res
}

func TestResultFigures(t *testing.T) {
	res := sampleResult(t)
	if len(res.Ops) != 2 || res.Ops[0].Name != "get" || res.Ops[1].Name != "put" {
		t.Fatalf("ops = %v, want get and put sorted", res.Ops)
	}
	put := res.Op("put")
	if put.Count != 100 || put.Errors != 2 {
		t.Errorf("put count %d errors %d, want 100 and 2", put.Count, put.Errors)
	}
	if put.Throughput != 50 {
		t.Errorf("put throughput %g, want 100 over 2s = 50", put.Throughput)
	}
	if d := put.Latency.P50 - 50; d < -0.05 || d > 0.05 {
		t.Errorf("put p50 %gms, want 50", put.Latency.P50)
	}
	if res.TotalErrors() != 2 || res.Errors["Unavailable: etcdserver: leader changed"] != 2 {
		t.Errorf("errors = %v", res.Errors)
	}
	if res.Op("nope") != nil {
		t.Error("Op of a missing name is not nil")
	}
}

func TestResultJSON(t *testing.T) {
	res := sampleResult(t)
	var buf bytes.Buffer
	if err := res.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	// The field names are the interface scripts rely on.
	var raw map[string]any
	if err := json.Unmarshal(buf.Bytes(), &raw); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, buf.String())
	}
	for _, k := range []string{"workload", "endpoints", "conns", "clients", "mode", "rate", "params", "start", "elapsed_s", "ops", "errors", "counters"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("JSON lacks %q", k)
		}
	}
	if raw["elapsed_s"] != 2.0 || raw["mode"] != "open" {
		t.Errorf("elapsed_s = %v, mode = %v", raw["elapsed_s"], raw["mode"])
	}
	op := raw["ops"].([]any)[1].(map[string]any)
	for _, k := range []string{"name", "count", "errors", "throughput", "latency_ms", "hdr"} {
		if _, ok := op[k]; !ok {
			t.Errorf("op JSON lacks %q", k)
		}
	}
	lat := op["latency_ms"].(map[string]any)
	for _, k := range []string{"mean", "p50", "p90", "p99", "p99_9", "max"} {
		if _, ok := lat[k]; !ok {
			t.Errorf("latency JSON lacks %q", k)
		}
	}

	// Read back, histograms included.
	back, err := ReadJSON(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if back.Workload != "put" || back.Elapsed != 2 || !back.Start.Equal(t0) || back.Counters["txn_conflicts"] != 3 {
		t.Errorf("read back %+v", back)
	}
	for _, o := range res.Ops {
		b := back.Op(o.Name)
		if b == nil || b.Histogram() == nil {
			t.Fatalf("op %s lost its histogram", o.Name)
		}
		if b.Histogram().Count() != o.Count || b.Histogram().Summary() != o.Latency || b.Latency != o.Latency {
			t.Errorf("op %s: histogram %d values %+v, want %d %+v", o.Name, b.Histogram().Count(), b.Histogram().Summary(), o.Count, o.Latency)
		}
	}
	if _, err := ReadJSON(strings.NewReader(`{"ops":[{"name":"x","hdr":"garbage"}]}`)); err == nil {
		t.Error("a broken histogram was accepted")
	}
}
