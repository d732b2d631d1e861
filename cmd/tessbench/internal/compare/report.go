package compare

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/tesseradb/tessera/cmd/tessbench/internal/bench"
)

// Report is the outcome of a comparison; it marshals to compare's --json.
type Report struct {
	Machine  Machine       `json:"machine"`
	Settings Settings      `json:"settings"`
	Systems  []SystemInfo  `json:"systems"`
	Cases    []*CaseReport `json:"cases"`
	Notes    []string      `json:"notes,omitempty"`
}

// Settings are the shared settings of every run.
type Settings struct {
	Nodes    int           `json:"nodes"`
	Conns    int           `json:"conns"`
	Clients  int           `json:"clients"`
	Total    int64         `json:"total,omitempty"`
	Duration bench.Seconds `json:"duration_s,omitempty"`
	Rate     float64       `json:"rate,omitempty"`
	Rounds   int           `json:"rounds"`
	// Endpoint is the one member the clients used (1-based), 0 for all.
	Endpoint    int      `json:"endpoint,omitempty"`
	SplitRanges int      `json:"split_ranges"`
	SplitKeys   []string `json:"split_keys,omitempty"`
	PrefixKeys  int      `json:"prefix_keys"`
	KeySize     int      `json:"key_size"`
	ValueSize   int      `json:"val_size"`
	KeySpace    int      `json:"key_space"`
	ReadRatio   float64  `json:"read_ratio"`
	Watchers    int      `json:"watchers"`
	// TLS and Auth: both clusters ran with client and peer mutual TLS, and
	// with auth (clients as root with a token).
	TLS  bool `json:"tls,omitempty"`
	Auth bool `json:"auth,omitempty"`
}

// SystemInfo describes one system under test.
type SystemInfo struct {
	Name      string   `json:"name"`
	Bin       string   `json:"bin,omitempty"`
	Version   string   `json:"version,omitempty"`
	Endpoints []string `json:"endpoints,omitempty"`
	// Skipped says why the system was not measured.
	Skipped string `json:"skipped,omitempty"`
}

// CaseReport holds one case's runs and their summary per op.
type CaseReport struct {
	Name     string         `json:"name"`
	Workload string         `json:"workload"`
	Describe string         `json:"describe"`
	Params   map[string]any `json:"params,omitempty"`
	Ops      []*OpCompare   `json:"ops"`
	// Runs are every round's results, in the order they ran.
	Runs []*bench.Result `json:"runs"`
	// Loads are the machine's 1-minute load averages around each run, in
	// the same order.
	Loads []RunLoad `json:"loads"`
}

// RunLoad is the load average before and after one run.
type RunLoad struct {
	System string  `json:"system"`
	Round  int     `json:"round"`
	Before float64 `json:"load1_before"`
	After  float64 `json:"load1_after"`
	// CPUSeconds is the CPU time (user + system) all the system's server
	// processes used during the run, from /proc/PID/stat; -1 when unknown.
	CPUSeconds float64 `json:"cpu_s"`
}

// loadRange returns the lowest and highest load average seen around runs.
func (r *Report) loadRange() (lo, hi float64, ok bool) {
	lo = math.Inf(1)
	for _, c := range r.Cases {
		for _, l := range c.Loads {
			for _, v := range []float64{l.Before, l.After} {
				if v >= 0 {
					lo, hi, ok = min(lo, v), max(hi, v), true
				}
			}
		}
	}
	return lo, hi, ok
}

// OpCompare sets one op's figures on each system side by side.
type OpCompare struct {
	Op      string   `json:"op"`
	Etcd    *Figures `json:"etcd,omitempty"`
	Tessera *Figures `json:"tessera,omitempty"`
	// Ratio is Tessera/etcd for each figure (absent when either is).
	Ratio *Ratios `json:"ratio,omitempty"`
}

// Figures are one op's numbers on one system, over all its rounds: the
// histograms merged, throughput as total count over total time.
type Figures struct {
	Count      int64                `json:"count"`
	Errors     int64                `json:"errors"`
	Throughput float64              `json:"throughput"`
	Latency    bench.LatencySummary `json:"latency_ms"`
	// RoundThroughput is each round's throughput, to judge the noise.
	RoundThroughput []float64 `json:"round_throughput"`
}

// Ratios are Tessera/etcd: above 1 is better for throughput, worse for
// latency.
type Ratios struct {
	Throughput float64 `json:"throughput"`
	P50        float64 `json:"p50"`
	P90        float64 `json:"p90"`
	P99        float64 `json:"p99"`
	P999       float64 `json:"p99_9"`
	Max        float64 `json:"max"`
}

// summarise fills Ops from Runs.
func (cr *CaseReport) summarise() {
	type acc struct {
		hist    *bench.Histogram
		count   int64
		errors  int64
		seconds float64
		rounds  []float64
	}
	accs := map[string]map[string]*acc{} // op → system → acc
	for _, r := range cr.Runs {
		for _, o := range r.Ops {
			if accs[o.Name] == nil {
				accs[o.Name] = map[string]*acc{}
			}
			a := accs[o.Name][r.System]
			if a == nil {
				a = &acc{hist: bench.NewHistogram()}
				accs[o.Name][r.System] = a
			}
			a.hist.Merge(o.Histogram())
			a.count += o.Count
			a.errors += o.Errors
			secs := float64(r.Elapsed)
			if o.Throughput > 0 {
				secs = float64(o.Count) / o.Throughput
			}
			a.seconds += secs
			a.rounds = append(a.rounds, o.Throughput)
		}
	}
	cr.Ops = nil
	for _, op := range slices.Sorted(maps.Keys(accs)) {
		oc := &OpCompare{Op: op}
		fig := func(a *acc) *Figures {
			if a == nil {
				return nil
			}
			f := &Figures{Count: a.count, Errors: a.errors, Latency: a.hist.Summary(), RoundThroughput: a.rounds}
			if a.seconds > 0 {
				f.Throughput = float64(a.count) / a.seconds
			}
			return f
		}
		oc.Etcd = fig(accs[op][Etcd])
		oc.Tessera = fig(accs[op][Tessera])
		if oc.Etcd != nil && oc.Tessera != nil {
			e, t := oc.Etcd, oc.Tessera
			oc.Ratio = &Ratios{
				Throughput: ratio(t.Throughput, e.Throughput),
				P50:        ratio(t.Latency.P50, e.Latency.P50),
				P90:        ratio(t.Latency.P90, e.Latency.P90),
				P99:        ratio(t.Latency.P99, e.Latency.P99),
				P999:       ratio(t.Latency.P999, e.Latency.P999),
				Max:        ratio(t.Latency.Max, e.Latency.Max),
			}
		}
		cr.Ops = append(cr.Ops, oc)
	}
}

// ratio is t/e, or 0 when e is 0 (printed as "-").
func ratio(t, e float64) float64 {
	if e == 0 {
		return 0
	}
	return t / e
}

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("compare: write json: %w", err)
	}
	return nil
}

// WriteTable writes the report for a person: the machine and settings, then
// per case and op one row per system and a row of Tessera/etcd ratios.
func (r *Report) WriteTable(w io.Writer) error {
	var b strings.Builder
	m := r.Machine
	fmt.Fprintf(&b, "machine: %s, %d cpus, %s memory, %s; data on %s (%s)\n",
		m.CPU, m.CPUs, m.Memory, m.OS, m.DataDevice, m.DataFS)
	s := r.Settings
	run := fmt.Sprintf("%gs", float64(s.Duration))
	if s.Total > 0 {
		run = fmt.Sprintf("%d requests", s.Total)
	}
	loop := "closed loop"
	if s.Rate > 0 {
		loop = fmt.Sprintf("open loop at %g req/s", s.Rate)
	}
	fmt.Fprintf(&b, "settings: %d nodes each, %d clients on %d conns, %s, %s per run, %d rounds (A B A B…), key %dB, value %dB\n",
		s.Nodes, s.Clients, s.Conns, loop, run, s.Rounds, s.KeySize, s.ValueSize)
	if s.Endpoint > 0 {
		fmt.Fprintf(&b, "clients sent every request to member %d of each cluster\n", s.Endpoint)
	}
	if s.TLS || s.Auth {
		fmt.Fprintf(&b, "both clusters with: client and peer mutual TLS %v, auth (root, simple token) %v\n", s.TLS, s.Auth)
	}
	if lo, hi, ok := r.loadRange(); ok {
		fmt.Fprintf(&b, "load average (1 min) around the runs: %.2f to %.2f on %d cpus\n", lo, hi, m.CPUs)
	}
	for _, sys := range r.Systems {
		if sys.Skipped != "" {
			fmt.Fprintf(&b, "%s: not measured (%s)\n", sys.Name, firstLine(sys.Skipped))
			continue
		}
		if sys.Version == "" {
			fmt.Fprintf(&b, "%s: %s\n", sys.Name, sys.Bin)
			continue
		}
		fmt.Fprintf(&b, "%s: %s (%s)\n", sys.Name, sys.Bin, sys.Version)
	}
	b.WriteString("\n")
	// Without Tessera the table is etcd's alone, not rows of dashes.
	withTessera := false
	for _, sys := range r.Systems {
		if sys.Name == Tessera && sys.Skipped == "" {
			withTessera = true
		}
	}

	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "case\top\tsystem\tops/s\tp50 ms\tp90 ms\tp99 ms\tp99.9 ms\tmax ms\terrors\tops/s by round\t")
	for _, c := range r.Cases {
		for i, o := range c.Ops {
			name := c.Name
			if i > 0 {
				name = ""
			}
			row := func(label, sys string, f *Figures) {
				if f == nil {
					fmt.Fprintf(tw, "%s\t%s\t%s\t-\t-\t-\t-\t-\t-\t-\t\t\n", label, o.Op, sys)
					return
				}
				var rounds []string
				for _, t := range f.RoundThroughput {
					rounds = append(rounds, fmt.Sprintf("%.0f", t))
				}
				l := f.Latency
				fmt.Fprintf(tw, "%s\t%s\t%s\t%.1f\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t\n", label, o.Op, sys, f.Throughput,
					bench.FormatMs(l.P50), bench.FormatMs(l.P90), bench.FormatMs(l.P99), bench.FormatMs(l.P999),
					bench.FormatMs(l.Max), f.Errors, strings.Join(rounds, " "))
			}
			row(name, Etcd, o.Etcd)
			if !withTessera {
				continue
			}
			row("", Tessera, o.Tessera)
			if q := o.Ratio; q != nil {
				fmt.Fprintf(tw, "\t%s\ttessera/etcd\t%s\t%s\t%s\t%s\t%s\t%s\t\t\t\n", o.Op,
					fmtRatio(q.Throughput), fmtRatio(q.P50), fmtRatio(q.P90), fmtRatio(q.P99), fmtRatio(q.P999), fmtRatio(q.Max))
			} else {
				fmt.Fprintf(tw, "\t%s\ttessera/etcd\t-\t-\t-\t-\t-\t-\t\t\t\n", o.Op)
			}
		}
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("compare: write table: %w", err)
	}
	if withTessera {
		b.WriteString("\nratios are Tessera/etcd: above 1 is better for ops/s, worse for latency.\n")
	}
	for _, c := range r.Cases {
		var errs []string
		for _, run := range c.Runs {
			for k, n := range run.Errors {
				errs = append(errs, fmt.Sprintf("%s: %d× %s", run.System, n, k))
			}
			for _, n := range run.Notes {
				errs = append(errs, fmt.Sprintf("%s: note: %s", run.System, n))
			}
		}
		if len(errs) > 0 {
			slices.Sort(errs)
			errs = slices.Compact(errs)
			fmt.Fprintf(&b, "%s errors:\n  %s\n", c.Name, strings.Join(errs, "\n  "))
		}
	}
	r.writeCPU(&b)
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "note: %s\n", n)
	}
	if _, err := io.WriteString(w, trimLines(b.String())); err != nil {
		return fmt.Errorf("compare: write table: %w", err)
	}
	return nil
}

func fmtRatio(v float64) string {
	if v == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2fx", v)
}

// trimLines drops the trailing blanks tabwriter leaves on each line.
func trimLines(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = strings.TrimRight(l, " ")
	}
	return strings.Join(lines, "\n")
}

// CPUPer1k returns the CPU-seconds of all a system's servers per 1,000
// successful requests of a case (all rounds together), or -1 when unknown.
func (cr *CaseReport) CPUPer1k(system string) float64 {
	cpu, ops := 0.0, int64(0)
	for i, run := range cr.Runs {
		if run.System != system || i >= len(cr.Loads) {
			continue
		}
		if cr.Loads[i].CPUSeconds <= 0 { // unknown (or a report from before it was measured)
			return -1
		}
		cpu += cr.Loads[i].CPUSeconds
		for _, o := range run.Ops {
			ops += o.Count
		}
	}
	if ops == 0 {
		return -1
	}
	return cpu / float64(ops) * 1000
}

// writeCPU writes each case's CPU-seconds per 1,000 requests.
func (r *Report) writeCPU(b *strings.Builder) {
	var lines []string
	for _, c := range r.Cases {
		e, t := c.CPUPer1k(Etcd), c.CPUPer1k(Tessera)
		if e < 0 {
			continue
		}
		line := fmt.Sprintf("  %s: etcd %.3f", c.Name, e)
		if t >= 0 && r.measured(Tessera) {
			line += fmt.Sprintf(", tessera %.3f, tessera/etcd %s", t, fmtRatio(ratio(t, e)))
		}
		lines = append(lines, line)
	}
	if len(lines) > 0 {
		fmt.Fprintf(b, "CPU-seconds of all servers per 1,000 requests (/proc/PID/stat utime+stime around each run):\n%s\n", strings.Join(lines, "\n"))
	}
}

// measured reports whether the named system ran.
func (r *Report) measured(name string) bool {
	for _, s := range r.Systems {
		if s.Name == name {
			return s.Skipped == ""
		}
	}
	return false
}
