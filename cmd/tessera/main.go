// Command tessera runs a Tessera node, or a local cluster (tessera dev).
package main

import (
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/tesseradb/tessera/cmd/buildinfo"
	"github.com/tesseradb/tessera/cmd/tessera/server"
)

func main() {
	if err := rootCmd().Execute(); err != nil {
		// Cobra prints nothing (SilenceErrors): the error is shown once.
		fmt.Fprintln(os.Stderr, "Error:", err)
		os.Exit(1)
	}
}

func rootCmd() *cobra.Command {
	cfg := server.DefaultConfig()
	var logLevel string
	var initialCluster string
	cmd := &cobra.Command{
		Use:   "tessera",
		Short: "An etcd-compatible key-value store that scales out",
		Long: `tessera runs one node of a Tessera cluster. With no flags it is a one-node
cluster serving etcd's API on 127.0.0.1:2379 with its data in ./default.tessera.
Flags follow etcd's names and meanings.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       buildinfo.Version,
		Args:          cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			logger, err := newLogger(logLevel)
			if err != nil {
				return err
			}
			cfg.Logger = logger
			cfg.InitialCluster = initialCluster
			if cfg.DataDir == "" {
				cfg.DataDir = cfg.Name + ".tessera"
			}
			return runNode(cfg)
		},
	}
	cmd.SetVersionTemplate(buildinfo.Lines("Tessera"))
	cfg.DataDir = "" // shown as ${name}.tessera in the help, set in RunE
	f := cmd.Flags()
	f.StringVar(&cfg.Name, "name", cfg.Name, "human-readable name for this member")
	f.StringVar(&cfg.DataDir, "data-dir", cfg.DataDir, "path to the data directory (default ${name}.tessera)")
	f.StringSliceVar(&cfg.ListenClientURLs, "listen-client-urls", cfg.ListenClientURLs, "URL to listen on for client traffic (gRPC, /health, /metrics)")
	f.StringSliceVar(&cfg.AdvertiseClientURLs, "advertise-client-urls", cfg.AdvertiseClientURLs, "client URL to advertise to the rest of the cluster")
	f.StringSliceVar(&cfg.ListenPeerURLs, "listen-peer-urls", cfg.ListenPeerURLs, "URL to listen on for peer traffic")
	f.StringSliceVar(&cfg.InitialAdvertisePeerURLs, "initial-advertise-peer-urls", cfg.InitialAdvertisePeerURLs, "this member's peer URL to advertise to the rest of the cluster")
	f.StringVar(&initialCluster, "initial-cluster", "", "initial cluster configuration for bootstrapping: name=peerURL,... (default ${name}=${initial-advertise-peer-urls})")
	f.StringVar(&cfg.InitialClusterState, "initial-cluster-state", cfg.InitialClusterState, "initial cluster state ('new' or 'existing')")
	f.IntVar(&cfg.MaxRequestBytes, "max-request-bytes", cfg.MaxRequestBytes, "maximum client request size in bytes the server will accept")
	f.Int64Var(&cfg.Split.RangeMaxBytes, "range-max-bytes", cfg.Split.RangeMaxBytes, "a range whose data (live and history) passes this many bytes is split in two by its leader (0: no size-based splits)")
	f.Float64Var(&cfg.Split.RangeSplitQPS, "range-split-qps", cfg.Split.RangeSplitQPS, "a range serving at least this many requests/s for 10 s is split by its leader at a key chosen from its load (0: no load-based splits)")
	f.DurationVar(&cfg.Split.FrozenRecoverAfter, "range-merge-recover-after", cfg.Split.FrozenRecoverAfter, "a range frozen this long for a merge whose initiator died is merged again (or thawed) by its left neighbour's leader")
	f.DurationVar(&cfg.Split.CheckInterval, "range-split-check-interval", cfg.Split.CheckInterval, "how often range leaders measure their ranges for --range-max-bytes")
	f.DurationVar(&cfg.ClosedRevisionInterval, "closed-revision-interval", cfg.ClosedRevisionInterval, "how often range leaders close the revisions of idle ranges (serializable reads on followers wait up to about twice this for a write they must show)")
	f.DurationVar(&cfg.WatchProgressNotifyInterval, "experimental-watch-progress-notify-interval", cfg.WatchProgressNotifyInterval, "duration of periodic watch progress notifications")
	f.StringSliceVar(&cfg.InitialSplitKeys, "initial-split-keys", nil, "keys at which the keyspace is cut into initial ranges (k1,k2,...)")
	f.DurationVar(&cfg.TickInterval, "heartbeat-interval", cfg.TickInterval, "time of a raft tick (heartbeat interval)")
	f.IntVar(&cfg.ElectionTicks, "election-ticks", cfg.ElectionTicks, "election timeout in ticks")
	f.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn, error, panic or fatal (as etcd's; panic and fatal log nothing but a failure to start)")
	f.Int64Var(&cfg.QuotaFreeBytes, "quota-free-bytes", cfg.QuotaFreeBytes, "raise the NOSPACE alarm (refusing puts) when the data directory's file system has less free space than this (0: never)")
	f.Int64Var(&cfg.QuotaBackendBytes, "quota-backend-bytes", cfg.QuotaBackendBytes, "raise the NOSPACE alarm when the data directory grows beyond this size (0: no quota)")
	f.BoolVar(&cfg.EnablePprof, "enable-pprof", false, "serve Go's runtime profiler under /debug/pprof/ on the client port")
	f.DurationVar(&cfg.Keepalive.MinTime, "grpc-keepalive-min-time", cfg.Keepalive.MinTime, "minimum interval duration that a client should wait before pinging server")
	f.DurationVar(&cfg.Keepalive.Interval, "grpc-keepalive-interval", cfg.Keepalive.Interval, "frequency duration of server-to-client ping to check if a connection is alive (0 to disable)")
	f.DurationVar(&cfg.Keepalive.Timeout, "grpc-keepalive-timeout", cfg.Keepalive.Timeout, "additional duration of wait before closing a non-responsive connection (0 to disable)")
	addTLSFlags(f, &cfg.TLS)
	addAuthFlags(f, &cfg.Auth)
	addMembersFlags(f, &cfg.Members)
	addMovesFlags(f, &cfg.Moves) // movesflags.go
	f.BoolVar(&cfg.EnableGRPCGateway, "enable-grpc-gateway", cfg.EnableGRPCGateway, "serve etcd's HTTP/JSON gateway under /v3/ on the client port")
	f.DurationVar(&cfg.CorruptCheckTime, "corrupt-check-time", cfg.CorruptCheckTime, "duration between corruption check passes (compare range replicas, raise CORRUPT); 0 disables")
	f.DurationVar(&cfg.CorruptCheckTime, "experimental-corrupt-check-time", cfg.CorruptCheckTime, "deprecated name of --corrupt-check-time")
	_ = f.MarkHidden("experimental-corrupt-check-time")
	f.StringVar(&cfg.AutoCompactionMode, "auto-compaction-mode", cfg.AutoCompactionMode, "interpret --auto-compaction-retention as: periodic (a duration, or hours) or revision (a number of writes)")
	f.StringVar(&cfg.AutoCompactionRetention, "auto-compaction-retention", cfg.AutoCompactionRetention, "auto compaction retention; 0 disables")
	f.IntVar(&cfg.MetricsTopRanges, "metrics-top-ranges", cfg.MetricsTopRanges, "number of this node's busiest ranges that get per-range series on /metrics (0: none)")
	cmd.AddCommand(devCmd(), versionCmd())
	return cmd
}

// versionCmd is `tessera version`, the same text as `tessera --version`.
func versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version of Tessera and of the etcd API it serves",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprint(cmd.OutOrStdout(), buildinfo.Lines("Tessera"))
		},
	}
}

// newLogger returns a text logger on stderr at etcd's --log-level. slog
// has no panic or fatal level: those keep only what is above error (a
// failure to start is returned, not logged).
func newLogger(level string) (*slog.Logger, error) {
	var l slog.Level
	switch strings.ToLower(level) {
	case "debug":
		l = slog.LevelDebug
	case "info":
		l = slog.LevelInfo
	case "warn":
		l = slog.LevelWarn
	case "error":
		l = slog.LevelError
	case "panic", "fatal":
		l = slog.LevelError + 4
	default:
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn, error, panic or fatal", level)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l})), nil
}

// runNode runs one node until SIGTERM or SIGINT, then shuts it down cleanly.
func runNode(cfg server.Config) error {
	enableContentionProfiles(cfg.EnablePprof)
	membersDefaults(&cfg)
	s, err := server.Start(cfg)
	if err != nil {
		return err
	}
	sig := waitForSignal()
	cfg.Logger.Info("received signal; shutting down", "signal", sig.String())
	s.Close()
	return nil
}

func waitForSignal() os.Signal {
	return <-notifySignals()
}

// notifySignals delivers the first SIGTERM or SIGINT, after which the
// signals' default action (exit) is restored: a second Ctrl-C during a
// stuck shutdown still ends the process.
func notifySignals() <-chan os.Signal {
	ch := make(chan os.Signal, 1)
	out := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		sig := <-ch
		signal.Reset(syscall.SIGTERM, syscall.SIGINT)
		out <- sig
	}()
	return out
}
