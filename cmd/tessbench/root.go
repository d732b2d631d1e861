package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/tesseradb/tessera/cmd/tessbench/internal/bench"
)

// options are the flags shared by every subcommand.
type options struct {
	run       bench.RunConfig
	wl        bench.WorkloadConfig
	json      bool
	jsonFile  string
	progress  bool
	logLevel  string
	consist   string
	out, errw io.Writer
	tty       bool
}

func newRootCmd(out, errw io.Writer, tty bool) *cobra.Command {
	o := &options{run: bench.DefaultRunConfig(), wl: bench.DefaultWorkloadConfig(), out: out, errw: errw, tty: tty}
	root := &cobra.Command{
		Use:   "tessbench",
		Short: "Benchmark an etcd-API endpoint (etcd or Tessera) and compare Tessera with etcd",
		Long: `tessbench drives one workload against an etcd-API endpoint and prints its
throughput, latency percentiles (p50/p90/p99/p99.9/max, from HDR histograms)
and errors by gRPC code, as a table or as JSON.

Without --rate the clients run a closed loop (each sends its next request when
the last one returns). With --rate R the run is an open loop: request i is due
at start + i/R, and its latency is measured from that time, so the time a
request waits for a free client counts (no coordinated omission).

'tessbench compare' starts a local etcd and a local Tessera cluster and runs
every workload against both in turn, printing the ratio Tessera/etcd.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(out)
	root.SetErr(errw)
	pf := root.PersistentFlags()
	pf.StringSliceVar(&o.run.Endpoints, "endpoints", o.run.Endpoints, "etcd-API client endpoints (host:port or URL), comma separated")
	pf.IntVar(&o.run.Conns, "conns", o.run.Conns, "gRPC connections (one etcd client each)")
	pf.IntVar(&o.run.Clients, "clients", o.run.Clients, "concurrent clients, spread over the connections")
	pf.Int64Var(&o.run.Total, "total", 0, "stop after this many requests (alone, it replaces the default --duration)")
	pf.DurationVar(&o.run.Duration, "duration", o.run.Duration, "stop after this long")
	pf.Float64Var(&o.run.Rate, "rate", 0, "open loop: send this many requests per second in total (0: closed loop)")
	pf.DurationVar(&o.run.MaxLag, "max-lag", 0, "open loop: stop sending once this far behind schedule (0: max(duration, 10s))")
	pf.DurationVar(&o.run.Timeout, "timeout", o.run.Timeout, "timeout of each request")
	pf.DurationVar(&o.run.DialTimeout, "dial-timeout", o.run.DialTimeout, "timeout of connecting")
	pf.Uint64Var(&o.run.Seed, "seed", o.run.Seed, "seed of the random key choice")
	pf.StringVar(&o.wl.Prefix, "prefix", o.wl.Prefix, "prefix of every key tessbench writes")
	pf.IntVar(&o.wl.KeySize, "key-size", o.wl.KeySize, "key size in bytes, prefix included")
	pf.IntVar(&o.wl.ValueSize, "val-size", o.wl.ValueSize, "value size in bytes")
	pf.IntVar(&o.wl.KeySpace, "key-space", o.wl.KeySpace, "number of distinct keys")
	pf.BoolVar(&o.json, "json", false, "print the result as JSON (histograms included)")
	pf.StringVar(&o.jsonFile, "json-file", "", "also write the JSON result to this file")
	pf.BoolVar(&o.progress, "progress", true, "show a progress bar when stdout is a terminal")
	pf.StringVar(&o.logLevel, "log-level", "info", "log level on stderr: debug, info, warn, error")

	root.AddCommand(
		workloadCmd(o, "put", "Put values to random (or sequential) keys", func(c *cobra.Command) {
			c.Flags().BoolVar(&o.wl.Sequential, "seq-keys", false, "write keys in sequence instead of at random")
		}),
		workloadCmd(o, "range", "Get one random key, or a whole prefix of --prefix-keys keys", func(c *cobra.Command) {
			c.Flags().StringVar(&o.consist, "consistency", "l", "l(inearizable) or s(erializable)")
			c.Flags().IntVar(&o.wl.PrefixKeys, "prefix-keys", 0, "preload this many keys under one prefix and range over all of them")
		}),
		workloadCmd(o, "txn-put", "Compare-and-swap puts on mod revision", func(c *cobra.Command) {
			c.Flags().BoolVar(&o.wl.Sequential, "seq-keys", false, "swap keys in sequence instead of at random")
		}),
		workloadCmd(o, "watch", "Watchers on a prefix; put→event latency and events/s (--clients is the number of putters)", func(c *cobra.Command) {
			c.Flags().IntVar(&o.wl.Watchers, "watchers", o.wl.Watchers, "watch streams on the prefix")
			c.Flags().DurationVar(&o.wl.WatchDrainTimeout, "drain-timeout", o.wl.WatchDrainTimeout, "after the last put, wait this long for every event")
		}),
		workloadCmd(o, "lease-keepalive", "Keep-alives of granted leases, one stream per client", func(c *cobra.Command) {
			c.Flags().IntVar(&o.wl.Leases, "leases", 0, "leases to keep alive (0: one per client)")
			c.Flags().Int64Var(&o.wl.LeaseTTL, "lease-ttl", o.wl.LeaseTTL, "TTL of the leases in seconds")
		}),
		workloadCmd(o, "mixed", "Reads and puts on random keys in a given ratio", func(c *cobra.Command) {
			c.Flags().Float64Var(&o.wl.ReadRatio, "read-ratio", o.wl.ReadRatio, "fraction of requests that are reads")
			c.Flags().StringVar(&o.consist, "consistency", "l", "l(inearizable) or s(erializable) reads")
		}),
		compareCmd(o),
		simulateCmd(o),
	)
	return root
}

// finish applies the flags that depend on each other.
func (o *options) finish(cmd *cobra.Command) error {
	flags := cmd.Flags()
	if flags.Changed("total") && !flags.Changed("duration") {
		o.run.Duration = 0
	}
	if o.consist != "" {
		c, err := bench.ParseConsistency(o.consist)
		if err != nil {
			return err
		}
		o.wl.Consistency = c
	}
	return nil
}

func (o *options) logger() (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(o.logLevel)); err != nil {
		return nil, fmt.Errorf("bad --log-level %q: %w", o.logLevel, err)
	}
	return slog.New(slog.NewTextHandler(o.errw, &slog.HandlerOptions{Level: lvl})), nil
}

func workloadCmd(o *options, name, short string, flags func(*cobra.Command)) *cobra.Command {
	c := &cobra.Command{
		Use:   name,
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.finish(cmd); err != nil {
				return err
			}
			lg, err := o.logger()
			if err != nil {
				return err
			}
			run := o.run
			var bar *progressBar
			if o.progress && o.tty && !o.json {
				bar = newProgressBar(o.out, run)
				run.OnComplete = bar.complete
			}
			res, err := bench.Execute(cmd.Context(), run, o.wl, name, lg)
			bar.finish()
			if res != nil {
				if werr := o.write(res); werr != nil {
					return werr
				}
			}
			if err != nil && errors.Is(err, cmd.Context().Err()) {
				return fmt.Errorf("interrupted: %w", err)
			}
			return err
		},
	}
	flags(c)
	return c
}

func (o *options) write(res interface {
	WriteJSON(io.Writer) error
	WriteTable(io.Writer) error
}) error {
	if o.jsonFile != "" {
		f, err := os.Create(o.jsonFile)
		if err != nil {
			return fmt.Errorf("json file: %w", err)
		}
		err = res.WriteJSON(f)
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("json file: %w", cerr)
		}
		if err != nil {
			return err
		}
	}
	if o.json {
		return res.WriteJSON(o.out)
	}
	return res.WriteTable(o.out)
}

// splitList splits a comma-separated flag value, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
