package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tesseradb/tessera/cmd/tessbench/internal/bench"
	"github.com/tesseradb/tessera/cmd/tessbench/internal/benchtest"
)

func runCLI(t *testing.T, tty bool, args ...string) (string, string, error) {
	t.Helper()
	var out, errw bytes.Buffer
	cmd := newRootCmd(&out, &errw, tty)
	cmd.SetArgs(args)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	err := cmd.ExecuteContext(ctx)
	return out.String(), errw.String(), err
}

func TestHelpListsWorkloads(t *testing.T) {
	out, _, err := runCLI(t, false, "--help")
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range append(bench.WorkloadNames(), "compare") {
		if !strings.Contains(out, "\n  "+w+" ") {
			t.Errorf("help does not list %s:\n%s", w, out)
		}
	}
}

func TestBadFlagsFailBeforeConnecting(t *testing.T) {
	for _, args := range [][]string{
		{"range", "--consistency", "eventual"},
		{"put", "--clients", "0"},
		{"put", "--key-size", "8"},
		{"mixed", "--read-ratio", "2"},
		{"put", "--log-level", "loud"},
		{"compare", "--cases", "nope"},
		{"put", "extra-arg"},
	} {
		// An endpoint nobody listens on: a failure to connect would also be
		// an error, but a slower one; the dial timeout keeps it bounded.
		args = append(args, "--endpoints", "127.0.0.1:1", "--dial-timeout", "100ms")
		if _, _, err := runCLI(t, false, args...); err == nil {
			t.Errorf("%v: accepted", args)
		}
	}
}

func TestWorkloadJSONAgainstEtcd(t *testing.T) {
	c := benchtest.StartEtcd(t, 1)
	ep := strings.Join(c.Endpoints(), ",")
	out, _, err := runCLI(t, false, "put", "--endpoints", ep, "--total", "50", "--clients", "2", "--json")
	if err != nil {
		t.Fatal(err)
	}
	res, err := bench.ReadJSON(strings.NewReader(out))
	if err != nil {
		t.Fatalf("output is not a result: %v\n%s", err, out)
	}
	if res.Workload != "put" || res.Op("put") == nil || res.Op("put").Count != 50 || res.Clients != 2 {
		t.Errorf("result %+v", res)
	}

	// A terminal gets a progress bar and then the table; --json-file keeps
	// the JSON too.
	jf := t.TempDir() + "/range.json"
	out, _, err = runCLI(t, true, "range", "--endpoints", ep, "--total", "50", "--key-space", "20", "--consistency", "s", "--json-file", jf)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "range: 16 clients on 1 conns, closed loop") || !strings.Contains(out, "consistency=s") {
		t.Errorf("table missing:\n%s", out)
	}

	f, err := os.Open(jf)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if res, err := bench.ReadJSON(f); err != nil || res.Op("range").Count != 50 {
		t.Errorf("json file: %v, %v", res, err)
	}

	// --duration runs for about that long.
	start := time.Now()
	out, _, err = runCLI(t, true, "lease-keepalive", "--endpoints", ep, "--duration", "300ms", "--clients", "2")
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Errorf("a 300ms run returned after %s", d)
	}
	if !strings.Contains(out, "lease-keepalive") || !strings.Contains(out, "errors: none") {
		t.Errorf("table:\n%s", out)
	}
}
