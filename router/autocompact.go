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

// ParseAutoCompaction checks the configuration and returns the periodic
// retention (0: off).
func ParseAutoCompaction(c AutoCompactionConfig) (time.Duration, error) {
	r := strings.TrimSpace(c.Retention)
	if r == "" || r == "0" {
		return 0, nil
	}
	switch c.Mode {
	case "periodic":
		if h, err := strconv.ParseFloat(r, 64); err == nil {
			if h < 0 {
				return 0, fmt.Errorf("router: --auto-compaction-retention %q is negative", r)
			}
			return time.Duration(h * float64(time.Hour)), nil
		}
		d, err := time.ParseDuration(r)
		if err != nil || d < 0 {
			return 0, fmt.Errorf("router: --auto-compaction-retention %q is neither a duration nor a number of hours", r)
		}
		return d, nil
	case "revision":
		return 0, fmt.Errorf("router: --auto-compaction-mode revision is not supported yet: revisions are timestamps, so \"the last N revisions\" needs a count of writes across ranges (docs/operations.md); use periodic")
	default:
		return 0, fmt.Errorf("router: unknown --auto-compaction-mode %q (periodic or revision)", c.Mode)
	}
}

// autoCompactInterval is how often periodic auto-compaction compacts: a
// tenth of the retention (so history is kept between 1 and 1.1 times the
// retention), at most hourly, at least every second.
func autoCompactInterval(retention time.Duration) time.Duration {
	return min(max(retention/10, time.Second), time.Hour)
}

// RunAutoCompaction compacts the cluster's history periodically until ctx
// ends: every autoCompactInterval, the node leading the meta group compacts
// at the revision of the instant retention ago. Revisions are TSO
// timestamps (physical milliseconds << 18), so "history older than the
// retention" is exactly the revisions below that instant; no write count
// is needed, unlike etcd, which keeps samples of its revision counter.
func (r *Router) RunAutoCompaction(ctx context.Context, retention time.Duration) {
	if retention <= 0 {
		return
	}
	t := time.NewTicker(autoCompactInterval(retention))
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
		rev := engine.Revision(time.Now().Add(-retention).UnixMilli() << placement.LogicalBits)
		if rev <= last {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, autoCompactInterval(retention))
		_, err := r.Compact(cctx, &pb.CompactionRequest{Revision: int64(rev)})
		cancel()
		if err != nil {
			r.log.Warn("auto-compaction", "revision", int64(rev), "err", err)
			continue
		}
		last = rev
		r.log.Info("auto-compacted", "revision", int64(rev), "retention", retention)
	}
}
