package watchhub

import (
	"context"
	"fmt"
	"time"

	"github.com/tesseradb/tessera/engine"
	"github.com/tesseradb/tessera/internal/backoff"
)

// The revisions the hub reports are etcd's current revisions: the latest
// write of the cluster, never a bare timestamp (docs/decisions.md, "Header
// revision of a linearizable read").
//
//   - A watch created without a start revision watches from a fresh
//     timestamp R on (events above R) and its created response names the
//     latest write at or below R (Config.Current).
//   - A progress response (RequestProgress, or a progress notification)
//     waits, as before, until every event up to its fresh timestamp R was
//     sent, and then names the higher of the latest write at or below R and
//     the newest event the hub released: all events up to it were sent (it
//     is at or below the release point), and with no write since R it is
//     the same revision a read reports.
//   - An event response names its newest event's revision.

// current returns etcd's current revision with the fresh timestamp it is
// the latest write at or below, retrying while the TSO is unavailable until
// ctx ends.
func (h *Hub) current(ctx context.Context) (cur, at engine.Revision, err error) {
	if h.cfg.Current == nil {
		at, err := h.now(ctx)
		return at, at, err
	}
	retry := backoff.New(tsoRetryBackoff)
	for {
		tctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		cur, at, err := h.cfg.Current(tctx)
		cancel()
		if err == nil {
			return cur, at, nil
		}
		if retry.Wait(ctx) != nil {
			return 0, 0, fmt.Errorf("watchhub: current revision: %w", err)
		}
	}
}

// progressRevLocked is the revision of a progress response whose fresh
// timestamp's latest write is cur, once every event up to that timestamp
// was sent.
func (h *Hub) progressRevLocked(cur engine.Revision) engine.Revision {
	return max(cur, h.mu.lastEvent)
}
