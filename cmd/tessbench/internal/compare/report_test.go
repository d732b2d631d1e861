package compare

import (
	"bytes"
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/tesseradb/tessera/cmd/tessbench/internal/bench"
)

// fakeRun builds a bench result of n puts, all of latency lat, over secs.
func fakeRun(t *testing.T, system string, n int, lat time.Duration, secs float64) *bench.Result {
	t.Helper()
	h := bench.NewHistogram()
	for range n {
		h.Record(lat)
	}
	op, err := bench.NewOpResult("put", h, 0, time.Duration(secs*float64(time.Second)))
	if err != nil {
		t.Fatal(err)
	}
	return &bench.Result{Workload: "put", Case: "put", System: system, Elapsed: bench.Seconds(secs), Ops: []*bench.OpResult{op}}
}

func TestSummariseMergesRoundsAndComputesRatios(t *testing.T) {
	cr := &CaseReport{Name: "put", Workload: "put", Runs: []*bench.Result{
		fakeRun(t, Etcd, 1000, 2*time.Millisecond, 1),    // 1000/s
		fakeRun(t, Tessera, 3000, time.Millisecond, 1),   // 3000/s
		fakeRun(t, Etcd, 3000, 4*time.Millisecond, 3),    // 1000/s
		fakeRun(t, Tessera, 1000, 3*time.Millisecond, 1), // 1000/s
	}}
	cr.summarise()
	if len(cr.Ops) != 1 {
		t.Fatalf("ops = %v", cr.Ops)
	}
	o := cr.Ops[0]
	if o.Etcd.Count != 4000 || o.Tessera.Count != 4000 {
		t.Errorf("counts %d %d, want 4000 each", o.Etcd.Count, o.Tessera.Count)
	}
	// Throughput is total count over total time: 4000/4s and 4000/2s.
	if o.Etcd.Throughput != 1000 || o.Tessera.Throughput != 2000 {
		t.Errorf("throughput etcd %g tessera %g, want 1000 and 2000", o.Etcd.Throughput, o.Tessera.Throughput)
	}
	if len(o.Etcd.RoundThroughput) != 2 || o.Tessera.RoundThroughput[0] != 3000 || o.Tessera.RoundThroughput[1] != 1000 {
		t.Errorf("round throughput %v %v", o.Etcd.RoundThroughput, o.Tessera.RoundThroughput)
	}
	// The histograms are merged: etcd's p50 is 4ms (3000 of 4000 values),
	// Tessera's 1ms (3000 of 4000).
	if math.Abs(o.Etcd.Latency.P50-4) > 0.01 || math.Abs(o.Tessera.Latency.P50-1) > 0.01 {
		t.Errorf("p50 etcd %g tessera %g, want 4 and 1", o.Etcd.Latency.P50, o.Tessera.Latency.P50)
	}
	if o.Ratio == nil || o.Ratio.Throughput != 2 || math.Abs(o.Ratio.P50-0.25) > 0.001 || math.Abs(o.Ratio.Max-0.75) > 0.002 {
		t.Errorf("ratios %+v, want throughput 2, p50 0.25, max 0.75", o.Ratio)
	}
}

func TestSummariseEtcdAlone(t *testing.T) {
	cr := &CaseReport{Name: "put", Runs: []*bench.Result{fakeRun(t, Etcd, 10, time.Millisecond, 1)}}
	cr.summarise()
	if o := cr.Ops[0]; o.Tessera != nil || o.Ratio != nil || o.Etcd == nil {
		t.Errorf("etcd alone: %+v", o)
	}
}

func TestReportTable(t *testing.T) {
	cr := &CaseReport{Name: "put", Workload: "put", Runs: []*bench.Result{
		fakeRun(t, Etcd, 1000, 2*time.Millisecond, 1),
		fakeRun(t, Tessera, 2000, time.Millisecond, 1),
	}}
	cr.summarise()
	alone := &CaseReport{Name: "range-l", Workload: "range", Runs: []*bench.Result{fakeRun(t, Etcd, 500, time.Millisecond, 1)}}
	alone.summarise()
	rep := &Report{
		Machine:  Machine{CPU: "Test CPU", CPUs: 2, Memory: "1.0 GiB", OS: "Debian", DataDevice: "/dev/vda", DataFS: "ext4"},
		Settings: Settings{Nodes: 3, Conns: 1, Clients: 16, Duration: 10, Rounds: 2, KeySize: 32, ValueSize: 256},
		Systems:  []SystemInfo{{Name: Etcd, Bin: "/usr/bin/etcd", Version: "etcd Version: 3.4.23"}, {Name: Tessera, Bin: "/x/tessera"}},
		Cases:    []*CaseReport{cr, alone},
		Notes:    []string{"a note"},
	}
	// 1000 puts for 0.5 CPU-seconds on etcd, 2000 for 0.6 on Tessera.
	cr.Loads = []RunLoad{{System: Etcd, Round: 1, Before: 0.5, After: 1.25, CPUSeconds: 0.5}, {System: Tessera, Round: 1, Before: -1, After: 2, CPUSeconds: 0.6}}
	var buf bytes.Buffer
	if err := rep.WriteTable(&buf); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{
		"machine: Test CPU, 2 cpus, 1.0 GiB memory, Debian; data on /dev/vda (ext4)",
		"settings: 3 nodes each, 16 clients on 1 conns, closed loop, 10s per run, 2 rounds",
		"etcd: /usr/bin/etcd (etcd Version: 3.4.23)",
		"load average (1 min) around the runs: 0.50 to 2.00 on 2 cpus",
		"case     op   system        ops/s   p50 ms  p90 ms  p99 ms  p99.9 ms  max ms  errors  ops/s by round",
		"put      put  etcd          1000.0  2.00",
		"         put  tessera       2000.0  1.00",
		"         put  tessera/etcd  2.00x   0.50x",
		"tessera: /x/tessera\n",
		"range-l  put  etcd          500.0",
		"         put  tessera       -",
		"note: a note",
		"  put: etcd 0.500, tessera 0.300, tessera/etcd 0.60x\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}

	// Without Tessera: etcd's rows only.
	rep.Systems[1] = SystemInfo{Name: Tessera, Skipped: "no binary"}
	buf.Reset()
	if err := rep.WriteTable(&buf); err != nil {
		t.Fatal(err)
	}
	if out := buf.String(); strings.Contains(out, "tessera/etcd") || !strings.Contains(out, "tessera: not measured (no binary)") || !strings.Contains(out, "  put: etcd 0.500\n") {
		t.Errorf("etcd-only table:\n%s", out)
	}

	buf.Reset()
	if err := rep.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(buf.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if back.Cases[0].Ops[0].Ratio.Throughput != 2 || back.Cases[1].Ops[0].Ratio != nil {
		t.Errorf("JSON ratios: %+v", back.Cases)
	}
}

func TestSelectCases(t *testing.T) {
	all, err := selectCases(nil)
	if err != nil || len(all) != len(Cases) {
		t.Fatalf("all cases: %d, %v", len(all), err)
	}
	got, err := selectCases([]string{"watch", "put"})
	if err != nil || len(got) != 2 || got[0].Name != "put" || got[1].Name != "watch" {
		t.Errorf("selected %v, %v; want put, watch in run order", got, err)
	}
	if _, err := selectCases([]string{"nope"}); err == nil {
		t.Error("unknown case accepted")
	}
	for _, c := range Cases {
		if err := bench.DefaultWorkloadConfig().Validate(c.Workload); err != nil {
			t.Errorf("case %s: workload %s: %v", c.Name, c.Workload, err)
		}
	}
}

func TestSplitKeysCutThePrefix(t *testing.T) {
	cfg := DefaultConfig()
	keys, err := cfg.SplitKeys()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"tessbench/range/prefix/000000250", "tessbench/range/prefix/000000500", "tessbench/range/prefix/000000750"}
	if strings.Join(keys, ",") != strings.Join(want, ",") {
		t.Errorf("split keys %v, want %v", keys, want)
	}
	cfg.SplitRanges = 1
	if keys, _ := cfg.SplitKeys(); keys != nil {
		t.Errorf("one range: split keys %v", keys)
	}
}

func TestDescribeMachine(t *testing.T) {
	m := DescribeMachine(t.TempDir())
	if m.CPUs < 1 || m.Go == "" {
		t.Errorf("machine %+v", m)
	}
}
