package engine

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func openTestEngine(t testing.TB, dir string) *Engine {
	t.Helper()
	cfg := DefaultConfig(dir)
	cfg.Registerer = prometheus.NewRegistry()
	e, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func put(t testing.TB, e *Engine, key string, rev Revision, v Value) {
	t.Helper()
	b := e.NewWriteBatch()
	defer b.Close()
	if err := MVCCPut(b, []byte(key), rev, v); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(false); err != nil {
		t.Fatal(err)
	}
}

func del(t testing.TB, e *Engine, key string, rev Revision) {
	t.Helper()
	b := e.NewWriteBatch()
	defer b.Close()
	if err := MVCCDelete(b, []byte(key), rev); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(false); err != nil {
		t.Fatal(err)
	}
}

func scanKeys(t testing.TB, r Reader, start, end string, rev Revision) string {
	t.Helper()
	var out string
	err := MVCCScan(r, []byte(start), []byte(end), rev, ScanOptions{}, func(kv KeyValue) bool {
		out += fmt.Sprintf("%s=%s@%d ", kv.Key, kv.Data, kv.ModRev)
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// The worked example of the package doc.
func TestMVCCGetAtRevision(t *testing.T) {
	e := openTestEngine(t, t.TempDir())
	defer e.Close()
	put(t, e, "k", 5, Value{CreateRev: 5, Version: 1, Data: []byte("v1")})
	put(t, e, "k", 9, Value{CreateRev: 5, Version: 2, Lease: 7, Data: []byte("v2")})
	del(t, e, "k", 12)
	put(t, e, "k", 20, Value{CreateRev: 20, Version: 1, Data: []byte("v3")})

	for _, c := range []struct {
		rev     Revision
		found   bool
		data    string
		mod     Revision
		version int64
	}{
		{4, false, "", 0, 0},
		{5, true, "v1", 5, 1},
		{8, true, "v1", 5, 1},
		{10, true, "v2", 9, 2},
		{12, false, "", 0, 0},
		{15, false, "", 0, 0},
		{20, true, "v3", 20, 1},
		{1 << 50, true, "v3", 20, 1},
	} {
		kv, ok, err := MVCCGet(e, []byte("k"), c.rev)
		if err != nil {
			t.Fatal(err)
		}
		if ok != c.found || string(kv.Data) != c.data || kv.ModRev != c.mod || kv.Version != c.version {
			t.Errorf("get k@%d = %v %+v, want found=%v %q mod %d version %d", c.rev, ok, kv, c.found, c.data, c.mod, c.version)
		}
	}
	kv, _, _ := MVCCGet(e, []byte("k"), 10)
	if kv.Lease != 7 || kv.CreateRev != 5 {
		t.Errorf("lease/create not kept: %+v", kv)
	}
	if _, ok, _ := MVCCGet(e, []byte("k\x00"), 100); ok {
		t.Error("k\\x00 must not see k's versions")
	}
}

func TestMVCCScanSkipsNewerAndTombstones(t *testing.T) {
	e := openTestEngine(t, t.TempDir())
	defer e.Close()
	put(t, e, "a", 1, Value{CreateRev: 1, Version: 1, Data: []byte("a1")})
	put(t, e, "b", 2, Value{CreateRev: 2, Version: 1, Data: []byte("b2")})
	put(t, e, "a", 3, Value{CreateRev: 1, Version: 2, Data: []byte("a3")})
	del(t, e, "b", 4)
	put(t, e, "c", 5, Value{CreateRev: 5, Version: 1, Data: []byte("c5")})
	put(t, e, "d", 6, Value{CreateRev: 6, Version: 1, Data: []byte("d6")})

	for _, c := range []struct {
		start, end string
		rev        Revision
		want       string
	}{
		{"a", "", 2, "a=a1@1 b=b2@2 "},
		{"a", "", 3, "a=a3@3 b=b2@2 "},
		{"a", "", 4, "a=a3@3 "},
		{"a", "", 10, "a=a3@3 c=c5@5 d=d6@6 "},
		{"b", "d", 10, "c=c5@5 "},
		{"b", "d", 2, "b=b2@2 "},
		{"a", "a\x00", 10, "a=a3@3 "},
		{"e", "", 10, ""},
	} {
		if got := scanKeys(t, e, c.start, c.end, c.rev); got != c.want {
			t.Errorf("scan [%q,%q)@%d = %q, want %q", c.start, c.end, c.rev, got, c.want)
		}
	}
	n, err := MVCCCount(e, []byte("a"), nil, 10)
	if err != nil || n != 3 {
		t.Errorf("count = %d, %v; want 3", n, err)
	}
	// Stop early.
	var seen int
	if err := MVCCScan(e, []byte("a"), nil, 10, ScanOptions{KeysOnly: true}, func(kv KeyValue) bool {
		seen++
		if kv.Data != nil {
			t.Errorf("keys-only scan returned data for %q", kv.Key)
		}
		return seen < 2
	}); err != nil {
		t.Fatal(err)
	}
	if seen != 2 {
		t.Errorf("scan did not stop: saw %d", seen)
	}
}

func TestMVCCVersionsHistory(t *testing.T) {
	e := openTestEngine(t, t.TempDir())
	defer e.Close()
	put(t, e, "a", 1, Value{CreateRev: 1, Version: 1, Data: []byte("x")})
	put(t, e, "a", 3, Value{CreateRev: 1, Version: 2, Data: []byte("y")})
	del(t, e, "a", 4)
	put(t, e, "b", 2, Value{CreateRev: 2, Version: 1, Data: []byte("z")})
	var got string
	if err := MVCCVersions(e, []byte("a"), nil, 2, 4, func(kv KeyValue) bool {
		got += fmt.Sprintf("%s@%d:%v ", kv.Key, kv.ModRev, kv.Tombstone)
		return true
	}); err != nil {
		t.Fatal(err)
	}
	if want := "a@4:true a@3:false b@2:false "; got != want {
		t.Errorf("versions = %q, want %q", got, want)
	}
}

func TestMVCCCompact(t *testing.T) {
	e := openTestEngine(t, t.TempDir())
	defer e.Close()
	// "k" as in the package doc; "gone" deleted before the compaction point;
	// "many" with many versions to exercise batching.
	put(t, e, "k", 5, Value{CreateRev: 5, Version: 1, Data: []byte("v1")})
	put(t, e, "k", 9, Value{CreateRev: 5, Version: 2, Data: []byte("v2")})
	del(t, e, "k", 12)
	put(t, e, "k", 20, Value{CreateRev: 20, Version: 1, Data: []byte("v3")})
	put(t, e, "gone", 1, Value{CreateRev: 1, Version: 1, Data: []byte("g")})
	del(t, e, "gone", 2)
	for i := 1; i <= 50; i++ {
		put(t, e, "many", Revision(100+i), Value{CreateRev: 101, Version: int64(i), Data: []byte(fmt.Sprint(i))})
	}

	st, err := e.MVCCCompact(nil, nil, 10, 7)
	if err != nil {
		t.Fatal(err)
	}
	// k: @5 dropped (kept @9); gone: both dropped (newest is a tombstone).
	if st.VersionsDeleted != 3 {
		t.Errorf("deleted %d versions at 10, want 3", st.VersionsDeleted)
	}
	if kv, ok, _ := MVCCGet(e, []byte("k"), 10); !ok || string(kv.Data) != "v2" {
		t.Errorf("k@10 after compaction = %v %+v", ok, kv)
	}
	if _, ok, _ := MVCCGet(e, []byte("k"), 7); ok {
		t.Error("k@7 still readable after compaction at 10")
	}
	// The second compaction reports its progress batch by batch.
	var batches []int
	st, err = e.MVCCCompactWithProgress(nil, nil, 140, 7, func(n int) { batches = append(batches, n) })
	if err != nil {
		t.Fatal(err)
	}
	sum := 0
	for _, n := range batches {
		sum += n
		if n > 7 {
			t.Errorf("a progress step of %d deletions, above the batch size 7", n)
		}
	}
	if int64(sum) != st.VersionsDeleted || len(batches) != 6 {
		t.Errorf("progress %v (sum %d), want 6 steps summing to %d", batches, sum, st.VersionsDeleted)
	}
	// k: @9 and tombstone @12 dropped (newest <= 140 is @20, kept); many: 39 older versions.
	if st.VersionsDeleted != 2+39 {
		t.Errorf("deleted %d versions at 140, want 41", st.VersionsDeleted)
	}
	var versions int
	_ = MVCCVersions(e, nil, nil, 1, 1<<62, func(KeyValue) bool { versions++; return true })
	if versions != 1+11 {
		t.Errorf("%d versions left, want 12", versions)
	}
	if kv, ok, _ := MVCCGet(e, []byte("many"), 150); !ok || string(kv.Data) != "50" {
		t.Errorf("many@150 = %v %+v", ok, kv)
	}
}

func TestExportIngestReplacesSpan(t *testing.T) {
	src := openTestEngine(t, t.TempDir())
	defer src.Close()
	dst := openTestEngine(t, t.TempDir())
	defer dst.Close()
	for i := 0; i < 100; i++ {
		put(t, src, fmt.Sprintf("r/%03d", i), Revision(i+1), Value{CreateRev: Revision(i + 1), Version: 1, Data: []byte("src")})
	}
	put(t, src, "z/outside", 500, Value{CreateRev: 500, Version: 1, Data: []byte("no")})
	// Stale data in the span on the receiver must vanish; data outside stays.
	put(t, dst, "r/stale", 7, Value{CreateRev: 7, Version: 1, Data: []byte("old")})
	put(t, dst, "q/keep", 7, Value{CreateRev: 7, Version: 1, Data: []byte("keep")})

	span := DataSpan([]byte("r/"), []byte("r0"))
	snap := src.NewSnapshot()
	path := filepath.Join(t.TempDir(), "span.sst")
	n, err := src.ExportSpan(snap, span, path)
	snap.Close()
	if err != nil {
		t.Fatal(err)
	}
	if n != 100 {
		t.Fatalf("exported %d keys, want 100", n)
	}
	if err := dst.Ingest(context.Background(), []string{path}); err != nil {
		t.Fatal(err)
	}
	if got, want := scanKeys(t, dst, "r/", "r0", 1000), scanKeys(t, src, "r/", "r0", 1000); got != want {
		t.Errorf("span after ingest differs:\n got %s\nwant %s", got, want)
	}
	if got := scanKeys(t, dst, "q", "r", 1000); got != "q/keep=keep@7 " {
		t.Errorf("key outside span changed: %q", got)
	}
	if got := scanKeys(t, dst, "z", "", 1000); got != "" {
		t.Errorf("key outside exported span arrived: %q", got)
	}
}

func TestRestartKeepsSyncedWrites(t *testing.T) {
	dir := t.TempDir()
	e := openTestEngine(t, dir)
	before := e.WALSyncs()
	b := e.NewWriteBatch()
	if err := b.Set(LocalGroupKey(1, KindHardState), []byte("hs")); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(true); err != nil {
		t.Fatal(err)
	}
	b.Close()
	if e.WALSyncs() <= before {
		t.Errorf("synced commit did not fsync the WAL (syncs %d -> %d)", before, e.WALSyncs())
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e = openTestEngine(t, dir)
	defer e.Close()
	v, err := e.Get(LocalGroupKey(1, KindHardState))
	if err != nil || string(v) != "hs" {
		t.Fatalf("after reopen: %q, %v", v, err)
	}
	if _, err := e.Get(LocalGroupKey(2, KindHardState)); err != ErrNotFound {
		t.Fatalf("missing key: %v, want ErrNotFound", err)
	}
}

func BenchmarkMVCCScan1000(b *testing.B) {
	e := openTestEngine(b, b.TempDir())
	defer e.Close()
	for i := 0; i < 1000; i++ {
		for v := 1; v <= 3; v++ {
			put(b, e, fmt.Sprintf("key/%04d", i), Revision(i*10+v), Value{CreateRev: 1, Version: int64(v), Data: make([]byte, 64)})
		}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		n := 0
		_ = MVCCScan(e, []byte("key/"), []byte("key0"), 1<<40, ScanOptions{}, func(KeyValue) bool { n++; return true })
		if n != 1000 {
			b.Fatal(n)
		}
	}
}
