package server

import (
	"cmp"
	"slices"
	"strconv"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tesseradb/tessera/placement"
	"github.com/tesseradb/tessera/raftgroup"
	"github.com/tesseradb/tessera/shard"
)

// DefaultMetricsTopRanges is how many ranges a node reports per-range
// series for (its busiest local replicas): enough to find the hot ranges,
// bounded whatever the number of ranges.
const DefaultMetricsTopRanges = 10

// maxMetricsTopRanges caps --metrics-top-ranges: per-range series are for
// finding hot ranges, not for exporting every range.
const maxMetricsTopRanges = 1000

// nodeCollector reports, at scrape time, what is a function of the node's
// replicas: etcd's server gauges in their multi-range meaning
// (docs/operations.md), replica states, and the per-range series of the
// busiest ranges. Every metric has a bounded number of series.
type nodeCollector struct {
	s *Server

	hasLeader, isLeader, leaderChanges            *prometheus.Desc
	committed, applied, pending                   *prometheus.Desc
	dbSize, dbInUse, quota, engineSize            *prometheus.Desc
	replicas, underReplicated, pendingWrites      *prometheus.Desc
	rangeLoad, rangeLeader, rangeResolvedRevision *prometheus.Desc
	placementRanges                               *prometheus.Desc
}

func newNodeCollector(s *Server) *nodeCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, nil)
	}
	return &nodeCollector{
		s:             s,
		hasLeader:     d("etcd_server_has_leader", "1 if every Raft group on this node (the meta group and each local range) knows a leader, else 0."),
		isLeader:      d("etcd_server_is_leader", "1 if this node leads the meta group (the placement driver and TSO), else 0."),
		leaderChanges: d("etcd_server_leader_changes_seen_total", "Leader changes of the meta group seen by this node (0 on a node without a meta replica)."),
		committed:     d("etcd_server_proposals_committed_total", "Sum over this node's Raft groups of their committed index."),
		applied:       d("etcd_server_proposals_applied_total", "Sum over this node's Raft groups of their applied index."),
		pending:       d("etcd_server_proposals_pending", "Writes held by range leaders on this node that have not applied yet."),
		dbSize:        d("etcd_mvcc_db_total_size_in_bytes", "Bytes the node's storage engine (one Pebble for all its ranges) takes on disk."),
		dbInUse:       d("etcd_mvcc_db_total_size_in_use_in_bytes", "Same as etcd_mvcc_db_total_size_in_bytes: Pebble has no free pages to reuse."),
		quota:         d("etcd_server_quota_backend_bytes", "Size the engine may reach before this node raises NOSPACE: its size plus the free space above --quota-free-bytes, capped by --quota-backend-bytes."),
		engineSize:    d("tessera_engine_disk_usage_bytes", "Bytes the node's storage engine takes on disk."),
		replicas:      d("tessera_shard_replicas", "Range replicas on this node by state: leader, follower, or no_leader (the replica knows no leader: the range may be unavailable).", "state"),
		underReplicated: d("tessera_shard_ranges_underreplicated",
			"Ranges led by this node with a voter it has not heard from within an election timeout."),
		pendingWrites: d("tessera_shard_pending_writes", "Writes held by range leaders on this node that have not applied yet."),
		rangeLoad: d("tessera_range_load_requests_per_second",
			"Recent requests per second of one range replica, for this node's busiest ranges only (--metrics-top-ranges).", "range"),
		rangeLeader: d("tessera_range_is_leader",
			"1 if this node leads the range, for this node's busiest ranges only (--metrics-top-ranges).", "range"),
		rangeResolvedRevision: d("tessera_range_resolved_revision",
			"Resolved revision of a range replica (revision timestamps: physical ms << 18), for this node's busiest ranges only.", "range"),
		placementRanges: d("tessera_placement_ranges",
			"Data ranges in the cluster's layout, exported by the meta group's leader only: minus the sum of range leaders over the nodes, it counts the ranges without a leader."),
	}
}

func (c *nodeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.hasLeader, c.isLeader, c.leaderChanges, c.committed, c.applied, c.pending,
		c.dbSize, c.dbInUse, c.quota, c.engineSize, c.replicas, c.underReplicated, c.pendingWrites,
		c.rangeLoad, c.rangeLeader, c.rangeResolvedRevision, c.placementRanges} {
		ch <- d
	}
}

type rangeLoad struct {
	id     uint64
	load   float64
	leader bool
	rep    *shard.Replica
}

func (c *nodeCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.s
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	hasLeader := true
	var isLeader bool
	var leaderChanges, committed, applied uint64
	if s.meta != nil {
		if st, err := s.host.Status(placement.MetaRangeID); err == nil {
			hasLeader = st.Leader != 0
			isLeader = st.IsLeader
			leaderChanges = st.LeaderChanges
			committed += st.Commit
			applied += st.Applied
		}
	}
	var leaders, followers, noLeader, under, pending int
	reps := s.store.Replicas()
	loads := make([]rangeLoad, 0, len(reps))
	for _, rep := range reps {
		id := rep.Descriptor().GetRangeId()
		st, err := s.host.Status(raftgroup.GroupID(id))
		if err != nil {
			continue
		}
		committed += st.Commit
		applied += st.Applied
		switch {
		case st.Leader == 0:
			noLeader++
			hasLeader = false
		case st.IsLeader:
			leaders++
			if st.ActiveVoters < len(st.Voters) {
				under++
			}
		default:
			followers++
		}
		pending += rep.PendingWrites()
		if c.s.cfg.MetricsTopRanges > 0 {
			loads = append(loads, rangeLoad{id: id, load: rep.Load(), leader: st.IsLeader, rep: rep})
		}
	}
	gauge(c.hasLeader, b2f(hasLeader))
	gauge(c.isLeader, b2f(isLeader))
	if isLeader {
		gauge(c.placementRanges, float64(len(s.router.Cache().Ranges())))
	}
	ch <- prometheus.MustNewConstMetric(c.leaderChanges, prometheus.CounterValue, float64(leaderChanges))
	gauge(c.committed, float64(committed))
	gauge(c.applied, float64(applied))
	gauge(c.pending, float64(pending))
	gauge(c.pendingWrites, float64(pending))
	gauge(c.replicas, float64(leaders), "leader")
	gauge(c.replicas, float64(followers), "follower")
	gauge(c.replicas, float64(noLeader), "no_leader")
	gauge(c.underReplicated, float64(under))

	size := float64(s.eng.DiskSpaceUsage())
	gauge(c.engineSize, size)
	gauge(c.dbSize, size)
	gauge(c.dbInUse, size)
	if q, ok := c.effectiveQuota(size); ok {
		gauge(c.quota, q)
	}

	// The busiest ranges: highest load first, range id breaking ties so
	// that idle nodes report a stable set.
	slices.SortFunc(loads, func(a, b rangeLoad) int {
		if a.load != b.load {
			return cmp.Compare(b.load, a.load)
		}
		return cmp.Compare(a.id, b.id)
	})
	for _, l := range loads[:min(len(loads), c.s.cfg.MetricsTopRanges)] {
		id := strconv.FormatUint(l.id, 10)
		gauge(c.rangeLoad, l.load, id)
		gauge(c.rangeLeader, b2f(l.leader), id)
		gauge(c.rangeResolvedRevision, float64(l.rep.Status().Resolved), id)
	}
}

// effectiveQuota is the engine size at which this node raises NOSPACE:
// its size plus the free space above --quota-free-bytes, capped by
// --quota-backend-bytes (which etcd compares with its db size).
func (c *nodeCollector) effectiveQuota(size float64) (float64, bool) {
	cfg := c.s.cfg
	q := -1.0
	if cfg.QuotaFreeBytes > 0 {
		var st syscall.Statfs_t
		if err := syscall.Statfs(cfg.DataDir, &st); err == nil {
			q = size + float64(int64(st.Bavail)*int64(st.Bsize)-cfg.QuotaFreeBytes)
		}
	}
	if b := float64(cfg.QuotaBackendBytes); b > 0 && (q < 0 || b < q) {
		q = b
	}
	return q, q >= 0
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
