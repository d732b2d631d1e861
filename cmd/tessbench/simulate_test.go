package main

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestSimulateSmall(t *testing.T) {
	out, _, err := runCLI(t, false, "simulate", "--nodes", "6", "--ranges", "300", "--add-nodes", "1", "--kill-nodes", "1", "--sample-every", "1m")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"add 1 nodes (6 -> 7)", "kill [n2] for good", "REPLICAS ±%", "wall time"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, " NO ") {
		t.Errorf("a phase did not converge:\n%s", out)
	}
	out, _, err = runCLI(t, false, "simulate", "--nodes", "6", "--ranges", "300", "--add-nodes", "1", "--kill-nodes", "0", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var rep struct {
		Phases []struct {
			Name      string         `json:"name"`
			Converged bool           `json:"converged"`
			Ops       map[string]int `json:"ops"`
		} `json:"phases"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v:\n%s", err, out)
	}
	if len(rep.Phases) != 2 || !rep.Phases[1].Converged || rep.Phases[1].Ops["move"] == 0 {
		t.Fatalf("JSON report %+v", rep)
	}
}

func TestSimulateBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"simulate", "--snapshot-rate", "fast"},
		{"simulate", "--mean-range-size", "-1"},
		{"simulate", "--nodes", "2"},
		{"simulate", "--moves-per-node", "0"},
	} {
		if _, _, err := runCLI(t, false, args...); err == nil {
			t.Errorf("%v: accepted", args)
		}
	}
}
