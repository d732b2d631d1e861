package router

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/tesseradb/tessera/engine"
	"github.com/tesseradb/tessera/placement"
)

// AutoCompactionConfig is etcd's --auto-compaction-mode and
// --auto-compaction-retention.
type AutoCompactionConfig struct {
	// Mode is "periodic" (retention is a duration) or "revision".
	Mode string
	// Retention is etcd's: "0" disables; in periodic mode a duration
	// ("5m", "1h") or a bare number of hours ("1" = one hour).
	Retention string
}

// AutoCompaction is a parsed auto-compaction policy; the zero value is off.
type AutoCompaction struct {
	// Period: keep this much time of history (periodic mode).
	Period time.Duration
	// Writes: keep the newest this many writes' history (revision mode).
	Writes int
	// RevisionInterval is how often revision mode compacts (5 minutes, as
	// etcd's revision compactor).
	RevisionInterval time.Duration
}

// DefaultRevisionCompactInterval is etcd's revision compactor period.
const DefaultRevisionCompactInterval = 5 * time.Minute

// ParseAutoCompaction checks the configuration and returns the policy.
func ParseAutoCompaction(c AutoCompactionConfig) (AutoCompaction, error) {
	r := strings.TrimSpace(c.Retention)
	if r == "" || r == "0" {
		return AutoCompaction{}, nil
	}
	switch c.Mode {
	case "periodic":
		if h, err := strconv.ParseFloat(r, 64); err == nil {
			if h < 0 {
				return AutoCompaction{}, fmt.Errorf("router: --auto-compaction-retention %q is negative", r)
			}
			return AutoCompaction{Period: time.Duration(h * float64(time.Hour))}, nil
		}
		d, err := time.ParseDuration(r)
		if err != nil || d < 0 {
			return AutoCompaction{}, fmt.Errorf("router: --auto-compaction-retention %q is neither a duration nor a number of hours", r)
		}
		return AutoCompaction{Period: d}, nil
	case "revision":
		n, err := strconv.ParseInt(r, 10, 64)
		if err != nil || n < 0 || n > maxRevisionRetention {
			return AutoCompaction{}, fmt.Errorf("router: --auto-compaction-retention %q: revision mode takes a number of writes in [0, %d]", r, maxRevisionRetention)
		}
		return AutoCompaction{Writes: int(n), RevisionInterval: DefaultRevisionCompactInterval}, nil
	default:
		return AutoCompaction{}, fmt.Errorf("router: unknown --auto-compaction-mode %q (periodic or revision)", c.Mode)
	}
}

// maxRevisionRetention bounds revision mode's retention: the compactor
// reads up to that many revisions of every range's change log per pass.
const maxRevisionRetention = 10_000_000

// autoCompactInterval is how often periodic auto-compaction compacts: a
// tenth of the retention (so history is kept between 1 and 1.1 times the
// retention), at most hourly, at least every second.
func autoCompactInterval(retention time.Duration) time.Duration {
	return min(max(retention/10, time.Second), time.Hour)
}

// RunAutoCompaction compacts the cluster's history until ctx ends; only
// the node leading the meta group compacts.
//
// Periodic mode: every autoCompactInterval, at the revision of the instant
// retention ago. Revisions are TSO timestamps (physical milliseconds <<
// 18), so "history older than the retention" is exactly the revisions below
// that instant; no samples of a revision counter are needed, unlike etcd.
//
// Revision mode (keep the newest N writes, etcd's "last N revisions"):
// every RevisionInterval, at the revision of the N-th newest write of the
// cluster, counted from the ranges' change logs (revisionToKeep).
func (r *Router) RunAutoCompaction(ctx context.Context, p AutoCompaction) {
	var interval time.Duration
	switch {
	case p.Period > 0:
		interval = autoCompactInterval(p.Period)
	case p.Writes > 0 && p.RevisionInterval > 0:
		interval = p.RevisionInterval
	default:
		return
	}
	retention := p.Period
	t := time.NewTicker(interval)
	defer t.Stop()
	var last engine.Revision
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		meta := r.cfg.Meta
		if meta == nil || meta.Leader() != r.nodes.Self() {
			continue // one compactor in the cluster: the meta leader's
		}
		cctx, cancel := context.WithTimeout(ctx, interval)
		rev := engine.Revision(time.Now().Add(-retention).UnixMilli() << placement.LogicalBits)
		if p.Writes > 0 {
			var err error
			if rev, err = r.revisionToKeep(cctx, p.Writes); err != nil {
				cancel()
				r.log.Warn("auto-compaction: count writes", "err", err)
				continue
			}
		}
		// Compact at most at the latest write: above it is the future.
		if cur, _, err := r.currentNow(cctx); err == nil {
			rev = min(rev, cur)
		}
		if rev <= last {
			cancel()
			continue
		}
		_, err := r.Compact(cctx, &pb.CompactionRequest{Revision: int64(rev)})
		cancel()
		if err != nil {
			r.log.Warn("auto-compaction", "revision", int64(rev), "err", err)
			continue
		}
		last = rev
		r.log.Info("auto-compacted", "revision", int64(rev), "period", p.Period, "writes", p.Writes)
	}
}
