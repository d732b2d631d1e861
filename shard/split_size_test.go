package shard

import (
	"fmt"
	"strings"
	"testing"
)

// TestMeasureSpan: the measurement counts every version's bytes, the live
// keys (not deleted ones), and its middle key splits the bytes about in
// half (within the marks' precision) and is never the first key.
func TestMeasureSpan(t *testing.T) {
	s := newKVStore(t)
	const n = 3000
	for i := range n {
		s.mustPut(fmt.Sprintf("k%05d", i), strings.Repeat("v", 100))
	}
	for i := 0; i < n; i += 10 {
		s.mustPut(fmt.Sprintf("k%05d", i), "again") // history
	}
	if _, _, err := s.del(delOp("k00001", "").GetRequestDeleteRange()); err != nil {
		t.Fatal(err)
	}
	st, err := measureSpan(t.Context(), s.e, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if st.Keys != n-1 || st.Versions != n+n/10+1 {
		t.Fatalf("keys %d versions %d, want %d and %d", st.Keys, st.Versions, n-1, n+n/10+1)
	}
	left, err := measureSpan(t.Context(), s.e, nil, st.MidKey)
	if err != nil {
		t.Fatal(err)
	}
	if frac := float64(left.Bytes) / float64(st.Bytes); frac < 0.45 || frac > 0.55 {
		t.Fatalf("middle key %q leaves %.2f of %d bytes on the left", st.MidKey, frac, st.Bytes)
	}
	// One key (many versions) cannot split.
	one := newKVStore(t)
	for range 50 {
		one.mustPut("only", strings.Repeat("x", 1000))
	}
	if st, err := measureSpan(t.Context(), one.e, nil, nil); err != nil || st.MidKey != nil || st.Keys != 1 {
		t.Fatalf("one key: %+v %v", st, err)
	}
}
