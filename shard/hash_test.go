package shard

import (
	"encoding/binary"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/tesseradb/tessera/engine"
	"github.com/tesseradb/tessera/proto/tesserapb"
	"github.com/tesseradb/tessera/raftgroup"
)

// hashReplica is a replica on its own engine, fed committed commands the way
// the raft host feeds them: Apply into a batch, the applied state added to
// the same batch, commit, then Applied.
type hashReplica struct {
	t     *testing.T
	e     *engine.Engine
	r     *Replica
	index uint64
}

var hashTestDesc = &tesserapb.RangeDescriptor{RangeId: 2, StartKey: []byte("a"), EndKey: []byte("m"), Replicas: func() []*tesserapb.ReplicaDescriptor { r, _ := NewReplicas([]raftgroup.NodeID{1, 2, 3}, 1); return r }(), Generation: 1}

func newHashReplica(t *testing.T) *hashReplica {
	t.Helper()
	e := openEngine(t)
	if err := WriteInitialState(e, hashTestDesc); err != nil {
		t.Fatal(err)
	}
	r, err := Open(Config{NodeID: 1, Engine: e}, raftgroup.GroupID(hashTestDesc.GetRangeId()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return &hashReplica{t: t, e: e, r: r, index: 10}
}

// apply applies one command as the next log entry; applied false leaves out
// the Applied call (so a compaction is recorded but not run physically).
func (h *hashReplica) apply(cmd *tesserapb.ShardCommand, applied bool) {
	h.t.Helper()
	data, err := proto.Marshal(cmd)
	if err != nil {
		h.t.Fatal(err)
	}
	h.index++
	b := h.e.NewBatch()
	defer b.Close()
	if err := h.r.Apply(b, []*raftpb.Entry{{Type: raftpb.EntryNormal.Enum(), Index: proto.Uint64(h.index), Term: proto.Uint64(6), Data: data}}); err != nil {
		h.t.Fatal(err)
	}
	// The host's applied state: index, term, then the ConfState (empty).
	st := binary.BigEndian.AppendUint64(nil, h.index)
	st = binary.BigEndian.AppendUint64(st, 6)
	if err := b.Set(engine.LocalGroupKey(hashTestDesc.GetRangeId(), engine.KindAppliedState), st); err != nil {
		h.t.Fatal(err)
	}
	if err := b.Commit(false); err != nil {
		h.t.Fatal(err)
	}
	if applied {
		h.r.Applied(h.index)
	}
}

func (h *hashReplica) put(rev engine.Revision, k, v string) {
	h.t.Helper()
	op, err := proto.Marshal(&pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte(k), Value: []byte(v)}}})
	if err != nil {
		h.t.Fatal(err)
	}
	h.apply(&tesserapb.ShardCommand{Revision: int64(rev), RequestOp: op, Generation: 1}, true)
}

func (h *hashReplica) del(rev engine.Revision, k string) {
	h.t.Helper()
	op, err := proto.Marshal(&pb.RequestOp{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: &pb.DeleteRangeRequest{Key: []byte(k)}}})
	if err != nil {
		h.t.Fatal(err)
	}
	h.apply(&tesserapb.ShardCommand{Revision: int64(rev), RequestOp: op, Generation: 1}, true)
}

func (h *hashReplica) hash() HashResult {
	h.t.Helper()
	res, err := h.r.Hash(h.t.Context())
	if err != nil {
		h.t.Fatal(err)
	}
	return res
}

// versions counts the raw versions in the range's span.
func (h *hashReplica) versions() int {
	h.t.Helper()
	it, err := h.e.NewIter(engine.DataSpan(hashTestDesc.GetStartKey(), hashTestDesc.GetEndKey()))
	if err != nil {
		h.t.Fatal(err)
	}
	defer it.Close()
	n := 0
	for valid := it.First(); valid; valid = it.Next() {
		n++
	}
	return n
}

// TestReplicaHash: replicas that applied the same commands agree, at the
// same applied index, whether their physical compaction ran or not; a
// version that differs changes the hash.
func TestReplicaHash(t *testing.T) {
	a, b := newHashReplica(t), newHashReplica(t)
	if ha, hb := a.hash(), b.hash(); ha != hb || ha.AppliedIndex != 0 {
		t.Fatalf("fresh replicas: %+v vs %+v", ha, hb)
	}
	rev := baseRev
	next := func() engine.Revision { rev += 1<<18 + 3; return rev }
	// History: "b" three versions, "c" put then deleted, "d" once.
	var revs []engine.Revision
	for _, op := range []struct{ k, v string }{{"b", "1"}, {"c", "1"}, {"b", "2"}, {"d", "1"}, {"c", ""}, {"b", "3"}} {
		r := next()
		revs = append(revs, r)
		for _, h := range []*hashReplica{a, b} {
			if op.v == "" {
				h.del(r, op.k)
			} else {
				h.put(r, op.k, op.v)
			}
		}
	}
	ha, hb := a.hash(), b.hash()
	if ha != hb {
		t.Fatalf("same commands, different hashes: %+v vs %+v", ha, hb)
	}
	if ha.AppliedIndex != a.index || ha.Revision != rev || ha.CompactRevision != 0 {
		t.Fatalf("hash result %+v, want applied index %d, revision %d", ha, a.index, rev)
	}
	// A key outside the range's span is not the range's state.
	outside := a.e.NewWriteBatch()
	if err := engine.MVCCPut(outside, []byte("z"), next(), engine.Value{CreateRev: rev, Version: 1, Data: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	if err := outside.Commit(false); err != nil {
		t.Fatal(err)
	}
	outside.Close()
	if got := a.hash(); got != ha {
		t.Fatalf("a key outside the span changed the hash: %+v vs %+v", got, ha)
	}

	// Compact at the delete of "c" (revs[4]): "b"@revs[0] goes, "c" goes
	// entirely, "b"@revs[2] and "d" stay. a compacts physically, b lags.
	compact := &tesserapb.ShardCommand{CompactRevision: int64(revs[4]), Generation: 1}
	before := a.versions()
	a.apply(compact, true)
	b.apply(compact, false)
	deadline := time.Now().Add(10 * time.Second)
	for a.versions() != before-3 {
		if time.Now().After(deadline) {
			t.Fatalf("physical compaction: %d versions left of %d, want %d", a.versions(), before, before-3)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if b.versions() != before {
		t.Fatalf("the lagging replica compacted: %d versions, want %d", b.versions(), before)
	}
	ha, hb = a.hash(), b.hash()
	if ha != hb || ha.CompactRevision != revs[4] {
		t.Fatalf("lagging physical compaction changed the hash: %+v vs %+v", ha, hb)
	}

	// One differing version above the compaction revision: detected.
	bogus := b.e.NewWriteBatch()
	if err := engine.MVCCPut(bogus, []byte("d"), revs[5]-1, engine.Value{CreateRev: revs[3], Version: 2, Data: []byte("bogus")}); err != nil {
		t.Fatal(err)
	}
	if err := bogus.Commit(false); err != nil {
		t.Fatal(err)
	}
	bogus.Close()
	if hb2 := b.hash(); hb2.Hash == ha.Hash || hb2.AppliedIndex != ha.AppliedIndex {
		t.Fatalf("a bogus version went unnoticed: %+v vs %+v", hb2, ha)
	}
	// A differing value of the newest version below the compaction
	// revision is part of the served history: detected too.
	a2 := a.e.NewWriteBatch()
	if err := engine.MVCCPut(a2, []byte("b"), revs[2], engine.Value{CreateRev: revs[0], Version: 2, Data: []byte("changed")}); err != nil {
		t.Fatal(err)
	}
	if err := a2.Commit(false); err != nil {
		t.Fatal(err)
	}
	a2.Close()
	if got := a.hash(); got.Hash == ha.Hash {
		t.Fatalf("a changed value below the compaction revision went unnoticed")
	}
}
