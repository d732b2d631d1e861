package router

import (
	"errors"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
)

// compactedReadAttempts bounds how often a linearizable read that names no
// revision is tried, each time at a fresh timestamp, while ranges refuse it
// as compacted. A range refuses a read whose timestamp is below its
// compaction revision (shard.Replica.Read): that happens to a read when a
// compaction at a revision above its timestamp applied while it was under
// way, and a fresh timestamp is above that compaction (its revision was
// issued before). Three attempts ride out two such races in a row; a range
// that still refuses has a compaction above every issued revision, and the
// client gets etcd's ErrCompacted rather than a partial answer.
const compactedReadAttempts = 3

// retryCompactedRead reports whether a read that failed with err on the
// given attempt (0 first) should be tried again at a fresh timestamp:
// only a read at the router's own timestamp (named no revision, not
// serializable) refused as compacted, while attempts remain.
func retryCompactedRead(err error, attempt int, ownTimestamp bool) bool {
	return ownTimestamp && attempt+1 < compactedReadAttempts && isCompacted(err)
}

// isCompacted reports whether err is etcd's ErrCompacted, from a local
// replica or through a peer's internal service.
func isCompacted(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, rpctypes.ErrGRPCCompacted) {
		return true
	}
	return rpctypes.ErrorDesc(err) == rpctypes.ErrorDesc(rpctypes.ErrGRPCCompacted)
}
