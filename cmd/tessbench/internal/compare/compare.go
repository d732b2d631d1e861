package compare

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/tesseradb/tessera/cmd/tessbench/internal/bench"
	cluster "github.com/tesseradb/tessera/tests/proccluster"
)

// System names.
const (
	Etcd    = "etcd"
	Tessera = "tessera"
)

// Config describes a comparison.
type Config struct {
	// EtcdBin is the etcd binary, looked up on PATH when it has no slash.
	EtcdBin string
	// InstallEtcd lets compare install Debian's etcd-server when EtcdBin is
	// "etcd" and not on PATH.
	InstallEtcd bool
	// TesseraBin is the tessera binary; "" looks up "tessera" on PATH.
	// When none is found, or it does not start, etcd is measured alone.
	TesseraBin string
	// Nodes is the member count of each cluster.
	Nodes int
	// DataRoot is the directory under which both clusters keep their data
	// (so both use the same disk); "" is the system's temporary directory.
	DataRoot string
	// Keep leaves the data and logs in place afterwards.
	Keep bool
	// Cases names the cases to run (see Cases); empty runs all.
	Cases []string
	// Rounds is how many times each case runs on each system, alternating.
	Rounds int
	// SplitRanges is the number of ranges Tessera starts with over the
	// range-prefix case's keys (passed as --initial-split-keys); < 2 passes
	// none.
	SplitRanges int
	// PrefixKeys is the number of keys the range-prefix case reads at once.
	PrefixKeys int
	// Endpoint, when positive, gives the clients only the Endpoint-th member
	// (1-based) of each cluster instead of all of them: to measure requests
	// sent to one node (on Tessera, the leader of some ranges and a follower
	// of others). 0: all members.
	Endpoint int
	// Run and Workload are the settings every case starts from; Endpoints
	// are ignored.
	Run      bench.RunConfig
	Workload bench.WorkloadConfig
	// TLS runs both clusters with client and peer mutual TLS (etcd's
	// --cert-file ... --client-cert-auth and --peer-* flags, one generated
	// CA) and the clients with a client certificate (security.go).
	TLS bool
	// Auth enables auth on both clusters (root with a password, simple
	// tokens); the clients authenticate as root.
	Auth bool
	// StartTimeout bounds each cluster's start.
	StartTimeout time.Duration
	// Logger receives progress; nil discards it.
	Logger *slog.Logger
}

// DefaultConfig returns the settings of `tessbench compare` without flags.
func DefaultConfig() Config {
	run := bench.DefaultRunConfig()
	return Config{
		EtcdBin:      "etcd",
		InstallEtcd:  true,
		Nodes:        3,
		Rounds:       2, // A B A B: each system is measured before and after the other
		SplitRanges:  4,
		PrefixKeys:   1000, // a Kubernetes-sized list; 1000×256 B ≈ 256 KiB per response
		Run:          run,
		Workload:     bench.DefaultWorkloadConfig(),
		StartTimeout: 60 * time.Second,
	}
}

// Validate reports the first setting that cannot work.
func (c Config) Validate() error {
	switch {
	case c.Nodes < 1:
		return fmt.Errorf("compare: nodes must be at least 1, got %d", c.Nodes)
	case c.Rounds < 1:
		return fmt.Errorf("compare: rounds must be at least 1, got %d", c.Rounds)
	case c.PrefixKeys < 1:
		return fmt.Errorf("compare: prefix keys must be at least 1, got %d", c.PrefixKeys)
	case c.Endpoint < 0 || c.Endpoint > c.Nodes:
		return fmt.Errorf("compare: endpoint must be between 0 (all) and the %d nodes, got %d", c.Nodes, c.Endpoint)
	}
	run := c.Run
	run.Endpoints = []string{"placeholder"}
	if err := run.Validate(); err != nil {
		return err
	}
	_, err := selectCases(c.Cases)
	return err
}

// SplitKeys returns the keys at which Tessera's initial ranges are cut, so
// that the range-prefix case's keys span SplitRanges ranges.
func (c Config) SplitKeys() ([]string, error) {
	g, err := bench.RangePrefixKeys(c.Workload, c.PrefixKeys)
	if err != nil {
		return nil, err
	}
	return g.SplitKeys(c.SplitRanges), nil
}

// system is one cluster under test.
type system struct {
	name    string
	cluster *cluster.Cluster
}

// Run performs the comparison and returns its report. It stops the clusters
// it started and removes their data (unless Keep) before returning, also on
// error or cancellation.
func Run(ctx context.Context, cfg Config) (rep *Report, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	lg := cfg.Logger
	if lg == nil {
		lg = slog.New(slog.DiscardHandler)
	}
	cases, _ := selectCases(cfg.Cases)
	splitKeys, err := cfg.SplitKeys()
	if err != nil {
		return nil, err
	}

	rep = &Report{
		Settings: Settings{
			Nodes: cfg.Nodes, Conns: cfg.Run.Conns, Clients: cfg.Run.Clients,
			Total: cfg.Run.Total, Duration: bench.ToSeconds(cfg.Run.Duration), Rate: cfg.Run.Rate,
			Rounds: cfg.Rounds, SplitRanges: cfg.SplitRanges, PrefixKeys: cfg.PrefixKeys, Endpoint: cfg.Endpoint,
			KeySize: cfg.Workload.KeySize, ValueSize: cfg.Workload.ValueSize, KeySpace: cfg.Workload.KeySpace,
			ReadRatio: cfg.Workload.ReadRatio, Watchers: cfg.Workload.Watchers,
			SplitKeys: splitKeys, TLS: cfg.TLS, Auth: cfg.Auth,
		},
	}

	etcdBin, err := cluster.EnsureEtcd(ctx, cfg.EtcdBin, cfg.InstallEtcd, lg)
	if err != nil {
		return nil, err
	}
	root, err := os.MkdirTemp(cfg.DataRoot, "tessbench-compare-")
	if err != nil {
		return nil, fmt.Errorf("compare: data root: %w", err)
	}
	rep.Machine = DescribeMachine(root)
	defer func() {
		if cfg.Keep {
			lg.Info("keeping data and logs", "dir", root)
			return
		}
		if rerr := os.RemoveAll(root); rerr != nil {
			err = errors.Join(err, fmt.Errorf("compare: remove %s: %w", root, rerr))
		}
	}()

	var certs *pki
	if cfg.TLS {
		if certs, err = newPKI(filepath.Join(root, "tls")); err != nil {
			return nil, err
		}
	}
	// secure adds the TLS flags to a cluster's configuration.
	secure := func(c *cluster.Config) {
		if certs != nil {
			c.Prepare = func(n *cluster.Node) error {
				args, err := certs.serverArgs(n.Name)
				n.Args = append(n.Args, args...)
				return err
			}
			c.ClientTLS, c.PeerTLS = certs.client, certs.client
		}
	}
	clientTLS := func() *tls.Config {
		if certs == nil {
			return nil
		}
		return certs.client
	}

	var systems []*system
	defer func() {
		for _, s := range systems {
			if serr := s.cluster.Stop(); serr != nil {
				err = errors.Join(err, fmt.Errorf("compare: stop %s: %w", s.name, serr))
			}
		}
	}()

	// etcd first: without it there is nothing to compare against.
	ecfg := cluster.DefaultConfig(Etcd, etcdBin, filepath.Join(root, Etcd))
	ecfg.Nodes, ecfg.Keep, ecfg.Logger, ecfg.StartTimeout = cfg.Nodes, true, lg, cfg.StartTimeout
	secure(&ecfg)
	lg.Info("starting etcd", "bin", etcdBin, "nodes", cfg.Nodes, "tls", cfg.TLS, "auth", cfg.Auth)
	ec, err := cluster.Start(ctx, ecfg)
	if err != nil {
		return nil, fmt.Errorf("compare: etcd: %w", err)
	}
	systems = append(systems, &system{name: Etcd, cluster: ec})
	if cfg.Auth {
		if err := enableAuth(ctx, ec.Endpoints(), clientTLS()); err != nil {
			return nil, fmt.Errorf("compare: etcd: %w", err)
		}
	}
	rep.Systems = append(rep.Systems, SystemInfo{
		Name: Etcd, Bin: etcdBin, Version: cluster.Version(ctx, etcdBin), Endpoints: ec.Endpoints(),
	})

	tinfo := SystemInfo{Name: Tessera}
	tbin, terr := findTessera(cfg.TesseraBin)
	if terr == nil {
		tinfo.Bin = tbin
		tcfg := cluster.DefaultConfig(Tessera, tbin, filepath.Join(root, Tessera))
		// A free gossip port per node (the default 7946 fits one node per
		// host); the tests stand etcd in for tessera, which has no such flag.
		tcfg.GossipPorts = cluster.HasFlag(ctx, tbin, "--gossip-addr")
		tcfg.Nodes, tcfg.Keep, tcfg.Logger, tcfg.StartTimeout = cfg.Nodes, true, lg, cfg.StartTimeout
		if len(splitKeys) > 0 {
			tcfg.ExtraArgs = []string{"--initial-split-keys", strings.Join(splitKeys, ",")}
		}
		secure(&tcfg)
		lg.Info("starting tessera", "bin", tbin, "nodes", cfg.Nodes, "split_keys", splitKeys)
		var tc *cluster.Cluster
		if tc, terr = cluster.Start(ctx, tcfg); terr == nil {
			systems = append(systems, &system{name: Tessera, cluster: tc})
			tinfo.Endpoints = tc.Endpoints()
			if cfg.Auth {
				if err := enableAuth(ctx, tc.Endpoints(), clientTLS()); err != nil {
					return nil, fmt.Errorf("compare: tessera: %w", err)
				}
			}
		}
	}
	if terr != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		tinfo.Skipped = terr.Error()
		msg := fmt.Sprintf("tessera is not measured: %s; measuring etcd alone", firstLine(terr.Error()))
		lg.Warn(msg)
		rep.Notes = append(rep.Notes, msg)
	}
	rep.Systems = append(rep.Systems, tinfo)

	for _, c := range cases {
		cr := &CaseReport{Name: c.Name, Workload: c.Workload, Describe: c.Describe}
		for round := 1; round <= cfg.Rounds; round++ {
			for _, s := range systems {
				run, wl := cfg.Run, cfg.Workload
				run.Endpoints = s.cluster.Endpoints()
				run.TLS = clientTLS()
				if cfg.Auth {
					run.Username, run.Password = authUser, authPassword
				}
				if cfg.Endpoint > 0 {
					run.Endpoints = run.Endpoints[cfg.Endpoint-1 : cfg.Endpoint]
				}
				c.adjust(&run, &wl, cfg)
				lg.Info("running", "case", c.Name, "system", s.name, "round", round)
				pids := s.pids()
				load := RunLoad{System: s.name, Round: round, Before: LoadAvg()}
				cpu0 := clusterCPU(pids)
				res, rerr := bench.Execute(ctx, run, wl, c.Workload, lg)
				load.After = LoadAvg()
				load.CPUSeconds = -1
				if cpu1 := clusterCPU(pids); cpu0 >= 0 && cpu1 >= 0 {
					load.CPUSeconds = cpu1 - cpu0
				}
				if rerr != nil {
					if ctx.Err() != nil {
						return rep, ctx.Err()
					}
					return rep, fmt.Errorf("compare: %s on %s, round %d: %w", c.Name, s.name, round, rerr)
				}
				res.Case, res.System = c.Name, s.name
				cr.Params = res.Params
				cr.Runs = append(cr.Runs, res)
				cr.Loads = append(cr.Loads, load)
				lg.Info("done", "case", c.Name, "system", s.name, "round", round, "summary", oneLine(res),
					"load1", fmt.Sprintf("%.2f→%.2f", load.Before, load.After))
			}
		}
		cr.summarise()
		rep.Cases = append(rep.Cases, cr)
	}
	return rep, nil
}

// findTessera resolves the tessera binary.
func findTessera(bin string) (string, error) {
	if bin == "" {
		p, err := exec.LookPath("tessera")
		if err != nil {
			return "", errors.New("no tessera binary on PATH (build one with `go build -o tessera ./cmd/tessera` and pass --tessera-bin)")
		}
		return p, nil
	}
	p, err := exec.LookPath(bin)
	if err != nil {
		return "", fmt.Errorf("tessera binary %q not found: %w", bin, err)
	}
	return p, nil
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

func oneLine(r *bench.Result) string {
	var parts []string
	for _, o := range r.Ops {
		parts = append(parts, fmt.Sprintf("%s %.0f/s p99 %sms", o.Name, o.Throughput, bench.FormatMs(o.Latency.P99)))
	}
	if n := r.TotalErrors(); n > 0 {
		parts = append(parts, fmt.Sprintf("%d errors", n))
	}
	return strings.Join(parts, "; ")
}
