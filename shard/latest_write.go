package shard

import (
	"context"

	"fmt"

	"github.com/tesseradb/tessera/engine"
)

// latestWriteAt returns the revision of the range's newest write at or
// below at, as of snap (the change log holds one entry per revision that
// changed something: a Txn whose compare failed into reads, or a delete of
// nothing, is not a write, as in etcd). A compaction revision at or below
// at counts as a write: the change log below it is gone, and etcd's current
// revision never drops below its compaction revision. 0: no write at all.
//
// This is what a linearizable read of the range reports, so that the router
// can name etcd's current revision: the newest write of the whole cluster
// at or below the read's timestamp (docs/decisions.md, "Header revision of
// a linearizable read").
func latestWriteAt(snap engine.Reader, group uint64, at, compactRev engine.Revision) (engine.Revision, error) {
	w, err := lastChangeLogRev(snap, changeLogSpan(group, 0, at+1))
	if err != nil {
		return 0, fmt.Errorf("shard: range %d: latest write at %d: %w", group, at, err)
	}
	if compactRev <= at {
		w = max(w, compactRev)
	}
	return w, nil
}

// WriteClock is a Clock that records which range the timestamps of writes
// go to (the TSO remembers the grants so that a read learns which ranges
// may have written since a point without asking every range).
type WriteClock interface {
	WriteTimestamps(ctx context.Context, rangeID uint64, n int) (engine.Revision, error)
}

// writeTimestamps fetches the revisions of n writes of this range.
func (r *Replica) writeTimestamps(ctx context.Context, n int) (engine.Revision, error) {
	if wc, ok := r.cfg.Clock.(WriteClock); ok {
		return wc.WriteTimestamps(ctx, uint64(r.group), n)
	}
	return r.cfg.Clock.Timestamps(ctx, n)
}
