package router

import (
	"context"
	"fmt"
	"time"

	"github.com/tesseradb/tessera/proto/tesserapb"
)

// Reconciliation: the directory is updated by whoever ran a split or merge,
// right after it; a crash in between leaves the directory behind the
// ranges. So every node also reports the descriptors of the ranges it
// leads whenever they changed since its last successful report, after a
// kick (a descriptor changed here) and every Interval; the meta leader
// proposes only the ones newer than what the directory holds.

// ReconcileConfig configures the directory reconciliation of a node.
type ReconcileConfig struct {
	// Interval between rounds (10 s: a directory left behind by a crash
	// heals within it, and an idle node sends nothing).
	Interval time.Duration
	// Timeout bounds one round's report (5 s: a meta election is ~1 s).
	Timeout time.Duration
}

// DefaultReconcileConfig returns the defaults described on ReconcileConfig.
func DefaultReconcileConfig() ReconcileConfig {
	return ReconcileConfig{Interval: 10 * time.Second, Timeout: 5 * time.Second}
}

// Validate checks the configuration.
func (c ReconcileConfig) Validate() error {
	if c.Interval <= 0 || c.Timeout <= 0 {
		return fmt.Errorf("router: directory reconcile config: interval %v and timeout %v must be positive", c.Interval, c.Timeout)
	}
	return nil
}

// KickReconcile asks for a reconciliation round now (a descriptor of a
// range this node leads changed).
func (r *Router) KickReconcile() {
	select {
	case r.reconcileKick <- struct{}{}:
	default:
	}
}

// RunReconcile reports, until ctx ends, the descriptors of the ranges this
// node leads (leading lists them) to the directory, and puts them in the
// node's range cache.
func (r *Router) RunReconcile(ctx context.Context, cfg ReconcileConfig, leading func() []*tesserapb.RangeDescriptor) {
	t := time.NewTicker(cfg.Interval)
	defer t.Stop()
	reported := map[uint64]uint64{} // range id -> generation last recorded
	for {
		r.reconcileOnce(ctx, cfg, leading(), reported)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-r.reconcileKick:
		}
	}
}

func (r *Router) reconcileOnce(ctx context.Context, cfg ReconcileConfig, led []*tesserapb.RangeDescriptor, reported map[uint64]uint64) {
	var send []*tesserapb.RangeDescriptor
	seen := make(map[uint64]bool, len(led))
	for _, d := range led {
		seen[d.GetRangeId()] = true
		r.cache.Update(d)
		if reported[d.GetRangeId()] != d.GetGeneration() {
			send = append(send, d)
		}
	}
	for id := range reported {
		if !seen[id] {
			delete(reported, id) // report it again if leadership comes back
		}
	}
	if len(send) == 0 {
		return
	}
	lim := r.dirLimits().MaxReport
	for len(send) > 0 {
		batch := send[:min(len(send), lim)]
		send = send[len(batch):]
		rctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
		err := r.Directory().Update(rctx, batch...)
		cancel()
		if err != nil {
			r.log.Debug("directory reconcile", "ranges", len(batch), "err", err)
			return
		}
		r.metrics.dirReports.Add(float64(len(batch)))
		for _, d := range batch {
			reported[d.GetRangeId()] = d.GetGeneration()
		}
	}
}
