package compare

import (
	"fmt"
	"strings"

	"github.com/tesseradb/tessera/cmd/tessbench/internal/bench"
)

// Case is one named workload configuration of a comparison.
type Case struct {
	// Name labels the case in reports.
	Name string
	// Workload is the bench workload it runs.
	Workload string
	// Describe says in a few words what it measures.
	Describe string
	// adjust derives the case's settings from the comparison's.
	adjust func(run *bench.RunConfig, wl *bench.WorkloadConfig, cfg Config)
}

// Cases lists every case, in the order compare runs them.
var Cases = []Case{
	{Name: "put", Workload: "put", Describe: "put to random keys",
		adjust: func(*bench.RunConfig, *bench.WorkloadConfig, Config) {}},
	{Name: "range-l", Workload: "range", Describe: "linearizable get of one random key",
		adjust: func(_ *bench.RunConfig, wl *bench.WorkloadConfig, _ Config) { wl.Consistency = bench.Linearizable }},
	{Name: "range-s", Workload: "range", Describe: "serializable get of one random key",
		adjust: func(_ *bench.RunConfig, wl *bench.WorkloadConfig, _ Config) { wl.Consistency = bench.Serializable }},
	{Name: "range-prefix", Workload: "range", Describe: "linearizable range over a prefix of --prefix-keys keys (cut into --split-ranges ranges on Tessera)",
		adjust: func(_ *bench.RunConfig, wl *bench.WorkloadConfig, cfg Config) {
			wl.Consistency = bench.Linearizable
			wl.PrefixKeys = cfg.PrefixKeys
		}},
	{Name: "txn-put", Workload: "txn-put", Describe: "compare-and-swap on mod revision",
		adjust: func(*bench.RunConfig, *bench.WorkloadConfig, Config) {}},
	{Name: "watch", Workload: "watch", Describe: "one putter, --watchers watchers on its prefix: put→event latency",
		adjust: func(run *bench.RunConfig, _ *bench.WorkloadConfig, _ Config) { run.Clients = 1 }},
	{Name: "lease-keepalive", Workload: "lease-keepalive", Describe: "keep-alive of one lease per client",
		adjust: func(*bench.RunConfig, *bench.WorkloadConfig, Config) {}},
	{Name: "mixed", Workload: "mixed", Describe: "--read-ratio linearizable gets, the rest puts",
		adjust: func(_ *bench.RunConfig, wl *bench.WorkloadConfig, _ Config) { wl.Consistency = bench.Linearizable }},
}

// CaseNames lists the names of Cases.
func CaseNames() []string {
	var names []string
	for _, c := range Cases {
		names = append(names, c.Name)
	}
	return names
}

// selectCases returns the named cases in Cases order; no names means all.
func selectCases(names []string) ([]Case, error) {
	if len(names) == 0 {
		return Cases, nil
	}
	want := map[string]bool{}
	for _, n := range names {
		want[strings.TrimSpace(n)] = true
	}
	var out []Case
	for _, c := range Cases {
		if want[c.Name] {
			out = append(out, c)
			delete(want, c.Name)
		}
	}
	for n := range want {
		return nil, fmt.Errorf("compare: unknown case %q (want some of %s)", n, strings.Join(CaseNames(), ", "))
	}
	return out, nil
}
