package engine

import (
	"fmt"
	"sync/atomic"
	"testing"
)

// TestMVCCCompactNeverResurrects: while a compaction drops deleted keys in
// small batches, no read sees any of them alive. The compaction commits a
// batch every batchSize deletions, so a reader (or a crash, after which
// nothing resumes the compaction) sees every state between two batches.
// Before the fix the tombstone, the newest version, went in an earlier
// batch than the versions it hides, and in between a deleted key read as
// alive with its last value.
func TestMVCCCompactNeverResurrects(t *testing.T) {
	e := openTestEngine(t, t.TempDir())
	defer e.Close()
	const keys, versions = 1000, 3
	rev := Revision(0)
	for k := range keys {
		key := fmt.Sprintf("k%03d", k)
		for v := range versions {
			rev++
			put(t, e, key, rev, Value{CreateRev: rev - Revision(v), Version: int64(v + 1), Data: []byte("old")})
		}
		rev++
		del(t, e, key, rev)
	}
	put(t, e, "live", rev+1, Value{CreateRev: rev + 1, Version: 1, Data: []byte("x")})
	head := rev + 1

	done := make(chan error, 1)
	var reads atomic.Int64
	stop := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			snap := e.NewSnapshot()
			got := scanKeys(t, snap, "k", "l", head)
			_ = snap.Close()
			reads.Add(1)
			if got != "" {
				done <- fmt.Errorf("deleted keys alive during the compaction: %s", got)
				return
			}
		}
	}()
	st, err := e.MVCCCompact(nil, nil, head, 1)
	close(stop)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("after %d reads: %v", reads.Load(), err)
	}
	t.Logf("%d reads during the compaction", reads.Load())
	if st.VersionsDeleted != keys*(versions+1) {
		t.Errorf("deleted %d versions, want %d", st.VersionsDeleted, keys*(versions+1))
	}
	if got := scanKeys(t, e, "", "", head); got != "live=x@"+fmt.Sprint(head)+" " {
		t.Errorf("after the compaction: %q", got)
	}
}
