package placement

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/tesseradb/tessera/engine"
)

// TestTSOWritersSinceAcrossLeaderChange: the TSO names the ranges granted
// write timestamps since a point, and a new leadership (here a restart)
// knows none of its predecessors' grants: it answers "incomplete" for any
// point before it started.
func TestTSOWritersSinceAcrossLeaderChange(t *testing.T) {
	dir := t.TempDir()
	clk := &fakeClock{}
	clk.ms.Store(time.Now().UnixMilli())
	n := startMeta(t, dir, clk.now, true)
	floor := allocate(t, n.meta.TSO(), 1) // serving; a read's point
	ctx := context.Background()
	// A batch: a read, two writes of range 7, one of range 9.
	first, _, _, err := n.meta.TSO().AllocateFor(ctx, 4, []TSOPart{{0, 1}, {7, 2}, {9, 1}}, 0)
	if err != nil {
		t.Fatal(err)
	}
	at, writers, complete, err := n.meta.TSO().AllocateFor(ctx, 1, nil, floor)
	if err != nil {
		t.Fatal(err)
	}
	want := []TSOWriter{{7, first + 1}, {9, first + 3}}
	slices.SortFunc(writers, func(a, b TSOWriter) int { return int(a.RangeID) - int(b.RangeID) })
	if !complete || !slices.Equal(writers, want) {
		t.Fatalf("writers since %d: %v complete=%v, want %v", floor, writers, complete, want)
	}
	// Since the last write: nobody.
	if _, writers, complete, err := n.meta.TSO().AllocateFor(ctx, 1, nil, at); err != nil || !complete || len(writers) != 0 {
		t.Fatalf("writers since %d: %v complete=%v err=%v, want none, complete", at, writers, complete, err)
	}
	n.stop(t)

	n = startMeta(t, dir, clk.now, false)
	defer n.stop(t)
	allocate(t, n.meta.TSO(), 1)
	if _, writers, complete, err := n.meta.TSO().AllocateFor(ctx, 1, nil, at); err != nil || complete {
		t.Fatalf("new leadership, writers since %d (before it): %v complete=%v err=%v, want incomplete", at, writers, complete, err)
	}
	// Parts must add up.
	if _, _, _, err := n.meta.TSO().AllocateFor(ctx, 3, []TSOPart{{7, 1}}, 0); err == nil {
		t.Fatal("parts summing to 1 for 3 timestamps accepted")
	}
}

func TestTSOClientFloors(t *testing.T) {
	c := &TSOClient{}
	if f := c.floorLocked(0); f.At != 0 {
		t.Fatalf("no floor yet: %v", f)
	}
	for i := 1; i <= maxFloors+10; i++ {
		c.NoteLatestWrite(engine.Revision(i*10), engine.Revision(i*10-3))
	}
	c.NoteLatestWrite(15, 1) // older than the newest: ignored
	if n := len(c.mu.floors); n != maxFloors {
		t.Fatalf("%d floors kept, want %d", n, maxFloors)
	}
	if f := c.floorLocked(0); f.At != engine.Revision((maxFloors+10)*10) {
		t.Fatalf("newest floor %v", f)
	}
	if f := c.floorLocked(505); f.At != 500 || f.Write != 497 {
		t.Fatalf("floor at or below 505: %v, want 500", f)
	}
	if f := c.floorLocked(50); f.At != 0 {
		t.Fatalf("floor below every kept one: %v, want none", f)
	}
}
