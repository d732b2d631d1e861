package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/tesseradb/tessera/cmd/tessbench/internal/compare"
)

func compareCmd(o *options) *cobra.Command {
	cfg := compare.DefaultConfig()
	var cases string
	c := &cobra.Command{
		Use:   "compare",
		Short: "Start a local etcd and a local Tessera cluster and compare them workload by workload",
		Long: `compare installs Debian's etcd-server when etcd is missing, starts a --nodes
member etcd cluster and a --nodes member Tessera cluster on free loopback ports
with their data under one --data-root (same disk, fsync on for both), and runs
each case against both in turn (etcd, Tessera, etcd, Tessera, … for --rounds
rounds) with the same --clients and --conns. It prints every figure with the
ratio Tessera/etcd, then stops the processes it started and removes their data.

Without a Tessera binary (--tessera-bin, or tessera on PATH), or when it fails
to start, it says why and measures etcd alone.

Cases: ` + strings.Join(compare.CaseNames(), ", ") + `.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.finish(cmd); err != nil {
				return err
			}
			lg, err := o.logger()
			if err != nil {
				return err
			}
			cfg.Run, cfg.Workload, cfg.Logger = o.run, o.wl, lg
			cfg.Cases = splitList(cases)
			rep, err := compare.Run(cmd.Context(), cfg)
			if rep != nil && len(rep.Cases) > 0 {
				if werr := o.write(rep); werr != nil {
					return errors.Join(err, werr)
				}
			}
			if err != nil && errors.Is(err, cmd.Context().Err()) {
				return fmt.Errorf("interrupted: %w", err)
			}
			return err
		},
	}
	f := c.Flags()
	f.StringVar(&cfg.EtcdBin, "etcd-bin", cfg.EtcdBin, "etcd binary")
	f.BoolVar(&cfg.InstallEtcd, "install-etcd", cfg.InstallEtcd, "install Debian's etcd-server (apt-get) when etcd is not on PATH")
	f.StringVar(&cfg.TesseraBin, "tessera-bin", "", "tessera binary (default: tessera on PATH)")
	f.IntVar(&cfg.Nodes, "nodes", cfg.Nodes, "members of each cluster")
	f.StringVar(&cfg.DataRoot, "data-root", "", "directory for both clusters' data (default: the system temp dir)")
	f.BoolVar(&cfg.Keep, "keep", false, "keep the data directories and server logs")
	f.StringVar(&cases, "cases", "", "comma-separated cases to run (default: all)")
	f.IntVar(&cfg.Rounds, "rounds", cfg.Rounds, "runs of each case on each system, alternating")
	f.IntVar(&cfg.SplitRanges, "split-keys", cfg.SplitRanges, "cut the range-prefix keys into this many ranges on Tessera (--initial-split-keys); 0 or 1: no split")
	f.IntVar(&cfg.PrefixKeys, "prefix-keys", cfg.PrefixKeys, "keys read by each request of the range-prefix case")
	f.IntVar(&cfg.Endpoint, "endpoint", 0, "send every request to this member (1-based) of each cluster; 0: spread over all members")
	f.Float64Var(&o.wl.ReadRatio, "read-ratio", o.wl.ReadRatio, "fraction of reads in the mixed case")
	f.IntVar(&o.wl.Watchers, "watchers", o.wl.Watchers, "watch streams in the watch case")
	f.DurationVar(&cfg.StartTimeout, "start-timeout", cfg.StartTimeout, "how long each cluster may take to serve")
	f.BoolVar(&cfg.TLS, "tls", false, "run both clusters with client and peer mutual TLS (a generated CA) and the clients with a certificate")
	f.BoolVar(&cfg.Auth, "auth", false, "enable auth on both clusters (root, simple tokens); the clients authenticate as root")
	return c
}
