package placement

import (
	"context"

	"github.com/tesseradb/tessera/engine"
	"github.com/tesseradb/tessera/proto/tesserapb"
)

// LatestWrite is a point of the cluster's history: Write is the revision of
// the newest write, in any range, at or below At.
type LatestWrite struct {
	At, Write engine.Revision
}

// ReadPoint is a fresh timestamp for a linearizable read with what the TSO
// knows about the writes below it (docs/decisions.md, "Header revision of a
// linearizable read"). When Complete, every range that may hold a write in
// (Floor.At, At] is in Writers; otherwise any range may.
type ReadPoint struct {
	At       engine.Revision
	Floor    LatestWrite
	Writers  []TSOWriter
	Complete bool
}

// WriteTimestamps implements shard's write clock: timestamps for n writes
// of a range, remembered by the TSO as grants to it.
func (c *TSOClient) WriteTimestamps(ctx context.Context, rangeID uint64, n int) (engine.Revision, error) {
	return c.timestamps(ctx, &tsoWaiter{n: n, rangeID: rangeID, done: make(chan struct{})})
}

// ReadTimestamp returns a fresh timestamp for a linearizable read with the
// ranges granted write timestamps since this node's floor (NoteLatestWrite).
func (c *TSOClient) ReadTimestamp(ctx context.Context) (ReadPoint, error) {
	w := &tsoWaiter{n: 1, read: true, done: make(chan struct{})}
	at, err := c.timestamps(ctx, w)
	if err != nil {
		return ReadPoint{}, err
	}
	return ReadPoint{At: at, Floor: w.floor, Writers: w.writers, Complete: w.complete}, nil
}

// ReadPointBelow is ReadTimestamp for finding the latest write at or below
// below, a revision already issued: the floor it starts from is at or
// below it (a write that changed nothing is answered at its own revision).
func (c *TSOClient) ReadPointBelow(ctx context.Context, below engine.Revision) (ReadPoint, error) {
	w := &tsoWaiter{n: 1, read: true, below: max(below, 1), done: make(chan struct{})}
	at, err := c.timestamps(ctx, w)
	if err != nil {
		return ReadPoint{}, err
	}
	return ReadPoint{At: at, Floor: w.floor, Writers: w.writers, Complete: w.complete}, nil
}

// maxFloors bounds the points a TSO client remembers: enough that a write
// that changed nothing finds one below its revision while reads go on.
const maxFloors = 64

// NoteLatestWrite records that write is the cluster's newest write at or
// below at: later reads ask the TSO only for the ranges written since.
func (c *TSOClient) NoteLatestWrite(at, write engine.Revision) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n := len(c.mu.floors); n > 0 && at <= c.mu.floors[n-1].At {
		return
	}
	if len(c.mu.floors) == maxFloors {
		c.mu.floors = append(c.mu.floors[:0], c.mu.floors[1:]...)
	}
	c.mu.floors = append(c.mu.floors, LatestWrite{At: at, Write: write})
}

// timestamps queues a waiter into the next batch and waits for it.
func (c *TSOClient) timestamps(ctx context.Context, w *tsoWaiter) (engine.Revision, error) {
	c.batches.Add(w, w.done)
	select {
	case <-w.done:
		if w.err == nil {
			c.observe(w.first + engine.Revision(w.n) - 1)
		}
		return w.first, w.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// batchParts describes a batch to the TSO: its parts (nil when none is a
// write) and, when it holds reads, the point it asks the writers since: the
// lowest of the floors its reads start from (each read gets its own floor;
// a writer listed for a lower floor is one needless ask for the others).
func (c *TSOClient) batchParts(batch []*tsoWaiter) ([]TSOPart, engine.Revision) {
	var parts []TSOPart
	writes, reads := false, false
	for _, w := range batch {
		writes = writes || w.rangeID != 0
		reads = reads || w.read
	}
	if writes {
		for _, w := range batch {
			if n := len(parts); n > 0 && w.rangeID == 0 && parts[n-1].RangeID == 0 {
				parts[n-1].Count += w.n
				continue
			}
			parts = append(parts, TSOPart{RangeID: w.rangeID, Count: w.n})
		}
	}
	var since engine.Revision
	if reads {
		c.mu.Lock()
		for _, w := range batch {
			if !w.read {
				continue
			}
			w.floor = c.floorLocked(w.below)
			if w.floor.At > 0 && (since == 0 || w.floor.At < since) {
				since = w.floor.At
			}
		}
		c.mu.Unlock()
	}
	return parts, since
}

// floorLocked returns the newest floor at or below below (0: the newest),
// or the zero point when there is none.
func (c *TSOClient) floorLocked(below engine.Revision) LatestWrite {
	for i := len(c.mu.floors) - 1; i >= 0; i-- {
		if below == 0 || c.mu.floors[i].At <= below {
			return c.mu.floors[i]
		}
	}
	return LatestWrite{}
}

// tsoRequest is the wire form of one batch.
func tsoRequest(n int, parts []TSOPart, since engine.Revision) *tesserapb.TsoRequest {
	req := &tesserapb.TsoRequest{Count: uint32(n), WritersSince: int64(since)}
	for _, p := range parts {
		req.Parts = append(req.Parts, &tesserapb.TsoPart{RangeId: p.RangeID, Count: uint32(p.Count)})
	}
	return req
}
