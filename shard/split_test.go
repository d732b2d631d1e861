package shard

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/tesseradb/tessera/engine"
	"github.com/tesseradb/tessera/proto/tesserapb"
	"github.com/tesseradb/tessera/raftgroup"
)

// changeLog returns a group's change log as "revision:key,key" entries.
func changeLogOf(t *testing.T, rd engine.Reader, group uint64) []string {
	t.Helper()
	it, err := rd.NewIter(engine.LocalGroupKindSpan(group, engine.KindChangeLog))
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	var out []string
	for ok := it.First(); ok; ok = it.Next() {
		idx, err := engine.DecodeLocalGroupIndexKey(it.Key())
		if err != nil {
			t.Fatal(err)
		}
		v, _ := it.Value()
		keys, err := decodeChangeLog(v)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprintf("%d:%s", int64(idx)-int64(baseRev), bytes.Join(keys, []byte(","))))
	}
	return out
}

// localKinds returns the keys of one kind of a group's local keys, without
// the group prefix (so two groups' can be compared).
func localKinds(t *testing.T, rd engine.Reader, group uint64, kind byte) []string {
	t.Helper()
	span := engine.LocalGroupKindSpan(group, kind)
	it, err := rd.NewIter(span)
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	var out []string
	for ok := it.First(); ok; ok = it.Next() {
		v, _ := it.Value()
		out = append(out, fmt.Sprintf("%x=%x", it.Key()[len(span.Start):], v))
	}
	return out
}

func (h *hashReplica) split(gen uint64, key string, right uint64) error {
	h.t.Helper()
	return h.lastResult(&tesserapb.ShardCommand{Revision: int64(baseRev + 1000), Generation: gen, Split: &tesserapb.SplitTrigger{SplitKey: []byte(key), RightRangeId: right, Trigger: TriggerAdmin}})
}

// TestSplitApply: a split command cuts the range on every replica alike:
// the left keeps [a, g) at generation 2, the right gets [g, m) at
// generation 2 with the left's replicas, range state (compaction, applied
// revision, log cut), its keys' change-log entries (at their revisions), its
// keys' lease-index entries and a copy of the revoked leases, plus an
// initial raft state; all versions stay where they were (readable at old
// revisions); the replicas' hashes agree for both halves; the Store hook
// runs once the batch committed. Refused splits change nothing.
func TestSplitApply(t *testing.T) {
	replicas := []*hashReplica{newHashReplica(t), newHashReplica(t), newHashReplica(t)}
	var opened []SplitResult
	replicas[0].r.cfg.OnSplit = func(res SplitResult, trigger string) {
		if trigger != TriggerAdmin {
			t.Errorf("trigger %q", trigger)
		}
		opened = append(opened, res)
	}
	for _, h := range replicas {
		h.put(baseRev+1, "b", "1")
		h.put(baseRev+2, "h", "1")
		if err := h.write(baseRev+3, leasePutOp("c", 5), 5); err != nil {
			t.Fatal(err)
		}
		if err := h.write(baseRev+4, leasePutOp("i", 5), 5); err != nil {
			t.Fatal(err)
		}
		if err := h.write(baseRev+5, txnOp(&pb.TxnRequest{Success: []*pb.RequestOp{putOp("b", "2"), putOp("k", "1")}})); err != nil {
			t.Fatal(err)
		}
		h.del(baseRev+6, "h")
		if err := h.write(baseRev+7, leasePutOp("j", 6), 6); err != nil {
			t.Fatal(err)
		}
		// Revoke lease 6 (deletes j) and compact below revision 2.
		if err := h.lastResult(&tesserapb.ShardCommand{Revision: int64(baseRev + 8), Generation: 1, RevokeLeases: []*tesserapb.LeaseRef{{Id: 6, Incarnation: 1}}}); err != nil {
			t.Fatal(err)
		}
		if err := h.lastResult(&tesserapb.ShardCommand{Revision: int64(baseRev + 9), CompactRevision: int64(baseRev + 2), Generation: 1}); err != nil {
			t.Fatal(err)
		}
	}
	before := replicas[0].hash()

	// Refusals: stale generation, keys outside (start, end), an existing
	// range id. Nothing changes.
	for i, bad := range []struct {
		gen   uint64
		key   string
		right uint64
		code  codes.Code
	}{
		{gen: 7, key: "g", right: 9},
		{gen: 1, key: "a", right: 9, code: codes.FailedPrecondition},
		{gen: 1, key: "m", right: 9, code: codes.FailedPrecondition},
		{gen: 1, key: "0", right: 9, code: codes.FailedPrecondition},
		{gen: 1, key: "g", right: hashTestDesc.GetRangeId(), code: codes.FailedPrecondition},
		{gen: 0, key: "g", right: 9, code: codes.FailedPrecondition},
	} {
		err := replicas[0].split(bad.gen, bad.key, bad.right)
		var re *RoutingError
		switch {
		case bad.code == codes.OK && !(errors.As(err, &re) && re.Code == tesserapb.RoutingError_STALE_GENERATION):
			t.Fatalf("refusal %d: %v, want a stale generation", i, err)
		case bad.code != codes.OK && status.Code(err) != bad.code:
			t.Fatalf("refusal %d: %v, want %v", i, err, bad.code)
		}
		if got := replicas[0].hash(); got.Hash != before.Hash {
			t.Fatalf("refusal %d changed the replica", i)
		}
	}
	if len(opened) != 0 {
		t.Fatalf("refused splits opened %v", opened)
	}

	const rightID = 9
	logBefore := changeLogOf(t, replicas[0].e, hashTestDesc.GetRangeId())
	for _, h := range replicas {
		if err := h.split(1, "g", rightID); err != nil {
			t.Fatal(err)
		}
	}
	if len(opened) != 1 || opened[0].Right.GetRangeId() != rightID {
		t.Fatalf("store hook got %v", opened)
	}
	wantLeft := &tesserapb.RangeDescriptor{RangeId: 2, StartKey: []byte("a"), EndKey: []byte("g"), Replicas: hashTestDesc.GetReplicas(), NextReplicaId: hashTestDesc.GetNextReplicaId(), Generation: 2}
	wantRight := &tesserapb.RangeDescriptor{RangeId: rightID, StartKey: []byte("g"), EndKey: []byte("m"), Replicas: hashTestDesc.GetReplicas(), NextReplicaId: hashTestDesc.GetNextReplicaId(), Generation: 2}
	requireProtoEqual(t, "hook left", opened[0].Left, wantLeft)
	requireProtoEqual(t, "hook right", opened[0].Right, wantRight)

	var leftHash, rightHash []HashResult
	for i, h := range replicas {
		requireProtoEqual(t, "left", h.r.Descriptor(), wantLeft)
		rd, err := ReadDescriptor(h.e, rightID)
		if err != nil || rd == nil {
			t.Fatalf("replica %d: right descriptor: %v %v", i, rd, err)
		}
		requireProtoEqual(t, "right", rd, wantRight)
		ids, err := LocalRanges(h.e)
		if err != nil || !slices.Equal(ids, []raftgroup.GroupID{2, rightID}) {
			t.Fatalf("replica %d: local ranges %v %v", i, ids, err)
		}
		right, err := Open(Config{NodeID: 1, Engine: h.e}, rightID)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(right.Close)
		ls, rs := h.r.Status(), right.Status()
		if rs.CompactRev != ls.CompactRev || rs.AppliedRev != ls.AppliedRev || rs.CompactRev != baseRev+2 {
			t.Fatalf("replica %d: right state %+v, left %+v", i, rs, ls)
		}
		if right.mu.logCut != h.r.mu.logCut {
			t.Fatalf("replica %d: log cut %d, left %d", i, right.mu.logCut, h.r.mu.logCut)
		}
		// The change log: every entry's keys are on one side, at the same
		// revision; together they are the log before the split.
		l, r := changeLogOf(t, h.e, 2), changeLogOf(t, h.e, rightID)
		if want := []string{"3:c", "5:b"}; !slices.Equal(l, want) {
			t.Fatalf("replica %d: left change log %q, want %q (before %q)", i, l, want, logBefore)
		}
		if want := []string{"2:h", "4:i", "5:k", "6:h", "7:j", "8:j"}; !slices.Equal(r, want) {
			t.Fatalf("replica %d: right change log %q, want %q (before %q)", i, r, want, logBefore)
		}
		// The left still names the writes the split moved wholly to the
		// right as its own latest writes (the TSO recorded them as
		// granted to the left: a read covering the left asks it alone).
		for _, tc := range []struct{ at, want engine.Revision }{{baseRev + 8, baseRev + 8}, {baseRev + 7, baseRev + 7}, {baseRev + 6, baseRev + 6}, {baseRev + 5, baseRev + 5}, {baseRev + 4, baseRev + 4}} {
			w, err := latestWriteAt(h.e, 2, tc.at, h.r.Status().CompactRev)
			if err != nil || w != tc.want {
				t.Fatalf("replica %d: left's latest write at %d: %d %v, want %d", i, tc.at-baseRev, w-baseRev, err, tc.want-baseRev)
			}
		}
		// The lease index: c stays left, i goes right (j was revoked).
		if got := h.leaseIndex(); !slices.Equal(got, []string{"5:c"}) {
			t.Fatalf("replica %d: left lease index %q", i, got)
		}
		got, err := leaseKeys(h.e, rightID, 5, baseRev+10)
		if err != nil || len(got) != 1 || string(got[0]) != "i" {
			t.Fatalf("replica %d: right lease index %q %v", i, got, err)
		}
		// Revoked leases: both halves refuse lease 6.
		if l, r := localKinds(t, h.e, 2, engine.KindRevokedLease), localKinds(t, h.e, rightID, engine.KindRevokedLease); len(l) != 1 || !slices.Equal(l, r) {
			t.Fatalf("replica %d: revoked leases left %q right %q", i, l, r)
		}
		// Raft state of the right: bootstrapped like an initial group.
		if _, err := h.e.Get(engine.LocalGroupKey(rightID, engine.KindHardState)); err != nil {
			t.Fatalf("replica %d: right hard state: %v", i, err)
		}
		// History stays readable at old revisions on the right's keys.
		if kv, ok, err := engine.MVCCGet(h.e, []byte("h"), baseRev+5); err != nil || !ok || string(kv.Value.Data) != "1" {
			t.Fatalf("replica %d: h@5: %+v %v %v", i, kv, ok, err)
		}
		lh, err := h.r.Hash(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		rh, err := right.Hash(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		leftHash, rightHash = append(leftHash, lh), append(rightHash, rh)
	}
	for i := 1; i < len(replicas); i++ {
		if leftHash[i].Hash != leftHash[0].Hash || rightHash[i].Hash != rightHash[0].Hash {
			t.Fatalf("replica %d: hashes %v/%v, replica 0 %v/%v", i, leftHash[i], rightHash[i], leftHash[0], rightHash[0])
		}
	}
	if leftHash[0].Hash == rightHash[0].Hash {
		t.Fatal("left and right hash alike")
	}
	// A write for a key now on the right, proposed before the split, is
	// refused with the new descriptor.
	err := replicas[0].write(baseRev+2000, putOp("k", "2"))
	var re *RoutingError
	if !errors.As(err, &re) || re.Code != tesserapb.RoutingError_STALE_GENERATION || re.Descriptor.GetGeneration() != 2 {
		t.Fatalf("stale write: %v", err)
	}
}

// TestMergeApply: after a split, freezing the right and merging it back
// restores the range on every replica: one descriptor [a, m) at generation
// 3, the change log, lease index and revoked leases as before the split,
// the right's replicated state gone with a tombstone, and the same hash as
// before the split. A frozen right refuses writes at apply; a merge naming
// a right that is not frozen, or a stale generation, is refused.
func TestMergeApply(t *testing.T) {
	replicas := []*hashReplica{newHashReplica(t), newHashReplica(t)}
	type merged struct {
		desc  *tesserapb.RangeDescriptor
		right uint64
	}
	var hooks []merged
	replicas[0].r.cfg.OnMerge = func(d *tesserapb.RangeDescriptor, right uint64) { hooks = append(hooks, merged{d, right}) }
	for _, h := range replicas {
		h.put(baseRev+1, "b", "1")
		if err := h.write(baseRev+2, leasePutOp("h", 5), 5); err != nil {
			t.Fatal(err)
		}
		h.put(baseRev+3, "k", "1")
		if err := h.lastResult(&tesserapb.ShardCommand{Revision: int64(baseRev + 4), Generation: 1, RevokeLeases: []*tesserapb.LeaseRef{{Id: 7, Incarnation: 3}}}); err != nil {
			t.Fatal(err)
		}
	}
	before := replicas[0].hash()
	logBefore := changeLogOf(t, replicas[0].e, 2)
	leasesBefore := replicas[0].leaseIndex()
	const rightID = 9
	var rights []*hashReplica
	for _, h := range replicas {
		if err := h.split(1, "g", rightID); err != nil {
			t.Fatal(err)
		}
		right, err := Open(Config{NodeID: 1, Engine: h.e}, rightID)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(right.Close)
		rh := &hashReplica{t: t, e: h.e, r: right, index: 10}
		// A write on the right after the split.
		if err := rh.lastResult(&tesserapb.ShardCommand{Revision: int64(baseRev + 1100), Generation: 2, RequestOp: marshalOp(t, putOp("j", "right"))}); err != nil {
			t.Fatal(err)
		}
		rights = append(rights, rh)
	}
	rightDesc := rights[0].r.Descriptor()
	mergeCmd := func(gen uint64, frozen uint64) *tesserapb.ShardCommand {
		return &tesserapb.ShardCommand{Revision: int64(baseRev + 2000), Generation: gen, Merge: &tesserapb.MergeTrigger{Right: rightDesc, FrozenIndex: frozen, Trigger: TriggerAdmin}}
	}
	// Not frozen yet: refused, nothing changes.
	if err := replicas[0].lastResult(mergeCmd(2, 11)); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("merge of an unfrozen right: %v", err)
	}
	for _, rh := range rights {
		if err := rh.lastResult(&tesserapb.ShardCommand{Revision: int64(baseRev + 1200), Generation: 2, Freeze: true}); err != nil {
			t.Fatal(err)
		}
		// Frozen: a write that reaches the log after the freeze is refused.
		var re *RoutingError
		if err := rh.lastResult(&tesserapb.ShardCommand{Revision: int64(baseRev + 1300), Generation: 2, RequestOp: marshalOp(t, putOp("j", "late"))}); !errors.As(err, &re) {
			t.Fatalf("write on a frozen range: %v", err)
		}
	}
	if err := replicas[0].lastResult(mergeCmd(1, rights[0].index)); err == nil {
		t.Fatal("a merge at a stale generation was accepted")
	}
	for i, h := range replicas {
		if err := h.lastResult(mergeCmd(2, rights[i].index)); err != nil {
			t.Fatalf("replica %d: merge: %v", i, err)
		}
		want := &tesserapb.RangeDescriptor{RangeId: 2, StartKey: []byte("a"), EndKey: []byte("m"), Replicas: hashTestDesc.GetReplicas(), NextReplicaId: hashTestDesc.GetNextReplicaId(), Generation: 3}
		requireProtoEqual(t, "merged", h.r.Descriptor(), want)
		if d, err := ReadDescriptor(h.e, rightID); err != nil || d != nil {
			t.Fatalf("replica %d: right descriptor after the merge: %v %v", i, d, err)
		}
		if _, err := h.e.Get(tombstoneKey(rightID)); err != nil {
			t.Fatalf("replica %d: no tombstone: %v", i, err)
		}
		if got := changeLogOf(t, h.e, 2); !slices.Equal(got, append(slices.Clone(logBefore), "1100:j")) {
			t.Fatalf("replica %d: change log %q, before the split %q", i, got, logBefore)
		}
		if got := h.leaseIndex(); !slices.Equal(got, leasesBefore) {
			t.Fatalf("replica %d: lease index %q, before %q", i, got, leasesBefore)
		}
		if got := localKinds(t, h.e, 2, engine.KindRevokedLease); len(got) != 1 {
			t.Fatalf("replica %d: revoked leases %q", i, got)
		}
		if st := h.r.Status(); st.AppliedRev != baseRev+2000 {
			t.Fatalf("replica %d: applied revision %d", i, st.AppliedRev)
		}
	}
	if len(hooks) != 1 || hooks[0].right != rightID || hooks[0].desc.GetGeneration() != 3 {
		t.Fatalf("store hook got %v", hooks)
	}
	h0, h1 := replicas[0].hash(), replicas[1].hash()
	if h0.Hash != h1.Hash {
		t.Fatalf("replicas differ after the merge: %v %v", h0, h1)
	}
	if h0.Hash == before.Hash {
		t.Fatal("the right's write is missing from the merged range")
	}
	if kv, ok, err := engine.MVCCGet(replicas[0].e, []byte("j"), baseRev+3000); err != nil || !ok || string(kv.Value.Data) != "right" {
		t.Fatalf("j after the merge: %+v %v %v", kv, ok, err)
	}
}

func marshalOp(t *testing.T, op *pb.RequestOp) []byte {
	t.Helper()
	b, err := proto.Marshal(op)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
