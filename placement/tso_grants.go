package placement

import (
	"github.com/tesseradb/tessera/engine"
)

// TSOPart is one request of a TSO batch: Count timestamps, granted to the
// writes of range RangeID (0: not a write).
type TSOPart struct {
	RangeID uint64
	Count   int
}

// TSOWriter is a range granted write timestamps above a point: Lowest is
// the lowest of them.
type TSOWriter struct {
	RangeID uint64
	Lowest  engine.Revision
}

// grant is one batch of write timestamps [first, last] given to a range.
type grant struct {
	rangeID     uint64
	first, last engine.Revision
}

// grantLog remembers, on the serving TSO leader, which ranges it granted
// write timestamps to, newest last, so that a read at R can learn which
// ranges may have written since a point where the latest write is known
// without asking every range (docs/decisions.md, "Header revision of a
// linearizable read"). A grant is not a write (the batch may fail, the
// Txn may write nothing): the ranges named are asked.
//
// It is complete above floor: every write timestamp above floor that any
// TSO leader ever handed out is in it. A new leader starts with floor just
// below its first timestamp (it knows nothing of its predecessors' grants);
// dropping the oldest grants to bound memory raises floor past them.
type grantLog struct {
	grants []grant
	floor  engine.Revision
	limit  int // most grants kept
}

// reset forgets every grant: the log is complete above floor from now on.
func (g *grantLog) reset(floor engine.Revision) {
	g.grants = g.grants[:0]
	g.floor = floor
}

// add records the grants of one TSO batch starting at first.
func (g *grantLog) add(first engine.Revision, parts []TSOPart) {
	next := first
	for _, p := range parts {
		if p.RangeID != 0 && p.Count > 0 {
			g.grants = append(g.grants, grant{rangeID: p.RangeID, first: next, last: next + engine.Revision(p.Count) - 1})
		}
		next += engine.Revision(p.Count)
	}
	if over := len(g.grants) - g.limit; over > 0 {
		// Drop the oldest half at once (amortized O(1) per grant).
		cut := max(over, g.limit/2)
		g.floor = max(g.floor, g.grants[cut-1].last)
		g.grants = append(g.grants[:0], g.grants[cut:]...)
	}
}

// writersSince lists the ranges granted write timestamps above since, each
// with the lowest such timestamp, and whether the list is complete (since
// is within what the log remembers and at most maxWriters ranges).
func (g *grantLog) writersSince(since engine.Revision, maxWriters int) ([]TSOWriter, bool) {
	if since < g.floor {
		return nil, false
	}
	idx := map[uint64]int{}
	var out []TSOWriter
	for i := len(g.grants) - 1; i >= 0 && g.grants[i].last > since; i-- {
		gr := g.grants[i]
		low := max(gr.first, since+1)
		if j, ok := idx[gr.rangeID]; ok {
			out[j].Lowest = min(out[j].Lowest, low)
			continue
		}
		if len(out) == maxWriters {
			return nil, false
		}
		idx[gr.rangeID] = len(out)
		out = append(out, TSOWriter{RangeID: gr.rangeID, Lowest: low})
	}
	return out, true
}
