package bench

import (
	"testing"
	"time"
)

func TestRunConfigValidate(t *testing.T) {
	ok := DefaultRunConfig()
	if err := ok.Validate(); err != nil {
		t.Fatalf("default config: %v", err)
	}
	for name, mut := range map[string]func(*RunConfig){
		"no endpoints":      func(c *RunConfig) { c.Endpoints = nil },
		"no conns":          func(c *RunConfig) { c.Conns = 0 },
		"no clients":        func(c *RunConfig) { c.Clients = 0 },
		"negative total":    func(c *RunConfig) { c.Total = -1 },
		"no bound":          func(c *RunConfig) { c.Total, c.Duration = 0, 0 },
		"negative rate":     func(c *RunConfig) { c.Rate = -1 },
		"no timeout":        func(c *RunConfig) { c.Timeout = 0 },
		"negative max lag":  func(c *RunConfig) { c.MaxLag = -time.Second },
		"negative duration": func(c *RunConfig) { c.Duration = -time.Second },
	} {
		c := DefaultRunConfig()
		mut(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestWorkloadConfigValidate(t *testing.T) {
	for _, name := range WorkloadNames() {
		if err := DefaultWorkloadConfig().Validate(name); err != nil {
			t.Errorf("%s: default config refused: %v", name, err)
		}
	}
	for name, tc := range map[string]struct {
		workload string
		mut      func(*WorkloadConfig)
	}{
		"unknown workload":    {"nope", func(*WorkloadConfig) {}},
		"key too small":       {"put", func(c *WorkloadConfig) { c.KeySize = 12 }},
		"read ratio":          {"mixed", func(c *WorkloadConfig) { c.ReadRatio = 1.5 }},
		"watch needs stamp":   {"watch", func(c *WorkloadConfig) { c.ValueSize = 8 }},
		"watch no watchers":   {"watch", func(c *WorkloadConfig) { c.Watchers = 0 }},
		"bad consistency":     {"range", func(c *WorkloadConfig) { c.Consistency = "x" }},
		"lease ttl":           {"lease-keepalive", func(c *WorkloadConfig) { c.LeaseTTL = 0 }},
		"range key too small": {"range", func(c *WorkloadConfig) { c.KeySize = 23 }},
		"prefix keys vs key":  {"range", func(c *WorkloadConfig) { c.KeySize = 27; c.PrefixKeys = 100000 }},
	} {
		c := DefaultWorkloadConfig()
		tc.mut(&c)
		if err := c.Validate(tc.workload); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestParseConsistency(t *testing.T) {
	for in, want := range map[string]Consistency{"l": Linearizable, "Linearizable": Linearizable, "s": Serializable, "serializable": Serializable} {
		if got, err := ParseConsistency(in); err != nil || got != want {
			t.Errorf("ParseConsistency(%q) = %q, %v", in, got, err)
		}
	}
	if _, err := ParseConsistency("eventual"); err == nil {
		t.Error("eventual accepted")
	}
}
