package placement

import (
	"slices"
	"testing"

	"github.com/tesseradb/tessera/engine"
)

func TestGrantLogWritersSince(t *testing.T) {
	g := grantLog{limit: 8}
	g.reset(99)
	// Timestamps 100..: a read (1), range 7 (2 writes), a read, range 9 (1),
	// range 7 (1).
	g.add(100, []TSOPart{{0, 1}, {7, 2}, {0, 1}, {9, 1}, {7, 1}})
	g.add(106, nil) // a batch of reads only grants nothing
	for _, tc := range []struct {
		since    engine.Revision
		want     []TSOWriter
		complete bool
	}{
		{since: 98, complete: false}, // below what the log remembers
		{since: 99, want: []TSOWriter{{7, 101}, {9, 104}}, complete: true},
		{since: 101, want: []TSOWriter{{7, 102}, {9, 104}}, complete: true},
		{since: 104, want: []TSOWriter{{7, 105}}, complete: true},
		{since: 105, complete: true},
	} {
		got, complete := g.writersSince(tc.since, 10)
		slices.SortFunc(got, func(a, b TSOWriter) int { return int(a.RangeID) - int(b.RangeID) })
		if complete != tc.complete || !slices.Equal(got, tc.want) {
			t.Errorf("since %d: %v complete=%v, want %v complete=%v", tc.since, got, complete, tc.want, tc.complete)
		}
	}
	if _, complete := g.writersSince(99, 1); complete {
		t.Error("two writers with a cap of one: complete")
	}
	// Past the limit the oldest grants go and the floor rises past them.
	for i := range 10 {
		g.add(engine.Revision(200+i), []TSOPart{{uint64(20 + i), 1}})
	}
	if _, complete := g.writersSince(150, 100); complete {
		t.Errorf("since 150 after dropping old grants (floor %d): complete", g.floor)
	}
	got, complete := g.writersSince(g.floor, 100)
	if !complete || len(got) == 0 || len(g.grants) > 8 {
		t.Errorf("since the floor %d: %v complete=%v (%d grants kept)", g.floor, got, complete, len(g.grants))
	}
}
