package compare

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tesseradb/tessera/cmd/tessbench/internal/benchtest"
)

func quickConfig(t *testing.T) Config {
	cfg := DefaultConfig()
	cfg.Nodes = 1 // one member each keeps the test light on two cores
	cfg.DataRoot = t.TempDir()
	cfg.InstallEtcd = false
	cfg.Run.Duration, cfg.Run.Total = 0, 60
	cfg.Run.Clients = 4
	cfg.PrefixKeys = 40
	cfg.Workload.KeySpace = 100
	cfg.Workload.Watchers = 2
	cfg.StartTimeout = 30 * time.Second
	return cfg
}

// fakeTessera writes a stand-in for the tessera binary: it records the
// --initial-split-keys it was given and runs etcd with the other flags,
// which are etcd's. It lets the test walk the two-system path for real.
func fakeTessera(t *testing.T, etcd string) (bin, splitFile string) {
	dir := t.TempDir()
	bin = filepath.Join(dir, "tessera")
	splitFile = filepath.Join(dir, "split-keys")
	script := `#!/bin/bash
args=()
while (($#)); do
  if [[ $1 == --initial-split-keys ]]; then echo "$2" >> ` + splitFile + `; shift 2; continue; fi
  args+=("$1"); shift
done
exec ` + etcd + ` "${args[@]}"
`
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return bin, splitFile
}

func TestCompareAgainstTwoSystems(t *testing.T) {
	etcd := benchtest.EtcdBin(t)
	if _, err := os.Stat("/bin/bash"); err != nil {
		t.Skip("no bash for the stand-in tessera")
	}
	cfg := quickConfig(t)
	tbin, splitFile := fakeTessera(t, etcd)
	cfg.TesseraBin = tbin
	cfg.Cases = []string{"put", "range-prefix", "watch"}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rep, err := Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Systems) != 2 || rep.Systems[1].Skipped != "" {
		t.Fatalf("systems %+v, want both measured", rep.Systems)
	}
	if len(rep.Cases) != 3 {
		t.Fatalf("%d cases, want 3", len(rep.Cases))
	}
	for _, c := range rep.Cases {
		// A B A B: each round runs etcd, then tessera.
		var order []string
		for _, r := range c.Runs {
			order = append(order, r.System)
			if len(r.Errors) != 0 {
				t.Errorf("%s on %s: errors %v", c.Name, r.System, r.Errors)
			}
		}
		if strings.Join(order, " ") != "etcd tessera etcd tessera" {
			t.Errorf("%s ran %v, want etcd tessera etcd tessera", c.Name, order)
		}
		for _, o := range c.Ops {
			if o.Ratio == nil || o.Ratio.Throughput <= 0 {
				t.Errorf("%s/%s: no ratio: %+v", c.Name, o.Op, o)
			}
		}
	}
	if c := rep.Cases[2]; c.Runs[1].Clients != 1 {
		t.Errorf("watch case ran %d putters, want 1", c.Runs[1].Clients)
	}
	b, err := os.ReadFile(splitFile)
	if err != nil {
		t.Fatal(err)
	}
	want := "tessbench/range/prefix/000000010,tessbench/range/prefix/000000020,tessbench/range/prefix/000000030"
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if line != want {
			t.Errorf("tessera got --initial-split-keys %q, want %q", line, want)
		}
	}
	assertEmpty(t, cfg.DataRoot)
}

func TestCompareWithoutTessera(t *testing.T) {
	benchtest.EtcdBin(t)
	cfg := quickConfig(t)
	cfg.TesseraBin = filepath.Join(t.TempDir(), "no-tessera-here")
	cfg.Cases = []string{"range-s"}
	cfg.Rounds = 1
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rep, err := Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Systems[1].Skipped == "" || len(rep.Notes) == 0 || !strings.Contains(rep.Notes[0], "measuring etcd alone") {
		t.Errorf("no word about the missing tessera: %+v %v", rep.Systems, rep.Notes)
	}
	o := rep.Cases[0].Ops[0]
	if o.Etcd == nil || o.Etcd.Count != 60 || o.Tessera != nil {
		t.Errorf("figures %+v, want etcd's only", o)
	}
	assertEmpty(t, cfg.DataRoot)
}

func TestCompareWithFailingTessera(t *testing.T) {
	benchtest.EtcdBin(t)
	cfg := quickConfig(t)
	bin := filepath.Join(t.TempDir(), "tessera")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\necho 'tessera: not built yet' >&2\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg.TesseraBin = bin
	cfg.Cases = []string{"put"}
	cfg.Rounds = 1
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rep, err := Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(rep.Systems[1].Skipped, "tessera: not built yet") {
		t.Errorf("skip reason %q does not carry the server's words", rep.Systems[1].Skipped)
	}
	if rep.Cases[0].Ops[0].Etcd == nil {
		t.Error("etcd was not measured")
	}
	assertEmpty(t, cfg.DataRoot)
}

// assertEmpty checks that compare removed everything it put under root.
func assertEmpty(t *testing.T, root string) {
	t.Helper()
	ents, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		t.Errorf("left behind: %s", filepath.Join(root, e.Name()))
	}
}

// TestCompareTLSAuth: with TLS and Auth both clusters serve https with
// client certificates required and auth enabled, and the runs (as root,
// with a certificate) complete without errors; the report says so.
func TestCompareTLSAuth(t *testing.T) {
	etcd := benchtest.EtcdBin(t)
	if _, err := os.Stat("/bin/bash"); err != nil {
		t.Skip("no bash for the stand-in tessera")
	}
	cfg := quickConfig(t)
	cfg.TesseraBin, _ = fakeTessera(t, etcd)
	cfg.Cases, cfg.Rounds = []string{"put"}, 1
	cfg.TLS, cfg.Auth = true, true
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rep, err := Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Settings.TLS || !rep.Settings.Auth {
		t.Errorf("settings %+v: want TLS and auth recorded", rep.Settings)
	}
	if len(rep.Systems) != 2 || rep.Systems[1].Skipped != "" {
		t.Fatalf("systems %+v, want both measured", rep.Systems)
	}
	for _, s := range rep.Systems {
		for _, ep := range s.Endpoints {
			if !strings.HasPrefix(ep, "https://") {
				t.Errorf("%s endpoint %s is not https", s.Name, ep)
			}
		}
	}
	for _, r := range rep.Cases[0].Runs {
		if len(r.Errors) != 0 || r.Ops[0].Count == 0 {
			t.Errorf("%s: %d requests, errors %v", r.System, r.Ops[0].Count, r.Errors)
		}
	}
	assertEmpty(t, cfg.DataRoot)
}
