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
	// Writes granted to this range that a split moved to a right half
	// still count: the TSO names this range, not the half, as their writer
	// (see movedWriteKey).
	m, err := lastChangeLogRev(snap, movedWriteSpan(group, 0, at+1))
	if err != nil {
		return 0, fmt.Errorf("shard: range %d: latest moved write at %d: %w", group, at, err)
	}
	w = max(w, m)
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

// movedWriteKey marks a revision whose writes a split moved wholly to the
// right half (the left's change-log entry went with them). The TSO records
// a write's range id when it grants the timestamp, so a linearizable read
// that covers the left (and so does not ask it separately) or asks it as a
// writer must still learn of that write from the left: its latest write
// counts these marks. Compaction cuts them with the change log; a merge
// hands the right's marks to the left.
func movedWriteKey(group uint64, rev engine.Revision) []byte {
	return engine.LocalGroupIndexKey(group, engine.KindMovedWrite, uint64(rev))
}

// movedWriteSpan covers the marks of revisions in [from, to).
func movedWriteSpan(group uint64, from, to engine.Revision) engine.Span {
	return engine.Span{Start: movedWriteKey(group, from), End: movedWriteKey(group, to)}
}
