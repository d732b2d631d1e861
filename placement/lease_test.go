package placement

import (
	"context"
	"errors"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/tesseradb/tessera/proto/tesserapb"
)

// grantWhenLeading grants a lease once the one-node meta group serves
// leases (it elects itself first).
func grantWhenLeading(t testing.TB, m *Meta, id, ttl int64) *tesserapb.LeaseRecord {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		rec, err := m.GrantLease(ctx, id, ttl)
		cancel()
		if err == nil {
			return rec
		}
		if time.Now().After(deadline) {
			t.Fatalf("grant lease %d: %v", id, err)
		}
		time.Sleep(5 * time.Millisecond) // poll interval while the group elects itself
	}
}

// TestLeaseLifecycle: grant (chosen id, duplicate, minimum TTL), lookup,
// keep-alive, checkpoint, revoke marking and removal, re-grant with a new
// incarnation, and a restart that keeps leases and extends them.
func TestLeaseLifecycle(t *testing.T) {
	dir := t.TempDir()
	n := startMeta(t, dir, time.Now, true)
	m := n.meta
	ctx := context.Background()
	rec := grantWhenLeading(t, m, 7, 1)
	if rec.GetTtl() != DefaultLeaseConfig().MinTTL || rec.GetIncarnation() == 0 {
		t.Fatalf("grant: %v, want the minimum TTL and an incarnation", rec)
	}
	if _, err := m.GrantLease(ctx, 7, 60); !errors.Is(err, rpctypes.ErrGRPCLeaseExist) {
		t.Fatalf("duplicate grant: %v", err)
	}
	if _, err := m.GrantLease(ctx, 8, MaxLeaseTTL+1); !errors.Is(err, rpctypes.ErrGRPCLeaseTTLTooLarge) {
		t.Fatalf("too large TTL: %v", err)
	}
	auto, err := m.GrantLease(ctx, 0, 60)
	if err != nil || auto.GetId() <= 0 {
		t.Fatalf("grant with a picked id: %v %v", auto, err)
	}
	refs, err := m.LookupLeases([]int64{7, 9, auto.GetId()})
	if err != nil || len(refs) != 2 || refs[0].GetIncarnation() != rec.GetIncarnation() {
		t.Fatalf("lookup: %v %v", refs, err)
	}
	if ttl, err := m.KeepAliveLease(ctx, auto.GetId()); err != nil || ttl != 60 {
		t.Fatalf("keep-alive: %d %v", ttl, err)
	}
	if _, err := m.KeepAliveLease(ctx, 9); !errors.Is(err, rpctypes.ErrGRPCLeaseNotFound) {
		t.Fatalf("keep-alive of unknown: %v", err)
	}
	// Lease 7 (TTL 2 s) expires: TakeExpired hands it out once.
	deadline := time.Now().Add(10 * time.Second)
	var expired []ExpiredLease
	for len(expired) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("lease 7 never expired")
		}
		expired = m.TakeExpired(time.Now(), 10)
		time.Sleep(10 * time.Millisecond) // poll interval
	}
	if len(expired) != 1 || expired[0].Ref.GetId() != 7 {
		t.Fatalf("expired: %v", expired)
	}
	if again := m.TakeExpired(time.Now(), 10); len(again) != 0 {
		t.Fatalf("expired twice: %v", again)
	}
	if refs, _ := m.LookupLeases([]int64{7}); len(refs) != 0 {
		t.Fatalf("lookup of a lease being revoked: %v", refs)
	}
	if err := m.FinishRevoke(ctx, []*tesserapb.LeaseRef{expired[0].Ref}); err != nil {
		t.Fatal(err)
	}
	re := grantWhenLeading(t, m, 7, 60)
	if re.GetIncarnation() <= rec.GetIncarnation() {
		t.Fatalf("re-grant incarnation %d, want above %d", re.GetIncarnation(), rec.GetIncarnation())
	}
	// A checkpoint records the remaining TTL of a lease whose deadline
	// moved below its TTL.
	long := grantWhenLeading(t, m, 11, 100)
	m.mu.Lock()
	m.mu.leases[11].expiry = time.Now().Add(30 * time.Second)
	m.mu.Unlock()
	if err := m.CheckpointLeases(ctx, 100); err != nil {
		t.Fatal(err)
	}
	n.stop(t)

	n = startMeta(t, dir, time.Now, false)
	defer n.stop(t)
	grantWhenLeading(t, n.meta, 12, 60) // waits for leadership
	st, ok, err := n.meta.LeaseTimeToLive(long.GetId())
	if err != nil || !ok || st.TTL != 100 || st.Remaining < 29 || st.Remaining > 32 {
		t.Fatalf("checkpointed lease after restart: %+v %v %v, want remaining ~31 s", st, ok, err)
	}
	st, ok, err = n.meta.LeaseTimeToLive(7)
	if err != nil || !ok || st.Remaining < 59 {
		t.Fatalf("lease after restart: %+v %v %v, want its full TTL plus the extension", st, ok, err)
	}
	// The first keep-alive clears the checkpoint (full TTL from then on).
	if _, err := n.meta.KeepAliveLease(ctx, long.GetId()); err != nil {
		t.Fatal(err)
	}
	n.meta.mu.Lock()
	cp := n.meta.mu.leases[long.GetId()].rec.GetRemainingTtl()
	n.meta.mu.Unlock()
	if cp != 0 {
		t.Fatalf("checkpoint after keep-alive: %d, want cleared", cp)
	}
}

// BenchmarkLeaseMemory grants TESSERA_LEASES leases (default 10,000) on a
// one-node meta group and reports the heap each costs its owner
// (B/lease: live heap after GC, divided by the leases).
func BenchmarkLeaseMemory(b *testing.B) {
	total := 10_000
	if v, err := strconv.Atoi(os.Getenv("TESSERA_LEASES")); err == nil && v > 0 {
		total = v
	}
	for range b.N {
		n := startMeta(b, b.TempDir(), time.Now, true)
		grantWhenLeading(b, n.meta, 1, 3600)
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		var next atomic.Int64
		next.Store(1)
		var wg sync.WaitGroup
		for range 64 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					id := next.Add(1)
					if id > int64(total)+1 {
						return
					}
					if _, err := n.meta.GrantLease(context.Background(), id, 3600); err != nil {
						b.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		runtime.GC()
		runtime.ReadMemStats(&after)
		if got := n.meta.LeaseCount(); got != total+1 {
			b.Fatalf("%d leases, want %d", got, total+1)
		}
		b.ReportMetric(float64(int64(after.HeapAlloc)-int64(before.HeapAlloc))/float64(total), "B/lease")
		n.stop(b)
	}
}
