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

	"github.com/tesseradb/tessera/cmd/tessera/server"
)

func main() {
	if err := rootCmd().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "tessera:", err)
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
		SilenceUsage: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg.Logger = newLogger(logLevel)
			cfg.InitialCluster = initialCluster
			if !cmd.Flags().Changed("data-dir") {
				cfg.DataDir = cfg.Name + ".tessera"
			}
			return runNode(cfg)
		},
	}
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
	f.DurationVar(&cfg.ClosedRevisionInterval, "closed-revision-interval", cfg.ClosedRevisionInterval, "how often range leaders close the revisions of idle ranges (serializable reads on followers wait up to about twice this for a write they must show)")
	f.DurationVar(&cfg.WatchProgressNotifyInterval, "experimental-watch-progress-notify-interval", cfg.WatchProgressNotifyInterval, "duration of periodic watch progress notifications")
	f.StringSliceVar(&cfg.InitialSplitKeys, "initial-split-keys", nil, "keys at which the keyspace is cut into initial ranges (k1,k2,...)")
	f.DurationVar(&cfg.TickInterval, "heartbeat-interval", cfg.TickInterval, "time of a raft tick (heartbeat interval)")
	f.IntVar(&cfg.ElectionTicks, "election-ticks", cfg.ElectionTicks, "election timeout in ticks")
	f.StringVar(&logLevel, "log-level", "warn", "log level: debug, info, warn or error")
	f.Int64Var(&cfg.QuotaFreeBytes, "quota-free-bytes", cfg.QuotaFreeBytes, "raise the NOSPACE alarm (refusing puts) when the data directory's file system has less free space than this (0: never)")
	f.Int64Var(&cfg.QuotaBackendBytes, "quota-backend-bytes", cfg.QuotaBackendBytes, "raise the NOSPACE alarm when the data directory grows beyond this size (0: no quota)")
	f.BoolVar(&cfg.EnablePprof, "enable-pprof", false, "serve Go's runtime profiler under /debug/pprof/ on the client port")
	cmd.AddCommand(devCmd())
	return cmd
}

func newLogger(level string) *slog.Logger {
	var l slog.Level
	if err := l.UnmarshalText([]byte(strings.ToUpper(level))); err != nil {
		l = slog.LevelWarn
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l}))
}

// runNode runs one node until SIGTERM or SIGINT, then shuts it down cleanly.
func runNode(cfg server.Config) error {
	s, err := server.Start(cfg)
	if err != nil {
		return err
	}
	cfg.Logger.Info("serving", "client", s.ClientAddr(), "peer", s.PeerAddr())
	waitForSignal()
	s.Close()
	return nil
}

func waitForSignal() {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGTERM, syscall.SIGINT)
	<-ch
	signal.Stop(ch)
}
