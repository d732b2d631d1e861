package shard

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/protobuf/proto"

	"github.com/tesseradb/tessera/engine"
	"github.com/tesseradb/tessera/proto/tesserapb"
)

// write applies one request as a command at rev naming the leases (each at
// incarnation 1) and returns its result.
func (h *hashReplica) write(rev engine.Revision, op *pb.RequestOp, leases ...int64) error {
	h.t.Helper()
	data, err := proto.Marshal(op)
	if err != nil {
		h.t.Fatal(err)
	}
	cmd := &tesserapb.ShardCommand{Revision: int64(rev), RequestOp: data, Generation: 1}
	for _, l := range leases {
		cmd.Leases = append(cmd.Leases, &tesserapb.LeaseRef{Id: l, Incarnation: 1, ValidUntil: math.MaxInt64})
	}
	return h.lastResult(cmd)
}

func leasePutOp(k string, lease int64) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte(k), Value: []byte("v"), Lease: lease}}}
}

func leaseDelOp(k, end string) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: &pb.DeleteRangeRequest{Key: []byte(k), RangeEnd: []byte(end)}}}
}

// leaseIndex returns the replica's whole lease index as "lease:key" entries,
// in engine order.
func (h *hashReplica) leaseIndex() []string {
	h.t.Helper()
	it, err := h.e.NewIter(engine.LocalGroupKindSpan(hashTestDesc.GetRangeId(), engine.KindLeaseKey))
	if err != nil {
		h.t.Fatal(err)
	}
	defer it.Close()
	var out []string
	for ok := it.First(); ok; ok = it.Next() {
		k, err := engine.UserKeyOfLeaseKey(it.Key())
		if err != nil {
			h.t.Fatal(err)
		}
		out = append(out, fmt.Sprintf("%d:%s", binary.BigEndian.Uint64(it.Key()[11:19]), k))
	}
	if err := it.Error(); err != nil {
		h.t.Fatal(err)
	}
	return out
}

// TestLeaseIndexFollowsWrites: the lease index of a range lists exactly the
// live keys attached to each lease after puts, overwrites with another lease
// or none, deletes, transactions, a refused put, a revocation (which deletes
// exactly the indexed keys) and a compaction; it is the same on every
// replica, and so are the replicas' hashes.
func TestLeaseIndexFollowsWrites(t *testing.T) {
	replicas := []*hashReplica{newHashReplica(t), newHashReplica(t), newHashReplica(t)}
	rev := baseRev
	step := func(name string, want []string, fn func(h *hashReplica) error) {
		t.Helper()
		rev += 1<<18 + 3
		for i, h := range replicas {
			if err := fn(h); err != nil {
				t.Fatalf("%s: replica %d: %v", name, i, err)
			}
			if got := h.leaseIndex(); !slices.Equal(got, want) {
				t.Fatalf("%s: replica %d: lease index %q, want %q", name, i, got, want)
			}
		}
		h0 := replicas[0].hash()
		for i, h := range replicas[1:] {
			if got := h.hash(); got != h0 {
				t.Fatalf("%s: replica %d hash %+v, replica 0 %+v", name, i+1, got, h0)
			}
		}
	}
	step("puts", []string{"5:a", "5:b", "6:c"}, func(h *hashReplica) error {
		for i, p := range []struct {
			k string
			l int64
		}{{"a", 5}, {"b", 5}, {"c", 6}, {"d", 0}} {
			if err := h.write(rev+engine.Revision(i), leasePutOp(p.k, p.l), 5, 6); err != nil {
				return err
			}
		}
		return nil
	})
	rev += 3
	step("overwrite with another lease", []string{"5:b", "6:a", "6:c"}, func(h *hashReplica) error {
		return h.write(rev, leasePutOp("a", 6), 6)
	})
	step("overwrite without a lease", []string{"6:a", "6:c"}, func(h *hashReplica) error {
		return h.write(rev, leasePutOp("b", 0))
	})
	step("overwrite with the same lease", []string{"5:b", "6:a", "6:c"}, func(h *hashReplica) error {
		if err := h.write(rev, leasePutOp("b", 5), 5); err != nil {
			return err
		}
		return h.write(rev+1, leasePutOp("b", 5), 5)
	})
	rev++
	step("txn put and delete", []string{"5:b", "5:e", "6:a"}, func(h *hashReplica) error {
		return h.write(rev, &pb.RequestOp{Request: &pb.RequestOp_RequestTxn{RequestTxn: &pb.TxnRequest{Success: []*pb.RequestOp{leasePutOp("e", 5), leaseDelOp("c", "")}}}}, 5)
	})
	step("delete range", []string{"5:e", "6:a"}, func(h *hashReplica) error {
		return h.write(rev, leaseDelOp("b", "d"))
	})
	step("put again", []string{"5:e", "6:a", "6:c", "6:f"}, func(h *hashReplica) error {
		if err := h.write(rev, leasePutOp("c", 6), 6); err != nil {
			return err
		}
		return h.write(rev+1, leasePutOp("f", 6), 6)
	})
	rev++
	step("revoke", []string{"5:e"}, func(h *hashReplica) error {
		h.t.Helper()
		h.apply(&tesserapb.ShardCommand{Revision: int64(rev), Generation: 1, RevokeLeases: []*tesserapb.LeaseRef{{Id: 6, Incarnation: 1}}, ProposerNode: 1}, false)
		h.r.mu.Lock()
		res := h.r.mu.applyResults
		h.r.mu.Unlock()
		h.r.Applied(h.index)
		if len(res) != 1 || res[0].err != nil {
			return fmt.Errorf("revoke: %+v", res)
		}
		if n := res[0].resp.GetResponseDeleteRange().GetDeleted(); n != 3 {
			return fmt.Errorf("revoke deleted %d keys, want 3 (a, c, f)", n)
		}
		for _, k := range []string{"a", "c", "f"} {
			if _, ok, err := engine.MVCCGet(h.e, []byte(k), rev); err != nil || ok {
				return fmt.Errorf("%s after the revocation: live %v, %v", k, ok, err)
			}
		}
		for _, k := range []string{"d", "e"} {
			if _, ok, err := engine.MVCCGet(h.e, []byte(k), rev); err != nil || !ok {
				return fmt.Errorf("%s after the revocation: live %v, %v", k, ok, err)
			}
		}
		return nil
	})
	step("put naming the revoked lease is refused", []string{"5:e"}, func(h *hashReplica) error {
		if err := h.write(rev, leasePutOp("g", 6), 6); err == nil {
			return fmt.Errorf("put with a revoked lease accepted")
		}
		return nil
	})
	step("compaction", []string{"5:e"}, func(h *hashReplica) error {
		return h.lastResult(&tesserapb.ShardCommand{Revision: int64(rev), CompactRevision: int64(rev - 1), Generation: 1})
	})
	// The keys of a lease as TimeToLive lists them.
	for i, h := range replicas {
		keys, err := leaseKeys(h.e, hashTestDesc.GetRangeId(), 5, rev)
		if err != nil || len(keys) != 1 || string(keys[0]) != "e" {
			t.Fatalf("replica %d: keys of lease 5: %q, %v", i, keys, err)
		}
	}
}

// TestLeaseIndexKeyLayout: lease index keys of one lease sort together,
// within the lease's span, and give back their user key whatever its bytes
// (a user key that looks like a versioned suffix included).
func TestLeaseIndexKeyLayout(t *testing.T) {
	odd := append([]byte("x\x00"), binary.BigEndian.AppendUint64(nil, 42)...)
	odd = append(odd, 9)
	for _, uk := range [][]byte{{}, []byte("a"), odd, {0xff, 0xff}} {
		for _, l := range []int64{1, 7, 1<<63 - 1} {
			k := engine.LeaseKeyKey(3, l, uk)
			if !engine.LeaseKeySpan(3, l).Contains(k) {
				t.Fatalf("key of (%d, %q) outside its lease span", l, uk)
			}
			if engine.LeaseKeySpan(3, l+1).Contains(k) || engine.LeaseKeySpan(3, l-1).Contains(k) || engine.LeaseKeySpan(4, l).Contains(k) {
				t.Fatalf("key of (%d, %q) inside another lease's span", l, uk)
			}
			got, err := engine.UserKeyOfLeaseKey(k)
			if err != nil || string(got) != string(uk) {
				t.Fatalf("user key of (%d, %q): %q, %v", l, uk, got, err)
			}
			if !engine.LocalGroupReplicatedSpan(3).Contains(k) {
				t.Fatalf("lease index key outside the replicated local span")
			}
		}
	}
}
