package engine

import (
	"fmt"
	"testing"
)

// TestMVCCGetOnIndexedBatch: MVCCGet on an indexed batch (the apply path,
// which reuses one iterator per batch) answers exactly as a fresh read of
// the engine plus the batch would: versions committed before, versions the
// batch wrote after an earlier read, tombstones, revision bounds, and keys
// that are prefixes of one another.
func TestMVCCGetOnIndexedBatch(t *testing.T) {
	e := openTestEngine(t, t.TempDir())
	defer e.Close()
	put(t, e, "a", 10, Value{CreateRev: 10, Version: 1, Data: []byte("a10")})
	put(t, e, "ab", 11, Value{CreateRev: 11, Version: 1, Data: []byte("ab11")})
	put(t, e, "c", 12, Value{CreateRev: 12, Version: 1, Data: []byte("c12")})
	del(t, e, "c", 13)

	b := e.NewBatch()
	defer b.Close()
	get := func(key string, rev Revision) string {
		t.Helper()
		kv, ok, err := MVCCGet(b, []byte(key), rev)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			return "none"
		}
		return fmt.Sprintf("%s@%d v%d c%d", kv.Data, kv.ModRev, kv.Version, kv.CreateRev)
	}
	check := func(key string, rev Revision, want string) {
		t.Helper()
		if got := get(key, rev); got != want {
			t.Errorf("MVCCGet(%q, %d) = %s, want %s", key, rev, got, want)
		}
	}
	check("a", 20, "a10@10 v1 c10")
	check("a", 9, "none")   // below its first version
	check("aa", 20, "none") // between "a" and "ab": no leak of "ab"
	check("", 20, "none")   // before everything
	check("c", 20, "none")  // deleted
	check("c", 12, "c12@12 v1 c12")
	check("zz", 20, "none") // past everything

	// Writes of the batch after the iterator exists are seen.
	if err := MVCCPut(b, []byte("a"), 21, Value{CreateRev: 10, Version: 2, Data: []byte("a21")}); err != nil {
		t.Fatal(err)
	}
	check("a", 30, "a21@21 v2 c10")
	check("a", 20, "a10@10 v1 c10")
	if err := MVCCPut(b, []byte("b"), 22, Value{CreateRev: 22, Version: 1, Data: []byte("b22")}); err != nil {
		t.Fatal(err)
	}
	check("b", 30, "b22@22 v1 c22")
	check("aa", 30, "none")
	if err := MVCCDelete(b, []byte("ab"), 23); err != nil {
		t.Fatal(err)
	}
	check("ab", 30, "none")
	check("ab", 22, "ab11@11 v1 c11")
	// A range deletion in the batch (log truncation, change-log cut) is
	// honoured too.
	if err := b.DeleteRange(DataSpan([]byte("b"), []byte("c"))); err != nil {
		t.Fatal(err)
	}
	check("b", 30, "none")

	// Commit closes the iterator; the engine holds what the batch wrote.
	if err := b.Commit(false); err != nil {
		t.Fatal(err)
	}
	kv, ok, err := MVCCGet(e, []byte("a"), 30)
	if err != nil || !ok || string(kv.Data) != "a21" {
		t.Fatalf("after commit: %+v %v %v", kv, ok, err)
	}
}
