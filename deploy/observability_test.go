package deploy_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/tesseradb/tessera/tests/promcheck"
)

// promtool returns Debian's promtool (package prometheus; .ci/run installs
// it), or skips.
func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not installed (apt-get install prometheus; .ci/run does): Prometheus config, rules and dashboard queries are not checked")
	}
	return p
}

// TestPrometheusConfigAndRules runs promtool check config, check rules and
// test rules (the alerts' unit tests) on deploy/prometheus.
func TestPrometheusConfigAndRules(t *testing.T) {
	pt := promtool(t)
	rules, err := filepath.Glob("prometheus/rules/*.rules.yml")
	if err != nil || len(rules) == 0 {
		t.Fatalf("no rule files (%v)", err)
	}
	// Unit tests of the alerts: each fires on the series that mean it.
	tests, err := filepath.Glob("prometheus/rules/*.test.yml")
	if err != nil || len(tests) == 0 {
		t.Fatalf("no rule unit tests (%v)", err)
	}
	for _, args := range [][]string{
		{"check", "config", "prometheus/prometheus.yml"},
		append([]string{"check", "rules"}, rules...),
		append([]string{"test", "rules"}, tests...),
	} {
		if out, err := exec.Command(pt, args...).CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// dashboardVars are values that select everything, for checking queries.
var dashboardVars = map[string]string{"job": ".*tessera.*", "instance": ".+", "datasource": "prometheus"}

// TestDashboards checks every dashboard: templated datasource, job and
// instance variables, every panel on the datasource variable, and every
// query valid PromQL (promtool parses them as recording rules).
func TestDashboards(t *testing.T) {
	files, err := filepath.Glob("grafana/*.json")
	if err != nil || len(files) < 6 {
		t.Fatalf("want the six dashboards in deploy/grafana, have %v (%v)", files, err)
	}
	var rules []map[string]string
	cluster, total := 0, 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		d, err := promcheck.ParseDashboard(b)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		vars := map[string]string{}
		for _, v := range d.Variables {
			vars[v.Name] = v.Type
		}
		if vars["datasource"] != "datasource" || vars["instance"] != "query" || vars["job"] != "query" {
			t.Errorf("%s: want template variables datasource (datasource), job and instance (query); have %v", f, vars)
		}
		if bytes.Count(b, []byte(`"uid": "${datasource}"`)) == 0 || bytes.Contains(b, []byte(`"uid": "prometheus"`)) {
			t.Errorf("%s: panels must use the datasource variable", f)
		}
		if len(d.Exprs) == 0 {
			t.Errorf("%s: no queries", f)
		}
		total += len(d.Exprs)
		for i, e := range d.Exprs {
			if !strings.Contains(e.Expr, `job=~"$job"`) {
				t.Errorf("%s: %s: query does not select $job: %s", f, e.Where, e.Expr)
			}
			if strings.Contains(e.Expr, `job=~"$job"}`) || strings.Contains(e.Expr, `job=~"$job",state`) {
				cluster++ // a cluster-wide query (ignores $instance on purpose)
			}
			rules = append(rules, map[string]string{
				"record": fmt.Sprintf("dashboard:query_%d_%d:check", len(rules), i),
				"expr":   promcheck.Substitute(e.Expr, dashboardVars, "5m"),
			})
		}
	}
	if cluster > 5 || cluster*10 > total {
		t.Errorf("%d of %d queries ignore $instance: only cluster-wide counts should", cluster, total)
	}
	pt := promtool(t)
	b, err := yaml.Marshal(map[string]any{"groups": []any{map[string]any{"name": "dashboards", "rules": rules}}})
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "dashboards.yml")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(pt, "check", "rules", p).CombinedOutput(); err != nil {
		t.Errorf("promtool check rules on the dashboards' queries: %v\n%s", err, out)
	}
}

// TestDashboardsGenerated checks that deploy/grafana holds what
// deploy/grafana/gen writes (run `go run ./deploy/grafana/gen` after
// editing it).
func TestDashboardsGenerated(t *testing.T) {
	dir := t.TempDir()
	if out, err := exec.Command("go", "run", "./grafana/gen", "-out", dir).CombinedOutput(); err != nil {
		t.Fatalf("go run ./deploy/grafana/gen: %v\n%s", err, out)
	}
	gen, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	have, _ := filepath.Glob("grafana/*.json")
	if len(gen) != len(have) {
		t.Errorf("gen writes %d dashboards, deploy/grafana has %d", len(gen), len(have))
	}
	for _, g := range gen {
		want, _ := os.ReadFile(g)
		got, err := os.ReadFile(filepath.Join("grafana", filepath.Base(g)))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("deploy/grafana/%s is not what gen writes: run go run ./deploy/grafana/gen (%v)", filepath.Base(g), err)
		}
	}
}
