package placement

import (
	"testing"
	"time"

	"github.com/tesseradb/tessera/engine"
)

// TestLeaseValidityBounds: a lookup's valid_until is LookupValidity past a
// TSO floor at or below every timestamp handed out after it; a revocation's
// valid_until is at or above that of every lookup before it, and the
// timestamps the revocation's commands get afterwards are above every
// lookup's floor (the bounds lease_gc.go relies on).
func TestLeaseValidityBounds(t *testing.T) {
	n := startMeta(t, t.TempDir(), time.Now, true)
	m := n.meta
	d := m.mu.leaseCfg.LookupValidity
	rec := grantWhenLeading(t, m, 5, 60)
	for deadline := time.Now().Add(10 * time.Second); ; {
		if ok, _ := m.TSO().Serving(); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the TSO never served")
		}
		time.Sleep(5 * time.Millisecond) // poll interval while the TSO raises its mark
	}
	var last int64
	for range 50 {
		before, err := m.TSO().Allocate(t.Context(), 1)
		if err != nil {
			t.Fatal(err)
		}
		refs, err := m.LookupLeases([]int64{5})
		if err != nil || len(refs) != 1 || refs[0].GetIncarnation() != rec.GetIncarnation() {
			t.Fatalf("lookup: %v %v", refs, err)
		}
		after, err := m.TSO().Allocate(t.Context(), 1)
		if err != nil {
			t.Fatal(err)
		}
		f := engine.Revision(refs[0].GetValidUntil() - d.Milliseconds()<<LogicalBits)
		if f <= before || f > after {
			t.Fatalf("lookup floor %d outside (%d, %d]: timestamps before and after it", f, before, after)
		}
		if refs[0].GetValidUntil() < last {
			t.Fatalf("valid_until went back: %d after %d", refs[0].GetValidUntil(), last)
		}
		last = refs[0].GetValidUntil()
	}
	refs, err := m.StartRevoke([]int64{5})
	if err != nil || len(refs) != 1 {
		t.Fatalf("start revoke: %v %v", refs, err)
	}
	if refs[0].GetValidUntil() < last {
		t.Fatalf("revocation valid_until %d below a lookup's %d", refs[0].GetValidUntil(), last)
	}
	if got, _ := m.LookupLeases([]int64{5}); len(got) != 0 {
		t.Fatalf("lookup of a lease being revoked: %v", got)
	}
	next, err := m.TSO().Allocate(t.Context(), 1)
	if err != nil {
		t.Fatal(err)
	}
	if int64(next) < last-d.Milliseconds()<<LogicalBits {
		t.Fatalf("timestamp %d after the revocation below a lookup's floor", next)
	}
}
