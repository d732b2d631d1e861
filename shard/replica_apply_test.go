package shard

import (
	"errors"
	"math"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/protobuf/proto"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/tesseradb/tessera/engine"
	"github.com/tesseradb/tessera/proto/tesserapb"
)

// lastResult applies cmd as proposed by this node without the Applied call
// and returns the command's result.
func (h *hashReplica) lastResult(cmd *tesserapb.ShardCommand) error {
	h.t.Helper()
	cmd.ProposerNode = 1
	h.apply(cmd, false)
	h.r.mu.Lock()
	res := h.r.mu.applyResults
	h.r.mu.Unlock()
	if len(res) != 1 {
		h.t.Fatalf("%d results, want 1", len(res))
	}
	h.r.Applied(h.index)
	return res[0].err
}

// TestApplyRefusesCompactionAboveAppliedRevision: a compaction command whose
// revision is above the range's applied revision (its own revision
// included) is refused by every replica alike, before it changes anything:
// the compaction revision, the applied revision, the history and the hash
// stay as they were, acknowledged revisions stay readable, and a proper
// compaction still works afterwards.
func TestApplyRefusesCompactionAboveAppliedRevision(t *testing.T) {
	replicas := []*hashReplica{newHashReplica(t), newHashReplica(t), newHashReplica(t)}
	rev := baseRev
	var revs []engine.Revision
	for _, kv := range []struct{ k, v string }{{"b", "1"}, {"c", "1"}, {"b", "2"}, {"c", "2"}} {
		rev += 1<<18 + 7
		revs = append(revs, rev)
		for _, h := range replicas {
			h.put(rev, kv.k, kv.v)
		}
	}
	before := make([]HashResult, len(replicas))
	for i, h := range replicas {
		before[i] = h.hash()
	}
	hostile := []*tesserapb.ShardCommand{
		// What Internal.Execute used to propose for compact_revision
		// MaxInt64: a fresh revision of its own, far below.
		{Revision: int64(rev + 1), CompactRevision: math.MaxInt64, Generation: 1},
		// No revision of its own, above the applied revision.
		{CompactRevision: int64(rev + 1), Generation: 1},
		// Above the command's own revision, which is above the applied one.
		{Revision: int64(rev + 10), CompactRevision: int64(rev + 11), Generation: 1},
		{Revision: int64(rev + 12), CompactRevision: -5, Generation: 1},
	}
	for i, cmd := range hostile {
		for n, h := range replicas {
			err := h.lastResult(cmd)
			if err == nil {
				t.Fatalf("hostile command %d accepted by replica %d", i, n)
			}
			if i < 3 && err != rpctypes.ErrGRPCFutureRev {
				t.Fatalf("hostile command %d on replica %d: %v, want %v", i, n, err, rpctypes.ErrGRPCFutureRev)
			}
			st := h.r.Status()
			if st.CompactRev != 0 || st.AppliedRev != rev {
				t.Fatalf("replica %d after hostile command %d: compact revision %d, applied revision %d; want 0, %d", n, i, st.CompactRev, st.AppliedRev, rev)
			}
		}
	}
	for i, h := range replicas {
		got := h.hash()
		if got.Hash != before[i].Hash || got.Revision != before[i].Revision || got.CompactRevision != 0 {
			t.Fatalf("replica %d changed: %+v, was %+v", i, got, before[i])
		}
		if got.Hash != before[0].Hash {
			t.Fatalf("replicas differ: %+v vs %+v", got, before[0])
		}
		// Every acknowledged revision still reads.
		for j, r := range revs {
			kv, ok, err := engine.MVCCGet(h.e, []byte([]string{"b", "c", "b", "c"}[j]), r)
			if err != nil || !ok || kv.ModRev != r {
				t.Fatalf("replica %d: read at %d: %+v %v %v", i, r, kv, ok, err)
			}
		}
	}
	// A compaction at an acknowledged revision still applies everywhere.
	for i, h := range replicas {
		if err := h.lastResult(&tesserapb.ShardCommand{Revision: int64(rev + 100), CompactRevision: int64(revs[2]), Generation: 1}); err != nil {
			t.Fatalf("replica %d: compaction at %d: %v", i, revs[2], err)
		}
		if st := h.r.Status(); st.CompactRev != revs[2] {
			t.Fatalf("replica %d: compact revision %d, want %d", i, st.CompactRev, revs[2])
		}
	}
}

// TestApplyRefusesRevisionNotAboveApplied: a write whose revision is not
// above the range's applied revision is refused at apply, on every replica
// alike (the replicas' hashes stay equal), writes nothing, and its proposer
// gets etcd's "leader changed" (it was not applied: safe to retry).
func TestApplyRefusesRevisionNotAboveApplied(t *testing.T) {
	a, b := newHashReplica(t), newHashReplica(t)
	for _, h := range []*hashReplica{a, b} {
		h.put(baseRev+100, "b", "new")
	}
	want := a.hash()

	for _, rev := range []engine.Revision{baseRev + 100, baseRev + 50} {
		// a proposed the stale write and waits for it.
		p := &proposal{id: uint64(rev), done: make(chan struct{})}
		a.r.mu.Lock()
		a.r.mu.inflight[p.id] = p
		a.r.mu.Unlock()
		op, err := proto.Marshal(&pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte("c"), Value: []byte("stale")}}})
		if err != nil {
			t.Fatal(err)
		}
		cmd := &tesserapb.ShardCommand{ProposalId: p.id, ProposerNode: 1, Revision: int64(rev), RequestOp: op, Generation: 1}
		a.apply(cmd, true)
		b.apply(cmd, true)
		select {
		case <-p.done:
		default:
			t.Fatalf("revision %d: the proposer was not answered", rev)
		}
		if !errors.Is(p.err, rpctypes.ErrGRPCLeaderChanged) {
			t.Fatalf("revision %d: proposer got %v, want %v", rev, p.err, rpctypes.ErrGRPCLeaderChanged)
		}
		ha, hb := a.hash(), b.hash()
		if ha != hb {
			t.Fatalf("revision %d: replicas differ after the refusal: %+v vs %+v", rev, ha, hb)
		}
		if ha.Hash != want.Hash || ha.Revision != want.Revision {
			t.Fatalf("revision %d: the refused write changed the state: %+v, want %+v", rev, ha, want)
		}
		resp, _, err := a.r.Read(t.Context(), 0, &pb.RequestOp{Request: &pb.RequestOp_RequestRange{RequestRange: &pb.RangeRequest{Key: []byte("c")}}}, 0, true)
		if err != nil {
			t.Fatal(err)
		}
		if n := len(resp.GetResponseRange().GetKvs()); n != 0 {
			t.Fatalf("revision %d: the refused write is readable", rev)
		}
	}
}
