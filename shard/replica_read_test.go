package shard

import (
	"fmt"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/tesseradb/tessera/engine"
	"github.com/tesseradb/tessera/proto/tesserapb"
)

// compactedRange applies, on a replica that leads its range, "k" at 10
// (v1) and 20 (v2), "j" at 11, and a compaction at 20 (command revision
// 21), and waits until the physical compaction dropped k@10: the state of a
// range whose compaction overtook a read at 15 that was already under way.
func compactedRange(t *testing.T) *hashReplica {
	t.Helper()
	h := newHashReplica(t)
	h.r.LeaderChanged(1, 6, true)
	h.put(10, "k", "v1")
	h.put(11, "j", "j1")
	h.put(20, "k", "v2")
	if n := h.versions(); n != 3 {
		t.Fatalf("%d versions before the compaction, want 3", n)
	}
	h.apply(&tesserapb.ShardCommand{Revision: 21, CompactRevision: 20, Generation: 1}, true)
	deadline := time.Now().Add(10 * time.Second)
	for h.versions() != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("physical compaction did not drop k@10: %d versions", h.versions())
		}
		time.Sleep(time.Millisecond)
	}
	return h
}

// TestReadBelowCompactionRefused: a read at a revision below the range's
// compaction revision (a linearizable read whose timestamp was fetched
// before a compaction at a later revision applied, or any read after a
// compaction above the current revision) is refused with etcd's
// ErrCompacted, whether the revision is the read's own or one the request
// names. Before, a read that named no revision was served from the
// physically compacted data: "k", live at 15 with v1 and acknowledged long
// before, was missing from the answer while "j" was there (issue #10).
func TestReadBelowCompactionRefused(t *testing.T) {
	h := compactedRange(t)
	ctx := t.Context()
	get := func(key, end string, rev int64) *pb.RequestOp {
		return &pb.RequestOp{Request: &pb.RequestOp_RequestRange{RequestRange: &pb.RangeRequest{Key: []byte(key), RangeEnd: []byte(end), Revision: rev}}}
	}
	txn := &pb.RequestOp{Request: &pb.RequestOp_RequestTxn{RequestTxn: &pb.TxnRequest{Success: []*pb.RequestOp{get("a", "m", 0)}}}}
	for _, tc := range []struct {
		name   string
		op     *pb.RequestOp
		at     engine.Revision
		serial bool
	}{
		{"linearizable get at 15", get("k", "", 0), 15, false},
		{"linearizable scan at 15", get("a", "m", 0), 15, false},
		{"serializable scan at 15", get("a", "m", 0), 15, true},
		{"read-only txn at 15", txn, 15, false},
		{"get naming revision 15", get("a", "m", 15), 21, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, _, err := h.r.Read(ctx, 1, tc.op, tc.at, tc.serial)
			if err != rpctypes.ErrGRPCCompacted {
				t.Fatalf("err = %v, answer %v; want %v", err, out, rpctypes.ErrGRPCCompacted)
			}
		})
	}
	// At and above the compaction revision the answer is complete.
	for _, at := range []engine.Revision{20, 21} {
		out, _, err := h.r.Read(ctx, 1, get("a", "m", 0), at, false)
		if err != nil {
			t.Fatalf("read at %d: %v", at, err)
		}
		var got []string
		for _, kv := range out.GetResponseRange().GetKvs() {
			got = append(got, fmt.Sprintf("%s=%s@%d", kv.Key, kv.Value, kv.ModRevision))
		}
		if want := "[j=j1@11 k=v2@20]"; fmt.Sprint(got) != want {
			t.Errorf("read at %d: %v, want %s", at, got, want)
		}
	}
}
