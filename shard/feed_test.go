package shard

import (
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

func TestChangeLogEncoding(t *testing.T) {
	keys := [][]byte{[]byte("b"), []byte("a"), []byte("b"), {}, []byte("a"), {0xff, 0x00}}
	got, err := decodeChangeLog(encodeChangeLog(keys))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"b", "a", "", "\xff\x00"}
	if len(got) != len(want) {
		t.Fatalf("decoded %q, want %q", got, want)
	}
	for i := range want {
		if string(got[i]) != want[i] {
			t.Fatalf("decoded %q, want %q", got, want)
		}
	}
	for _, bad := range [][]byte{{0x05, 'a'}, {0x80}, {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}} {
		if _, err := decodeChangeLog(bad); err == nil {
			t.Errorf("decodeChangeLog(%x) accepted a corrupt entry", bad)
		}
	}
}

// TestEventAt builds put and delete events with and without prev_kv from
// the versions a revision wrote.
func TestEventAt(t *testing.T) {
	s := newKVStore(t)
	r1 := s.mustPut("k", "v1")
	r2 := s.mustPut("k", "v2")
	_, r3, err := s.del(&pb.DeleteRangeRequest{Key: []byte("k")})
	if err != nil {
		t.Fatal(err)
	}

	ev, err := eventAt(s.e, []byte("k"), r1, true)
	if err != nil {
		t.Fatal(err)
	}
	if ev.Type != mvccpb.PUT || string(ev.Kv.Value) != "v1" || ev.Kv.CreateRevision != int64(r1) || ev.Kv.ModRevision != int64(r1) || ev.Kv.Version != 1 || ev.PrevKv != nil {
		t.Errorf("first put event = %v", ev)
	}
	ev, err = eventAt(s.e, []byte("k"), r2, true)
	if err != nil {
		t.Fatal(err)
	}
	if ev.Type != mvccpb.PUT || string(ev.Kv.Value) != "v2" || ev.Kv.Version != 2 || ev.PrevKv == nil || string(ev.PrevKv.Value) != "v1" {
		t.Errorf("second put event = %v", ev)
	}
	ev, err = eventAt(s.e, []byte("k"), r3, true)
	if err != nil {
		t.Fatal(err)
	}
	if ev.Type != mvccpb.DELETE || string(ev.Kv.Key) != "k" || ev.Kv.ModRevision != int64(r3) || ev.Kv.Version != 0 || len(ev.Kv.Value) != 0 || ev.PrevKv == nil || string(ev.PrevKv.Value) != "v2" {
		t.Errorf("delete event = %v", ev)
	}
	ev, err = eventAt(s.e, []byte("k"), r3, false)
	if err != nil {
		t.Fatal(err)
	}
	if ev.PrevKv != nil {
		t.Errorf("prev_kv without asking: %v", ev.PrevKv)
	}
	if _, err := eventAt(s.e, []byte("k"), r3+1, false); err == nil {
		t.Error("an event at a revision that wrote nothing")
	}
	if _, err := eventAt(s.e, []byte("other"), r1, false); err == nil {
		t.Error("an event for a key the revision did not write")
	}
}

func TestRangeStateEncoding(t *testing.T) {
	s := rangeState{compact: 7, applied: 99, logCut: 5}
	got, err := decodeRangeState(encodeRangeState(s))
	if err != nil || got != s {
		t.Fatalf("round trip: %+v %v, want %+v", got, err, s)
	}
	// A state written before the change log had no cut: assume everything
	// below the compaction revision was cut.
	legacy := encodeRangeState(rangeState{compact: 7, applied: 99})[:16]
	if got, err := decodeRangeState(legacy); err != nil || got != (rangeState{compact: 7, applied: 99, logCut: 6}) {
		t.Fatalf("legacy: %+v %v", got, err)
	}
	if _, err := decodeRangeState(make([]byte, 9)); err == nil {
		t.Fatal("a 9-byte range state decoded")
	}
}
