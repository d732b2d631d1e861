package system_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-jsonnet"
	clientv3 "go.etcd.io/etcd/client/v3"
	"sigs.k8s.io/yaml"

	"github.com/tesseradb/tessera/tests/promcheck"
)

// Timeouts of the observability test.
const (
	promStartTimeout = 60 * time.Second // Prometheus serves and scrapes every node
	ruleEvalTimeout  = 60 * time.Second // every rule has been evaluated
	mixinTimeout     = 3 * time.Minute  // download of etcd's module
)

// promJob is the job name the test's Prometheus scrapes the cluster as; the
// rules and dashboards select job=~".*tessera.*".
const promJob = "tessera"

// repoRoot is the repository's root (this file is in tests/system).
func repoRoot(t *testing.T) string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("no caller information")
	}
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// TestDashboardsAndAlertsAgainstPrometheus starts Debian's prometheus
// scraping a three-node cluster under a small load, loads Tessera's alert
// rules and etcd's mixin alerts, then evaluates every query of every panel
// of every dashboard (Tessera's and etcd's mixin dashboard) through
// Prometheus' HTTP API, and checks that every rule evaluates without error.
// It lists every query that returns no data.
func TestDashboardsAndAlertsAgainstPrometheus(t *testing.T) {
	promBin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Skip("prometheus not installed (apt-get install prometheus; .ci/run does): dashboards and alerts are not evaluated")
	}
	root := repoRoot(t)
	dir := t.TempDir()

	// Tessera's dashboards and rules, and etcd's mixin when it can be had.
	type source struct {
		name  string
		exprs []promcheck.Expr
		vars  map[string]string
	}
	var sources []source
	tesseraVars := map[string]string{"job": ".*tessera.*", "instance": ".+", "datasource": "prometheus"}
	files, _ := filepath.Glob(filepath.Join(root, "deploy/grafana/*.json"))
	if len(files) == 0 {
		t.Fatal("no dashboards in deploy/grafana")
	}
	for _, f := range files {
		d, err := promcheck.ParseDashboardFile(f)
		if err != nil {
			t.Fatal(err)
		}
		sources = append(sources, source{name: filepath.Base(f), exprs: d.Exprs, vars: tesseraVars})
	}
	ruleFiles, _ := filepath.Glob(filepath.Join(root, "deploy/prometheus/rules/*.rules.yml"))
	mixinDashboards, mixinAlerts, why := renderEtcdMixin(t, dir)
	if why != "" {
		t.Logf("etcd's mixin is not checked: %s", why)
	} else {
		p := filepath.Join(dir, "etcd-mixin-alerts.yml")
		if err := os.WriteFile(p, mixinAlerts, 0o644); err != nil {
			t.Fatal(err)
		}
		ruleFiles = append(ruleFiles, p)
		for name, b := range mixinDashboards {
			d, err := promcheck.ParseDashboard(b)
			if err != nil {
				t.Fatalf("etcd mixin %s: %v", name, err)
			}
			sources = append(sources, source{name: "etcd mixin " + name, exprs: d.Exprs,
				vars: map[string]string{"cluster": promJob, "datasource": "prometheus"}})
		}
	}
	var rules []promcheck.Expr
	for _, f := range ruleFiles {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		exprs, err := promcheck.ParseRules(filepath.Base(f), b)
		if err != nil {
			t.Fatal(err)
		}
		rules = append(rules, exprs...)
	}

	c := newCluster(t, clusterConfig{nodes: 3, splitKeys: []string{"g", "n", "t"}})
	load := startLoad(t, c.client())
	defer load.stop()

	prom := startPrometheus(t, promBin, dir, c, ruleFiles)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	// Wait until every node has been scraped a few times after the load
	// began, so that rate() has two samples in its window.
	waitFor(t, promStartTimeout, "prometheus scrapes every node", func() error {
		r, err := prom.Query(ctx, fmt.Sprintf(`count(count_over_time(up{job=%q}[1m]) >= 5)`, promJob))
		if err != nil {
			return err
		}
		if r.Samples != 1 {
			return fmt.Errorf("not yet five scrapes of the nodes")
		}
		r, err = prom.Query(ctx, fmt.Sprintf(`sum(up{job=%q})`, promJob))
		if err != nil || r.Samples != 1 {
			return fmt.Errorf("up: %v", err)
		}
		n, err := prom.Query(ctx, fmt.Sprintf(`sum(up{job=%q}) == 3`, promJob))
		if err != nil || n.Samples != 1 {
			return fmt.Errorf("not every node is up in prometheus (%v)", err)
		}
		return nil
	})
	if load.writes() == 0 {
		t.Fatalf("the load wrote nothing: %v", load.lastErr())
	}

	var failures, allNaN []string
	total := 0
	for _, s := range sources {
		for _, e := range s.exprs {
			total++
			q := promcheck.Substitute(e.Expr, s.vars, "1m")
			r, err := prom.Query(ctx, q)
			switch {
			case err != nil:
				failures = append(failures, fmt.Sprintf("%s: %s: %v", s.name, e.Where, err))
			case r.Samples == 0:
				failures = append(failures, fmt.Sprintf("%s: %s: no data: %s", s.name, e.Where, q))
			case r.NaN == r.Samples:
				// Series exist, with no observation in the window (a
				// quantile of an idle histogram): data, shown as a gap.
				allNaN = append(allNaN, fmt.Sprintf("%s: %s", s.name, e.Where))
			}
		}
	}
	for _, e := range rules {
		total++
		if _, err := prom.Query(ctx, e.Expr); err != nil {
			failures = append(failures, fmt.Sprintf("rule %s: %v", e.Where, err))
		}
	}

	// Prometheus evaluates every rule itself: each must have run, healthy.
	waitFor(t, ruleEvalTimeout, "every rule evaluated", func() error {
		got, err := prom.Rules(ctx)
		if err != nil {
			return err
		}
		if len(got) != len(rules) {
			return fmt.Errorf("prometheus has %d rules loaded, the files %d", len(got), len(rules))
		}
		for _, r := range got {
			if !r.Evaluated {
				return fmt.Errorf("rule %s/%s not evaluated yet", r.Group, r.Name)
			}
		}
		return nil
	})
	got, err := prom.Rules(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range got {
		if r.Health != "ok" {
			failures = append(failures, fmt.Sprintf("rule %s/%s: health %s: %s", r.Group, r.Name, r.Health, r.LastError))
		}
	}
	// No alert is active on the healthy cluster; SIGKILL a node, and the
	// alerts that mean it go active (pending: their for clause runs).
	// (Latency alerts are left out: a loaded test machine may be slow.)
	healthy := []string{"TesseraNodeDown", "TesseraNoLeader", "TesseraRangeUnavailable", "TesseraRangeUnderReplicated",
		"TesseraNoSpaceAlarm", "TesseraTSOErrors", "etcdMembersDown", "etcdInsufficientMembers", "etcdNoLeader"}
	for _, a := range activeAlerts(t, ctx, prom) {
		if slices.Contains(healthy, a) {
			failures = append(failures, fmt.Sprintf("alert %s active on a healthy cluster", a))
		}
	}
	victim := c.nodes[2]
	victimHost := strings.TrimPrefix(victim.clientURL, "http://")
	victim.kill()
	want := []string{"TesseraNodeDown", "TesseraRangeUnderReplicated"}
	if why == "" {
		want = append(want, "etcdMembersDown")
	}
	waitFor(t, ruleEvalTimeout, fmt.Sprintf("alerts %v active after %s was killed", want, victim.name), func() error {
		active := activeAlerts(t, ctx, prom)
		for _, w := range want {
			if !slices.Contains(active, w) {
				return fmt.Errorf("%s not active (active: %v)", w, active)
			}
		}
		return nil
	})
	alerts, err := prom.Alerts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range alerts {
		if a.Name == "TesseraNodeDown" && a.Labels["instance"] != victimHost {
			failures = append(failures, fmt.Sprintf("TesseraNodeDown for %s, which runs (killed: %s)", a.Labels["instance"], victimHost))
		}
	}
	t.Logf("%d queries of %d dashboards and %d rules evaluated; %d rules healthy in prometheus", total, len(sources), len(rules), len(got))
	if len(allNaN) > 0 {
		t.Logf("%d queries answer NaN only (histograms without observations in the window under this load):\n  %s", len(allNaN), strings.Join(allNaN, "\n  "))
	}
	if len(failures) > 0 {
		t.Errorf("%d of %d queries and rules fail:\n  %s", len(failures), total, strings.Join(failures, "\n  "))
	}
}

// activeAlerts returns the names of the pending or firing alerts.
func activeAlerts(t *testing.T, ctx context.Context, prom *prometheus) []string {
	t.Helper()
	alerts, err := prom.Alerts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, a := range alerts {
		if !slices.Contains(names, a.Name) {
			names = append(names, a.Name)
		}
	}
	slices.Sort(names)
	return names
}

// grafonnetStub serves the mixin's files, except its grafonnet entry point
// (dashboards/g.libsonnet), which becomes the two query functions the
// mixin's targets use.
type grafonnetStub struct{ files *jsonnet.FileImporter }

const grafonnetQueryStub = `{
  query: { prometheus: {
    new(datasource, expr):: { datasource: datasource, expr: expr },
    withLegendFormat(format):: { legendFormat: format },
  } },
}`

func (g *grafonnetStub) Import(importedFrom, importedPath string) (jsonnet.Contents, string, error) {
	if filepath.Base(importedPath) == "g.libsonnet" && filepath.Base(filepath.Dir(importedFrom)) == "dashboards" {
		return jsonnet.MakeContents(grafonnetQueryStub), filepath.Join(filepath.Dir(importedFrom), "g.libsonnet"), nil
	}
	return g.files.Import(importedFrom, importedPath)
}

// prometheus is a running Prometheus server started by a test.
type prometheus struct {
	*promcheck.Client
}

// startPrometheus runs prom scraping every node of c every second and
// evaluating ruleFiles every second; it is killed when the test ends.
func startPrometheus(t *testing.T, promBin, dir string, c *cluster, ruleFiles []string) *prometheus {
	t.Helper()
	var targets []string
	for _, n := range c.nodes {
		u, err := url.Parse(n.clientURL)
		if err != nil {
			t.Fatal(err)
		}
		targets = append(targets, u.Host)
	}
	cfg := map[string]any{
		"global":     map[string]any{"scrape_interval": "1s", "evaluation_interval": "1s"},
		"rule_files": ruleFiles,
		"scrape_configs": []any{map[string]any{
			"job_name": promJob, "static_configs": []any{map[string]any{"targets": targets}},
		}},
	}
	b, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, b, 0o644); err != nil {
		t.Fatal(err)
	}
	port := freePorts(t, 1)[0]
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	logPath := filepath.Join(dir, "prometheus.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(promBin,
		"--config.file="+cfgPath,
		"--storage.tsdb.path="+filepath.Join(dir, "tsdb"),
		"--web.listen-address="+addr,
		"--log.level=warn",
	)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start prometheus: %v", err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		if t.Failed() {
			if b, err := os.ReadFile(logPath); err == nil {
				t.Logf("--- prometheus log (tail) ---\n%s", tail(b, 4000))
			}
		}
	})
	hc := &http.Client{Timeout: opTimeout}
	t.Cleanup(hc.CloseIdleConnections)
	p := &prometheus{&promcheck.Client{URL: "http://" + addr, HTTP: hc}}
	waitFor(t, promStartTimeout, "prometheus ready", func() error {
		select {
		case <-done:
			return fmt.Errorf("prometheus exited")
		default:
		}
		resp, err := hc.Get(p.URL + "/-/ready")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/-/ready: %s", resp.Status)
		}
		return nil
	})
	return p
}

// load is a small steady load: puts to every range, reads across ranges,
// and a watch over everything.
type load struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     struct {
		sync.Mutex
		writes int
		err    error
	}
}

func startLoad(t *testing.T, cli *clientv3.Client) *load {
	ctx, cancel := context.WithCancel(context.Background())
	l := &load{cancel: cancel}
	keys := []string{"apple", "house", "orange", "zebra"} // one per range
	l.wg.Add(2)
	go func() {
		defer l.wg.Done()
		for i := 0; ctx.Err() == nil; i++ {
			k := keys[i%len(keys)]
			octx, ocancel := context.WithTimeout(ctx, opTimeout)
			_, err := cli.Put(octx, fmt.Sprintf("%s/%d", k, i%50), fmt.Sprint(i))
			if err == nil && i%5 == 0 {
				_, err = cli.Get(octx, "", clientv3.WithFromKey(), clientv3.WithLimit(10))
			}
			ocancel()
			l.mu.Lock()
			if err == nil {
				l.mu.writes++
			} else if ctx.Err() == nil {
				l.mu.err = err
			}
			l.mu.Unlock()
			select {
			case <-ctx.Done():
			case <-time.After(20 * time.Millisecond): // a small, steady load
			}
		}
	}()
	go func() {
		defer l.wg.Done()
		for range cli.Watch(clientv3.WithRequireLeader(ctx), "", clientv3.WithFromKey()) {
		}
	}()
	// Leases: one kept alive on a stream, with a key attached; every few
	// seconds a short-lived one granted, asked about and revoked.
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		octx, ocancel := context.WithTimeout(ctx, opTimeout)
		kept, err := cli.Grant(octx, 10)
		if err == nil {
			_, err = cli.Put(octx, "apple/leased", "x", clientv3.WithLease(kept.ID))
		}
		ocancel()
		if err != nil {
			l.mu.Lock()
			l.mu.err = fmt.Errorf("lease load: %w", err)
			l.mu.Unlock()
			return
		}
		ka, err := cli.KeepAlive(ctx, kept.ID)
		if err != nil {
			return
		}
		tick := time.NewTicker(2 * time.Second)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-ka:
			case <-tick.C:
				octx, ocancel := context.WithTimeout(ctx, opTimeout)
				if g, err := cli.Grant(octx, 5); err == nil {
					_, _ = cli.TimeToLive(octx, g.ID, clientv3.WithAttachedKeys())
					_, _ = cli.Revoke(octx, g.ID)
					// Revoked twice: etcd's "requested lease not found"
					// (the error panels need an error).
					_, _ = cli.Revoke(octx, g.ID)
				}
				ocancel()
			}
		}
	}()
	return l
}

func (l *load) writes() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.mu.writes
}

func (l *load) lastErr() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.mu.err
}

func (l *load) stop() {
	l.cancel()
	l.wg.Wait()
}

// renderEtcdMixin obtains etcd's Grafana/Prometheus mixin (contrib/mixin of
// etcd's root module, from the Go module proxy: no copy of it is committed)
// and renders it with go-jsonnet for Grafana 7 (whose dashboard needs no
// grafonnet library), selecting the test's job. It returns the dashboards,
// the alert rules as a rule file, or why it could not.
func renderEtcdMixin(t *testing.T, dir string) (map[string][]byte, []byte, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), mixinTimeout)
	defer cancel()
	version := "latest"
	if out, err := exec.CommandContext(ctx, "go", "list", "-m", "-f", "{{.Version}}", "go.etcd.io/etcd/api/v3").Output(); err == nil {
		version = strings.TrimSpace(string(out))
	}
	var mod struct{ Dir, Error string }
	var errs []string
	for _, v := range []string{version, "latest"} {
		cmd := exec.CommandContext(ctx, "go", "mod", "download", "-json", "go.etcd.io/etcd/v3@"+v)
		cmd.Dir = dir // outside this module
		out, err := cmd.Output()
		mod.Dir, mod.Error = "", ""
		if jerr := json.Unmarshal(out, &mod); jerr == nil && mod.Dir != "" && mod.Error == "" {
			break
		}
		errs = append(errs, fmt.Sprintf("go.etcd.io/etcd/v3@%s: %v %s", v, err, mod.Error))
	}
	if mod.Dir == "" {
		return nil, nil, "cannot download etcd's module: " + strings.Join(errs, "; ")
	}
	mixin := filepath.Join(mod.Dir, "contrib", "mixin")
	if _, err := os.Stat(filepath.Join(mixin, "mixin.libsonnet")); err != nil {
		return nil, nil, fmt.Sprintf("%s has no contrib/mixin/mixin.libsonnet", mod.Dir)
	}
	vm := jsonnet.MakeVM()
	vm.Importer(&grafonnetStub{files: &jsonnet.FileImporter{JPaths: []string{mixin}}})
	// The Grafana 7 dashboard renders whole. The current dashboard is built
	// with grafonnet (not on the module proxy): its queries all come from
	// dashboards/targets.libsonnet, which renders against a stub of the two
	// grafonnet functions it calls, as a dashboard of one panel per target.
	const program = `
local overrides = {
  _config+:: {
    grafana7x: true,
    etcd_selector: 'job=~".*tessera.*"',
    clusterLabel: 'job',
  },
};
local mixin = (import 'mixin.libsonnet') + overrides;
local targets = (import 'dashboards/targets.libsonnet')({ datasource: { name: 'datasource' } }, mixin._config);
{
  dashboards: mixin.grafanaDashboards {
    'etcd.json (grafonnet targets)': {
      title: 'etcd (grafonnet dashboard)',
      panels: [
        { title: k, targets: [{ expr: targets[k].expr, refId: 'A' }] }
        for k in std.objectFields(targets)
      ],
    },
  },
  alerts: mixin.prometheusAlerts,
}
`
	out, err := vm.EvaluateAnonymousSnippet(filepath.Join(mixin, "render.jsonnet"), program)
	if err != nil {
		return nil, nil, fmt.Sprintf("render the mixin: %v", err)
	}
	var rendered struct {
		Dashboards map[string]json.RawMessage `json:"dashboards"`
		Alerts     json.RawMessage            `json:"alerts"`
	}
	if err := json.Unmarshal([]byte(out), &rendered); err != nil {
		return nil, nil, fmt.Sprintf("decode the rendered mixin: %v", err)
	}
	if len(rendered.Dashboards) == 0 {
		return nil, nil, "the mixin renders no dashboard"
	}
	dashboards := map[string][]byte{}
	for name, b := range rendered.Dashboards {
		dashboards[name] = b
	}
	t.Logf("etcd mixin from %s: %d dashboards", mod.Dir, len(dashboards))
	return dashboards, rendered.Alerts, ""
}
