package router

import (
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/tesseradb/tessera/placement"
	"github.com/tesseradb/tessera/shard"
)

// Config configures a Router.
type Config struct {
	ClusterID uint64
	Nodes     *placement.Nodes
	Cache     *RangeCache
	Replicas  Replicas
	// Clock is the node's TSO client: one fresh revision per linearizable
	// read.
	Clock shard.Clock
	// Meta is this node's meta replica (nil if it holds none): it serves
	// the TSO to peers.
	Meta *placement.Meta
	// Limits are etcd's request limits (1.5 MiB, 128 ops per txn).
	Limits shard.Limits
	// Raft is the node's raft host: the operator RPCs move leaders with it.
	Raft RaftAdmin
	// TransferLeaderRetry is how often a leader transfer is asked again
	// until it lands: raft abandons one after an election timeout, so the
	// node's election timeout (0: 1 s, etcd's default).
	TransferLeaderRetry time.Duration
	// DirectoryLimits bound the range directory RPCs (zero: defaults).
	DirectoryLimits placement.DirectoryLimits
	// CompactionHoldPoll is how often a compaction held back by a backup
	// on another node asks again (0: 200 ms; compaction_hold.go).
	CompactionHoldPoll time.Duration
	// Registerer, if set, gets the router's metrics (router/metrics.go).
	Registerer prometheus.Registerer
	Logger     *slog.Logger
}

// Router serves etcd's KV API and the internal service of one node.
type Router struct {
	pb.UnimplementedKVServer

	cfg      Config
	nodes    *placement.Nodes
	cache    *RangeCache
	replicas Replicas
	clock    shard.Clock
	log      *slog.Logger
	metrics  *metrics
	// alarms: what a node without a meta replica last learned (maintenance.go).
	alarms alarmCache
	// holds: revisions of backups in progress (compaction_hold.go).
	holds compactionHolds
	// acked: the highest write revision this node acknowledged (revision.go).
	acked ackedRevision
	// split: splits and merges (split.go).
	split splitState
	// reconcileKick wakes the directory reconciliation (directory_reconcile.go).
	reconcileKick chan struct{}
}

// New returns a router.
func New(cfg Config) *Router {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	r := &Router{cfg: cfg, nodes: cfg.Nodes, cache: cfg.Cache, replicas: cfg.Replicas, clock: cfg.Clock, log: cfg.Logger, metrics: newMetrics(cfg.Registerer)}
	r.reconcileKick = make(chan struct{}, 1)
	if r.cache != nil {
		r.cache.SetDirectory(r.Directory())
	}
	return r
}

// Cache returns the router's range cache.
func (r *Router) Cache() *RangeCache { return r.cache }
