// Package server wires one Tessera node together: engine, raft host, meta
// group and TSO, range replicas, router, and the client and peer ports. It
// holds no logic of its own beyond wiring and bootstrap.
package server

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/tesseradb/tessera/proto/tesserapb"
	"github.com/tesseradb/tessera/router"
	"github.com/tesseradb/tessera/shard"
)

// Config is a node's configuration; field names follow etcd's flags.
type Config struct {
	Name                     string
	DataDir                  string
	ListenClientURLs         []string
	AdvertiseClientURLs      []string
	ListenPeerURLs           []string
	InitialAdvertisePeerURLs []string
	// InitialCluster is "name=peerURL,..." as etcd's --initial-cluster.
	InitialCluster string
	// InitialClusterState is "new" or "existing".
	InitialClusterState string
	// Members: gossip, heartbeats, liveness and joining (members.go).
	Members MembersConfig
	// Moves configures replica moves (moves.go).
	Moves MovesConfig
	// InitialSplitKeys cut the keyspace into initial ranges.
	InitialSplitKeys []string
	// MaxRequestBytes is etcd's --max-request-bytes (1.5 MiB).
	MaxRequestBytes int
	// WatchProgressNotifyInterval is etcd's
	// --experimental-watch-progress-notify-interval (10 minutes).
	WatchProgressNotifyInterval time.Duration
	// ClosedRevisionInterval is --closed-revision-interval (200 ms): how often
	// leaders close the revisions of idle ranges (router/closed.go).
	ClosedRevisionInterval time.Duration
	// FeedResolveByClosing makes watch feeds resolve an idle range through
	// an on-demand closing round of the side channel instead of a ReadIndex
	// round (off: it costs a TSO call and two round trips, more latency
	// than one ReadIndex while a watch covers few ranges; docs/decisions.md).
	// Not a flag yet.
	FeedResolveByClosing bool
	// WatchStreamQueue bounds the responses queued per watch stream before
	// its watchers fall back to catching up (0: the hub's default, 1024).
	// Not a flag: tests lower it to exercise slow watchers.
	WatchStreamQueue int
	// DirectoryReconcile paces the reports of this node's led ranges to the
	// range directory (zero: router.DefaultReconcileConfig()).
	DirectoryReconcile router.ReconcileConfig
	// RaftLogTruncateThreshold, when set, overrides the raft log length at
	// which a group truncates its log (keeping half). Not a flag: tests
	// lower it to make lagging replicas catch up by snapshot.
	RaftLogTruncateThreshold uint64

	// TickInterval and ElectionTicks set the raft clock (100 ms, 10 ticks:
	// etcd's heartbeat interval and election timeout).
	TickInterval  time.Duration
	ElectionTicks int

	// ClientListener and PeerListener, if set, are used instead of
	// listening on the first listen URL (tests pass port-0 listeners).
	ClientListener net.Listener
	PeerListener   net.Listener

	// QuotaFreeBytes: the node raises etcd's NOSPACE alarm when its data
	// directory's file system has less free space than this (0: never).
	QuotaFreeBytes int64
	// QuotaBackendBytes is etcd's --quota-backend-bytes: NOSPACE when the
	// data directory grows beyond it (0: no quota; a range-sharded store
	// has no single backend to cap, so unlike etcd it is off by default).
	QuotaBackendBytes int64

	// EnablePprof serves Go's profiler under /debug/pprof/ on the client
	// port, as etcd's --enable-pprof.
	EnablePprof bool
	// EnableGRPCGateway serves etcd's HTTP/JSON gateway under /v3/ on the
	// client port, as etcd's --enable-grpc-gateway (on by default).
	EnableGRPCGateway bool

	// CorruptCheckTime is etcd's --corrupt-check-time: how often each node
	// compares the replicas of the ranges it leads and raises CORRUPT on a
	// difference (0: never, etcd's default).
	CorruptCheckTime time.Duration
	// AutoCompactionMode and AutoCompactionRetention are etcd's
	// --auto-compaction-mode (periodic) and --auto-compaction-retention
	// ("0": off; a duration, or a number of hours).
	AutoCompactionMode      string
	AutoCompactionRetention string
	// AutoCompactionRevisionInterval, when set, overrides how often
	// revision-mode auto-compaction runs (5 minutes, etcd's). Not a flag:
	// tests lower it.
	AutoCompactionRevisionInterval time.Duration
	// DefragIdleRatio: after each step of a defragmentation (one range's
	// manual compaction), the node pauses this many times as long as the
	// step took, leaving the disk and CPU to requests (3: compacting at
	// most a quarter of the time, which kept put p99 within 1.25x during
	// defrag in docs/operations.md, where 1 let it reach 1.9x). Not a flag.
	DefragIdleRatio float64

	// MetricsTopRanges is the number of ranges (this node's busiest
	// replicas) that get per-range series on /metrics; 0 turns per-range
	// series off. Bounded so that 10,000 ranges are not 10,000 series.
	MetricsTopRanges int
	// PeerProbeInterval is how often the node measures the round trip to
	// each peer (etcd_network_peer_round_trip_time_seconds); 0: 5 s.
	PeerProbeInterval time.Duration

	// TLS of the client and peer ports (tls_wiring.go), etcd's flags.
	TLS TLSConfig
	// Auth is etcd's auth configuration (auth.go); zero means defaults.
	Auth AuthConfig
	// Keepalive is etcd's gRPC keepalive of the client port (keepalive.go).
	Keepalive KeepaliveConfig

	Logger *slog.Logger

	// ProbeTimeout bounds each check of /livez and /readyz (2 s, as
	// /health: a probe must answer before Kubernetes' 1-10 s timeouts
	// give up on it).
	ProbeTimeout time.Duration
	// ReadyCheckInterval: how often a starting node tries a read over
	// every range until it logs "ready to serve client requests" (100 ms,
	// a raft tick: the line follows readiness closely and costs little).
	ReadyCheckInterval time.Duration

	// Splits (split.go): the size above which a range leader splits its
	// range, and how often it checks.
	Split SplitConfig
	// StoreKnobs are test hooks of the node's store (nil in production).
	StoreKnobs *shard.StoreKnobs
	// LeaseLookupValidity: how long a write may use a looked-up lease
	// incarnation, and so how long ranges remember revoked leases
	// (placement.LeaseConfig.LookupValidity; 0: its 30 s default). The
	// same on every node.
	LeaseLookupValidity time.Duration
}

// DefaultConfig returns etcd's defaults, adapted: one node serving
// 127.0.0.1:2379 with its data in ./default.tessera.
func DefaultConfig() Config {
	return Config{
		Name:                        "default",
		DataDir:                     "default.tessera",
		ListenClientURLs:            []string{"http://127.0.0.1:2379"},
		AdvertiseClientURLs:         []string{"http://127.0.0.1:2379"},
		ListenPeerURLs:              []string{"http://127.0.0.1:2380"},
		InitialAdvertisePeerURLs:    []string{"http://127.0.0.1:2380"},
		InitialClusterState:         "new",
		MaxRequestBytes:             1536 * 1024,
		WatchProgressNotifyInterval: 10 * time.Minute,
		ClosedRevisionInterval:      router.DefaultCloserConfig().Interval,
		QuotaFreeBytes:              DefaultQuotaFreeBytes,
		TickInterval:                100 * time.Millisecond,
		ElectionTicks:               10,
		ProbeTimeout:                2 * time.Second,
		ReadyCheckInterval:          100 * time.Millisecond,
		MetricsTopRanges:            DefaultMetricsTopRanges,
		PeerProbeInterval:           DefaultPeerProbeInterval,
		EnableGRPCGateway:           true,
		AutoCompactionMode:          "periodic",
		AutoCompactionRetention:     "0",
		DefragIdleRatio:             3,
		Split:                       DefaultSplitConfig(),
		Keepalive:                   DefaultKeepaliveConfig(),
	}
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	if err := c.Split.Validate(); err != nil {
		return err
	}
	switch {
	case c.Name == "":
		return errors.New("server: --name is empty")
	case c.DataDir == "":
		return errors.New("server: --data-dir is empty")
	case len(c.ListenClientURLs) == 0 && c.ClientListener == nil:
		return errors.New("server: no --listen-client-urls")
	case len(c.ListenPeerURLs) == 0 && c.PeerListener == nil:
		return errors.New("server: no --listen-peer-urls")
	case c.InitialClusterState != "new" && c.InitialClusterState != "existing":
		return fmt.Errorf("server: --initial-cluster-state %q must be new or existing", c.InitialClusterState)
	case c.Keepalive.Validate() != nil:
		return c.Keepalive.Validate()
	case c.Members.Validate() != nil:
		return c.Members.Validate()
	case c.Moves.Validate() != nil:
		return c.Moves.Validate()
	case c.DefragIdleRatio < 0:
		return fmt.Errorf("server: DefragIdleRatio %v is negative", c.DefragIdleRatio)
	case c.CorruptCheckTime < 0:
		return fmt.Errorf("server: --corrupt-check-time %v is negative", c.CorruptCheckTime)
	case c.DirectoryReconcile != (router.ReconcileConfig{}) && c.DirectoryReconcile.Validate() != nil:
		return c.DirectoryReconcile.Validate()
	case c.ClosedRevisionInterval <= 0:
		return fmt.Errorf("server: --closed-revision-interval %v must be positive", c.ClosedRevisionInterval)
	case c.MaxRequestBytes <= 0:
		return fmt.Errorf("server: --max-request-bytes %d must be positive", c.MaxRequestBytes)
	case c.ProbeTimeout < 0 || c.ReadyCheckInterval < 0:
		return errors.New("server: ProbeTimeout and ReadyCheckInterval must not be negative (0: default)")
	case c.MetricsTopRanges < 0 || c.MetricsTopRanges > maxMetricsTopRanges:
		return fmt.Errorf("server: --metrics-top-ranges %d must be within [0, %d]", c.MetricsTopRanges, maxMetricsTopRanges)
	case c.PeerProbeInterval < 0:
		return fmt.Errorf("server: peer probe interval %v must not be negative", c.PeerProbeInterval)
	}
	for _, k := range c.InitialSplitKeys {
		if k == "" {
			return errors.New("server: --initial-split-keys has an empty key")
		}
	}
	return nil
}

// initialCluster parses --initial-cluster into nodes with ids 1..N in order.
// With no --initial-cluster the node is alone, at its advertised peer URL.
func (c *Config) initialCluster() ([]*tesserapb.NodeDescriptor, uint64, error) {
	spec := c.InitialCluster
	if spec == "" {
		if len(c.InitialAdvertisePeerURLs) == 0 {
			return nil, 0, errors.New("server: no --initial-advertise-peer-urls")
		}
		spec = c.Name + "=" + c.InitialAdvertisePeerURLs[0]
	}
	var nodes []*tesserapb.NodeDescriptor
	seen := map[string]bool{}
	var self uint64
	for _, part := range strings.Split(spec, ",") {
		name, u, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || name == "" || u == "" {
			return nil, 0, fmt.Errorf("server: --initial-cluster entry %q is not name=url", part)
		}
		if _, err := url.Parse(u); err != nil {
			return nil, 0, fmt.Errorf("server: --initial-cluster URL %q: %w", u, err)
		}
		if seen[name] {
			continue // more peer URLs of the same member: the first is used
		}
		seen[name] = true
		n := &tesserapb.NodeDescriptor{NodeId: uint64(len(nodes) + 1), Name: name, PeerUrl: u}
		if name == c.Name {
			self = n.NodeId
			if len(c.AdvertiseClientURLs) > 0 {
				n.ClientUrl = c.AdvertiseClientURLs[0]
			}
		}
		nodes = append(nodes, n)
	}
	if self == 0 {
		return nil, 0, fmt.Errorf("server: --name %q is not in --initial-cluster %q", c.Name, spec)
	}
	return nodes, self, nil
}

func hostOf(rawURL string) (string, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", fmt.Errorf("server: URL %q: %w", rawURL, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", fmt.Errorf("server: URL %q: scheme must be http or https", rawURL)
	}
	return u.Host, nil
}
