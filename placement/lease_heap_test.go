package placement

import (
	"slices"
	"testing"
	"time"

	"github.com/tesseradb/tessera/proto/tesserapb"
)

// TestLeaseExpiryOrder: the meta leader hands out expired leases earliest
// deadline first, at most limit at a time, never twice while revoked; an
// aborted revocation puts a lease back, a removed one is gone, and a
// keep-alive moves a deadline.
func TestLeaseExpiryOrder(t *testing.T) {
	n := startMeta(t, t.TempDir(), time.Now, true)
	m := n.meta
	for id := int64(1); id <= 5; id++ {
		grantWhenLeading(t, m, id, 10*id) // deadlines 10 s apart
	}
	t0 := time.Now()
	ids := func(ex []ExpiredLease) []int64 {
		var out []int64
		for _, e := range ex {
			out = append(out, e.Ref.GetId())
		}
		return out
	}
	take := func(at time.Duration, limit int) []ExpiredLease {
		t.Helper()
		var ex []ExpiredLease
		for deadline := time.Now().Add(10 * time.Second); ; {
			// The TSO floor needs the TSO to serve (lease_gc.go).
			if ex = m.TakeExpired(t0.Add(at), limit); len(ex) > 0 || time.Now().After(deadline) {
				return ex
			}
			if ok, _ := m.TSO().Serving(); ok {
				return ex
			}
			time.Sleep(5 * time.Millisecond) // poll interval while the TSO starts
		}
	}
	if got := ids(take(25*time.Second, 1)); !slices.Equal(got, []int64{1}) {
		t.Fatalf("first expired: %v, want [1]", got)
	}
	second := take(25*time.Second, 10)
	if got := ids(second); !slices.Equal(got, []int64{2}) {
		t.Fatalf("then: %v, want [2] (1 is being revoked)", got)
	}
	if got := ids(take(25*time.Second, 10)); len(got) != 0 {
		t.Fatalf("handed out twice: %v", got)
	}
	m.AbortRevoke([]*tesserapb.LeaseRef{second[0].Ref})
	if got := ids(take(25*time.Second, 10)); !slices.Equal(got, []int64{2}) {
		t.Fatalf("after an aborted revocation: %v, want [2]", got)
	}
	if err := m.FinishRevoke(t.Context(), []*tesserapb.LeaseRef{second[0].Ref}); err != nil {
		t.Fatal(err)
	}
	m.AbortRevoke([]*tesserapb.LeaseRef{second[0].Ref})
	if got := ids(take(25*time.Second, 10)); len(got) != 0 {
		t.Fatalf("a removed lease expired: %v", got)
	}
	// A keep-alive of lease 3 (TTL 30 s) moves its deadline past lease 4's
	// (40 s from t0) only if it comes 10 s later; it comes now, so its
	// order stays, and both go once both deadlines passed.
	if _, err := m.KeepAliveLease(t.Context(), 3); err != nil {
		t.Fatal(err)
	}
	if got := ids(take(45*time.Second, 10)); !slices.Equal(got, []int64{3, 4}) {
		t.Fatalf("at 45 s: %v, want [3 4]", got)
	}
}
