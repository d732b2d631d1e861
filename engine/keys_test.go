package engine

import (
	"bytes"
	"testing"

	"github.com/cockroachdb/pebble/v2"
)

func TestComparerPassesPebbleChecks(t *testing.T) {
	prefixes := [][]byte{
		EncodeKey(nil, []byte("\x03"), 0),
		EncodeKey(nil, []byte("\x03a"), 0),
		EncodeKey(nil, []byte("\x03a\x00"), 0),
		EncodeKey(nil, []byte("\x03ab"), 0),
		EncodeKey(nil, []byte("\x03b\x09"), 0),
	}
	var suffixes [][]byte
	for _, rev := range []Revision{1, 2, 255, 1 << 40, 1<<63 - 1} {
		k := DataKey(nil, rev)
		suffixes = append(suffixes, k[split(k):])
	}
	if err := pebble.CheckComparer(Comparer, prefixes, suffixes); err != nil {
		t.Fatal(err)
	}
}

func TestKeyOrderExamples(t *testing.T) {
	ordered := [][]byte{
		LocalGroupKey(1, KindAppliedState),
		LocalGroupIndexKey(1, KindLogEntry, 5),
		LocalGroupIndexKey(1, KindLogEntry, 6),
		LocalGroupKey(2, KindHardState),
		StoreKey("node"),
		DataKey([]byte("a"), 9),
		DataKey([]byte("a"), 5),
		DataKey([]byte("a\x00"), 100),
		DataKey([]byte("b"), 1),
	}
	for i := 1; i < len(ordered); i++ {
		if c := compareKeys(ordered[i-1], ordered[i]); c >= 0 {
			t.Errorf("%v should sort before %v", formatKey(ordered[i-1]), formatKey(ordered[i]))
		}
	}
	if !LocalGroupSpan(1).Contains(LocalGroupIndexKey(1, KindLogEntry, 1<<60)) {
		t.Error("log key outside its group span")
	}
	if LocalGroupSpan(1).Contains(LocalGroupKey(2, KindHardState)) {
		t.Error("group 2 key inside group 1 span")
	}
}

// FuzzKeyEncoding checks that the encoded order of any two (key, revision)
// pairs is (key ascending, revision descending) and that decoding inverts
// encoding.
func FuzzKeyEncoding(f *testing.F) {
	f.Add([]byte("a"), int64(1), []byte("b"), int64(2))
	f.Add([]byte("a"), int64(5), []byte("a"), int64(7))
	f.Add([]byte(""), int64(1), []byte("\x00"), int64(1))
	f.Add([]byte("k\x00\x09"), int64(9), []byte("k"), int64(1<<62))
	f.Add([]byte("\xff\xff"), int64(1<<63-1), []byte("\xff"), int64(1))
	f.Fuzz(func(t *testing.T, k1 []byte, r1 int64, k2 []byte, r2 int64) {
		if r1 <= 0 || r2 <= 0 {
			return
		}
		e1, e2 := DataKey(k1, Revision(r1)), DataKey(k2, Revision(r2))
		want := bytes.Compare(k1, k2)
		if want == 0 {
			// Same key: newer revision first.
			switch {
			case r1 > r2:
				want = -1
			case r1 < r2:
				want = 1
			}
		}
		if got := compareKeys(e1, e2); got != want {
			t.Fatalf("compare(%q@%d, %q@%d) = %d, want %d", k1, r1, k2, r2, got, want)
		}
		for _, c := range []struct {
			k []byte
			r int64
			e []byte
		}{{k1, r1, e1}, {k2, r2, e2}} {
			prefix, rev, err := DecodeKey(c.e)
			if err != nil {
				t.Fatal(err)
			}
			uk, ok := userKeyOf(prefix)
			if !ok || !bytes.Equal(uk, c.k) || rev != Revision(c.r) {
				t.Fatalf("decode(encode(%q@%d)) = %q@%d", c.k, c.r, uk, rev)
			}
			// The bare key sorts before every version of its key.
			if compareKeys(EncodeKey(nil, prefix, 0), c.e) >= 0 {
				t.Fatalf("bare key of %q does not sort first", c.k)
			}
		}
	})
}

func FuzzDecodeKeyNoPanic(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0x09})
	f.Add(DataKey([]byte("x"), 3))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _, _ = DecodeKey(b)
		_ = compareKeys(b, DataKey([]byte("x"), 3))
		_, _ = DecodeValue(b, false)
	})
}

func TestLocalSections(t *testing.T) {
	rep, unrep := LocalGroupReplicatedSpan(7), LocalGroupUnreplicatedSpan(7)
	for _, k := range []byte{KindAppliedState, KindDescriptor, KindRangeState} {
		if !rep.Contains(LocalGroupKey(7, k)) || unrep.Contains(LocalGroupKey(7, k)) {
			t.Errorf("kind %c not in the replicated section only", k)
		}
	}
	for _, k := range []byte{KindHardState, KindTruncated} {
		if !unrep.Contains(LocalGroupKey(7, k)) || rep.Contains(LocalGroupKey(7, k)) {
			t.Errorf("kind %c not in the unreplicated section only", k)
		}
	}
	logs := LocalGroupKindSpan(7, KindLogEntry)
	if !logs.Contains(LocalGroupIndexKey(7, KindLogEntry, 1<<62)) || !unrep.Contains(logs.Start) || logs.Contains(LocalGroupKey(7, KindTruncated)) {
		t.Error("log span wrong")
	}
	if idx, err := DecodeLocalGroupIndexKey(LocalGroupIndexKey(7, KindLogEntry, 42)); err != nil || idx != 42 {
		t.Errorf("decode index = %d, %v", idx, err)
	}
}

func TestSystemKeysOutsideData(t *testing.T) {
	sys := SystemSpan("meta/")
	if !sys.Contains(SystemKey("meta/tso")) || sys.Contains(SystemKey("other")) {
		t.Error("system span wrong")
	}
	all := DataSpan(nil, nil)
	if all.Contains(SystemKey("meta/tso")) || !all.Contains(DataKey([]byte("\xff\xff"), 1)) {
		t.Error("system keys overlap the data space")
	}
}

func TestUserKeyOfDataKey(t *testing.T) {
	for _, k := range [][]byte{[]byte("a"), {}, {0x00, 0xff}, []byte("key/with/slashes")} {
		got, ok := UserKeyOfDataKey(DataKey(k, 42))
		if !ok || !bytes.Equal(got, k) {
			t.Errorf("UserKeyOfDataKey(DataKey(%q)) = %q, %v", k, got, ok)
		}
	}
	if _, ok := UserKeyOfDataKey(LocalGroupKey(1, KindDescriptor)); ok {
		t.Error("a local key decoded as a data key")
	}
	if _, ok := UserKeyOfDataKey(LocalGroupIndexKey(1, KindChangeLog, 7)); ok {
		t.Error("a change-log key decoded as a data key")
	}
	if !LocalGroupReplicatedSpan(1).Contains(LocalGroupIndexKey(1, KindChangeLog, 7)) {
		t.Error("the change log is not in the replicated span")
	}
}

func TestBatchTracksDataWrites(t *testing.T) {
	e := openTestEngine(t, t.TempDir())
	b := e.NewBatch()
	defer b.Close()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(MVCCPut(b, []byte("untracked"), 1, Value{Data: []byte("x")}))
	b.TrackDataWrites()
	must(MVCCPut(b, []byte("a"), 2, Value{Data: []byte("x")}))
	must(b.Set(LocalGroupKey(1, KindRangeState), []byte("s")))
	must(MVCCDelete(b, []byte("b"), 2))
	got := b.TakeDataWrites()
	if len(got) != 2 || string(got[0]) != "a" || string(got[1]) != "b" {
		t.Fatalf("tracked writes = %q, want [a b]", got)
	}
	if again := b.TakeDataWrites(); len(again) != 0 {
		t.Fatalf("second take = %q, want none", again)
	}
}
