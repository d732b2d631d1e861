package shard

import (
	"errors"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/protobuf/proto"

	"github.com/tesseradb/tessera/engine"
	"github.com/tesseradb/tessera/proto/tesserapb"
)

// leasedWrite applies op at rev carrying one lease reference and returns
// the command's result.
func (h *hashReplica) leasedWrite(rev engine.Revision, op *pb.RequestOp, ref *tesserapb.LeaseRef) error {
	h.t.Helper()
	data, err := proto.Marshal(op)
	if err != nil {
		h.t.Fatal(err)
	}
	cmd := &tesserapb.ShardCommand{Revision: int64(rev), RequestOp: data, Generation: 1}
	if ref != nil {
		cmd.Leases = []*tesserapb.LeaseRef{ref}
	}
	return h.lastResult(cmd)
}

// revokeAt applies a revocation of refs at rev.
func (h *hashReplica) revokeAt(rev engine.Revision, refs ...*tesserapb.LeaseRef) {
	h.t.Helper()
	if err := h.lastResult(&tesserapb.ShardCommand{Revision: int64(rev), Generation: 1, RevokeLeases: refs}); err != nil {
		h.t.Fatalf("revoke at %d: %v", rev, err)
	}
}

// countKind counts the range's local keys of one kind.
func (h *hashReplica) countKind(kind byte) int {
	h.t.Helper()
	it, err := h.e.NewIter(engine.LocalGroupKindSpan(hashTestDesc.GetRangeId(), kind))
	if err != nil {
		h.t.Fatal(err)
	}
	defer it.Close()
	n := 0
	for ok := it.First(); ok; ok = it.Next() {
		n++
	}
	return n
}

// TestRevokedLeaseRecordsForgotten: a range keeps the record of a revoked
// lease until it applies a write above the revocation's valid_until, then
// drops it (with its queue entry) on every replica alike; a stale put with
// the revoked incarnation fails before (lease not found, from the record)
// and after (its lookup expired); a lookup-expired write changes nothing;
// a later grant of the same id is accepted; a revocation tried again with a
// later valid_until keeps the record that long.
func TestRevokedLeaseRecordsForgotten(t *testing.T) {
	replicas := []*hashReplica{newHashReplica(t), newHashReplica(t)}
	const sec = engine.Revision(1000 << 18) // one second of TSO time
	rev := baseRev
	each := func(name string, fn func(h *hashReplica)) {
		t.Helper()
		for _, h := range replicas {
			fn(h)
		}
		if a, b := replicas[0].hash(), replicas[1].hash(); a != b {
			t.Fatalf("%s: replicas' hashes differ: %+v vs %+v", name, a, b)
		}
	}
	records := func(h *hashReplica, want int) {
		t.Helper()
		if n, q := h.countKind(engine.KindRevokedLease), h.countKind(engine.KindRevokedGC); n != want || q != want {
			t.Fatalf("%d revocation records and %d queue entries, want %d each", n, q, want)
		}
	}
	stale := &tesserapb.LeaseRef{Id: 7, Incarnation: 1, ValidUntil: int64(baseRev + 30*sec)}
	each("put with a lease", func(h *hashReplica) {
		if err := h.leasedWrite(rev+1, leasePutOp("a", 7), stale); err != nil {
			t.Fatal(err)
		}
	})
	revoked := baseRev + 2*sec
	forget := revoked + 30*sec // the revocation's valid_until: above every lookup's
	each("revoke", func(h *hashReplica) {
		h.revokeAt(revoked, &tesserapb.LeaseRef{Id: 7, Incarnation: 1, ValidUntil: int64(forget)})
		records(h, 1)
		if _, ok, err := engine.MVCCGet(h.e, []byte("a"), revoked); err != nil || ok {
			t.Fatalf("a after the revocation: live %v, %v", ok, err)
		}
	})
	each("stale put before the record may go", func(h *hashReplica) {
		if err := h.leasedWrite(engine.Revision(stale.ValidUntil), leasePutOp("b", 7), stale); !errors.Is(err, rpctypes.ErrGRPCLeaseNotFound) {
			t.Fatalf("stale put within its lookup's validity: %v, want lease not found", err)
		}
		records(h, 1)
	})
	each("stale put above it", func(h *hashReplica) {
		if err := h.leasedWrite(forget+1, leasePutOp("b", 7), stale); !IsLeaseLookupExpired(err) {
			t.Fatalf("stale put above the record's revision: %v, want lease lookup expired", err)
		}
		records(h, 0)
		if _, ok, err := engine.MVCCGet(h.e, []byte("b"), forget+1); err != nil || ok {
			t.Fatalf("b after a refused put: live %v, %v", ok, err)
		}
	})
	each("the id granted again", func(h *hashReplica) {
		fresh := &tesserapb.LeaseRef{Id: 7, Incarnation: 9, ValidUntil: int64(forget + 30*sec)}
		if err := h.leasedWrite(forget+2, leasePutOp("b", 7), fresh); err != nil {
			t.Fatalf("put with a new grant of the id: %v", err)
		}
	})
	// A write without leases drops what is due too, and a revocation tried
	// again with a later valid_until keeps the record until then.
	rev = forget + 10*sec
	each("revoke 8 twice", func(h *hashReplica) {
		h.revokeAt(rev, &tesserapb.LeaseRef{Id: 8, Incarnation: 3, ValidUntil: int64(rev + sec)})
		h.revokeAt(rev+1, &tesserapb.LeaseRef{Id: 8, Incarnation: 3, ValidUntil: int64(rev + 5*sec)})
		h.revokeAt(rev+2, &tesserapb.LeaseRef{Id: 9, Incarnation: 4, ValidUntil: int64(rev + 2*sec)})
		records(h, 2)
	})
	each("a plain write between the two", func(h *hashReplica) {
		if err := h.leasedWrite(rev+3*sec, leasePutOp("c", 0), nil); err != nil {
			t.Fatal(err)
		}
		records(h, 1) // 9 forgotten, 8 kept (its later valid_until)
		if inc, err := revokedIncarnation(h.e, uint64(hashTestDesc.GetRangeId()), 8); err != nil || inc != 3 {
			t.Fatalf("record of lease 8: incarnation %d, %v", inc, err)
		}
	})
	each("a plain write above both", func(h *hashReplica) {
		if err := h.leasedWrite(rev+6*sec, leasePutOp("c", 0), nil); err != nil {
			t.Fatal(err)
		}
		records(h, 0)
	})
	// A replica that reloads its state (a restart, a snapshot) finds what
	// is due again.
	each("reload", func(h *hashReplica) {
		h.revokeAt(rev+7*sec, &tesserapb.LeaseRef{Id: 10, Incarnation: 5, ValidUntil: int64(rev + 8*sec)})
		h.r.mu.Lock()
		if err := h.r.loadLocked(); err != nil {
			t.Fatal(err)
		}
		if h.r.mu.leaseGCNext != 0 {
			t.Fatalf("cache kept across a reload: %d", h.r.mu.leaseGCNext)
		}
		h.r.mu.Unlock()
		records(h, 1)
		if err := h.leasedWrite(rev+9*sec, leasePutOp("c", 0), nil); err != nil {
			t.Fatal(err)
		}
		records(h, 0)
	})
}
