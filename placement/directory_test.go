package placement

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/tesseradb/tessera/proto/tesserapb"
	"github.com/tesseradb/tessera/raftgroup"
)

// reportWhenLeading reports descriptors once the one-node meta group leads.
func reportWhenLeading(t testing.TB, m *Meta, ds ...*tesserapb.RangeDescriptor) int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		n, err := m.ReportRanges(ctx, ds)
		cancel()
		if err == nil {
			return n
		}
		if !errors.Is(err, raftgroup.ErrNotLeader) || time.Now().After(deadline) {
			t.Fatalf("report: %v", err)
		}
		time.Sleep(5 * time.Millisecond) // poll interval while the group elects itself
	}
}

// TestDirectory: the directory starts as the bootstrap layout; a split's
// halves replace their parent, a stale report changes nothing, lookups and
// paginated scans see the result linearizably, and a restart keeps it.
func TestDirectory(t *testing.T) {
	dir := t.TempDir()
	n := startMeta(t, dir, time.Now, true)
	m := n.meta
	ctx := context.Background()
	boot := m.Bootstrap().GetRanges()
	if len(boot) != 1 {
		t.Fatalf("bootstrap layout: %v", boot)
	}
	parent := boot[0] // [ , ) generation 1
	left := &tesserapb.RangeDescriptor{RangeId: parent.GetRangeId(), EndKey: []byte("m"), Replicas: parent.GetReplicas(), Generation: 2}
	// The left half arrives first: [m, end) is a gap until the right half.
	if got := reportWhenLeading(t, m, left); got != 1 {
		t.Fatalf("left half recorded %d, want 1", got)
	}
	if d, err := m.LookupRange(ctx, []byte("z")); err != nil || d != nil {
		t.Fatalf("lookup in the gap: %v %v, want none", d, err)
	}
	right := &tesserapb.RangeDescriptor{RangeId: 9, StartKey: []byte("m"), Replicas: parent.GetReplicas(), Generation: 2}
	if got := reportWhenLeading(t, m, right, parent, left); got != 1 {
		t.Fatalf("right half with a stale parent and a repeat recorded %d, want 1", got)
	}
	check := func(m *Meta) {
		t.Helper()
		for key, want := range map[string]uint64{"": parent.GetRangeId(), "l": parent.GetRangeId(), "m": 9, "zz": 9} {
			d, err := m.LookupRange(ctx, []byte(key))
			if err != nil || d.GetRangeId() != want || d.GetGeneration() != 2 {
				t.Fatalf("lookup %q: %v %v, want range %d generation 2", key, d, err, want)
			}
		}
		page, more, err := m.ScanRanges(ctx, nil, 1)
		if err != nil || len(page) != 1 || !more || page[0].GetRangeId() != parent.GetRangeId() {
			t.Fatalf("scan page 1: %v more=%v %v", page, more, err)
		}
		page, more, err = m.ScanRanges(ctx, page[0].GetEndKey(), 1)
		if err != nil || len(page) != 1 || more || page[0].GetRangeId() != 9 {
			t.Fatalf("scan page 2: %v more=%v %v", page, more, err)
		}
	}
	check(m)
	n.stop(t)
	n = startMeta(t, dir, time.Now, false)
	defer n.stop(t)
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := n.meta.LookupRange(ctx, nil)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("lookup after restart: %v", err)
		}
		time.Sleep(5 * time.Millisecond) // poll interval while the group elects itself
	}
	check(n.meta)
}
