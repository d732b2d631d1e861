// Package descset keeps a set of non-overlapping range descriptors ordered
// by key, with the rule that decides between overlapping ones: the higher
// generation is newer (every split gives both halves the old generation + 1,
// a merge gives max(left, right) + 1). The meta group's range directory and
// every router's range cache keep their descriptors in one.
//
// Worked example: the set holds A=[a,m) gen 3 and B=[m,"") gen 3. A split
// of A reports A'=[a,f) gen 4: it overlaps A (gen 3 < 4), so A goes and A'
// goes in; [f,m) is now a gap until the right half C=[f,m) gen 4 arrives.
// A late report of A at gen 3 is then ignored: it overlaps A' (gen 4 >= 3).
//
// A Set is not safe for concurrent use; its owner locks.
package descset

import (
	"bytes"

	"github.com/google/btree"

	"github.com/tesseradb/tessera/proto/tesserapb"
)

// degree of the btree: 32 keeps nodes within a few cache lines of pointers.
const degree = 32

// Set is a set of non-overlapping descriptors ordered by end key (an empty
// end key, the end of the keyspace, last), as CockroachDB's meta2 records.
type Set struct {
	t *btree.BTreeG[*tesserapb.RangeDescriptor]
}

// New returns an empty set.
func New() *Set {
	return &Set{t: btree.NewG(degree, lessByEnd)}
}

// lessByEnd orders by end key, the empty end key last.
func lessByEnd(a, b *tesserapb.RangeDescriptor) bool {
	return CompareEnd(a.GetEndKey(), b.GetEndKey()) < 0
}

// CompareEnd compares two end keys, empty meaning +infinity.
func CompareEnd(a, b []byte) int {
	switch {
	case len(a) == 0 && len(b) == 0:
		return 0
	case len(a) == 0:
		return 1
	case len(b) == 0:
		return -1
	}
	return bytes.Compare(a, b)
}

// Before reports whether key (a start key or a key: empty is the smallest)
// lies before end (an end key: empty is +infinity).
func Before(key, end []byte) bool {
	return len(end) == 0 || bytes.Compare(key, end) < 0
}

// Contains reports whether d's span holds key.
func Contains(d *tesserapb.RangeDescriptor, key []byte) bool {
	return bytes.Compare(d.GetStartKey(), key) <= 0 && Before(key, d.GetEndKey())
}

// Overlap reports whether the spans [s1, e1) and [s2, e2) share a key
// (empty end: end of keyspace).
func Overlap(s1, e1, s2, e2 []byte) bool {
	return Before(s1, e2) && Before(s2, e1)
}

// Len returns the number of descriptors.
func (s *Set) Len() int { return s.t.Len() }

// Clear empties the set.
func (s *Set) Clear() { s.t.Clear(false) }

// Get returns the descriptor containing key, or nil when key falls in a gap.
func (s *Set) Get(key []byte) *tesserapb.RangeDescriptor {
	var out *tesserapb.RangeDescriptor
	s.ascendAfter(key, func(d *tesserapb.RangeDescriptor) bool {
		if bytes.Compare(d.GetStartKey(), key) <= 0 {
			out = d
		}
		return false
	})
	return out
}

// ascendAfter visits, in key order, the descriptors whose end is after key.
func (s *Set) ascendAfter(key []byte, fn func(d *tesserapb.RangeDescriptor) bool) {
	// The first descriptor with end > key: end >= key, skipping end == key.
	pivot := &tesserapb.RangeDescriptor{EndKey: key}
	if len(key) == 0 {
		// Every end key is after the empty (smallest) key; the pivot would
		// otherwise mean +infinity.
		s.t.Ascend(func(d *tesserapb.RangeDescriptor) bool { return fn(d) })
		return
	}
	s.t.AscendGreaterOrEqual(pivot, func(d *tesserapb.RangeDescriptor) bool {
		if len(d.GetEndKey()) > 0 && bytes.Equal(d.GetEndKey(), key) {
			return true
		}
		return fn(d)
	})
}

// Overlapping returns, in key order, the descriptors sharing a key with
// [start, end) (end empty: to the end of the keyspace).
func (s *Set) Overlapping(start, end []byte) []*tesserapb.RangeDescriptor {
	var out []*tesserapb.RangeDescriptor
	s.ascendAfter(start, func(d *tesserapb.RangeDescriptor) bool {
		if !Before(d.GetStartKey(), end) {
			return false
		}
		out = append(out, d)
		return true
	})
	return out
}

// Scan returns up to limit descriptors (0: all) whose end is after start,
// in key order.
func (s *Set) Scan(start []byte, limit int) []*tesserapb.RangeDescriptor {
	var out []*tesserapb.RangeDescriptor
	s.ascendAfter(start, func(d *tesserapb.RangeDescriptor) bool {
		out = append(out, d)
		return limit <= 0 || len(out) < limit
	})
	return out
}

// All returns every descriptor in key order.
func (s *Set) All() []*tesserapb.RangeDescriptor { return s.Scan(nil, 0) }

// Insert adds d unless an overlapping descriptor is at least as new (same
// or higher generation), in which case it returns false and changes
// nothing. Otherwise every overlapping descriptor (all of lower generation)
// is removed and returned in evicted. A descriptor identical to the one held
// (same range, generation and span) changes nothing and returns false.
func (s *Set) Insert(d *tesserapb.RangeDescriptor) (inserted bool, evicted []*tesserapb.RangeDescriptor) {
	if d == nil || !ValidSpan(d) {
		return false, nil
	}
	over := s.Overlapping(d.GetStartKey(), d.GetEndKey())
	for _, o := range over {
		if o.GetGeneration() >= d.GetGeneration() {
			return false, nil
		}
	}
	for _, o := range over {
		s.t.Delete(o)
	}
	s.t.ReplaceOrInsert(d)
	return true, over
}

// Remove drops the descriptor with d's end key if it is d's range.
func (s *Set) Remove(d *tesserapb.RangeDescriptor) bool {
	got, ok := s.t.Get(d)
	if !ok || got.GetRangeId() != d.GetRangeId() {
		return false
	}
	s.t.Delete(got)
	return true
}

// ValidSpan reports whether d's span is non-empty (start < end, or end
// empty).
func ValidSpan(d *tesserapb.RangeDescriptor) bool {
	return Before(d.GetStartKey(), d.GetEndKey())
}

// Gaps returns the sub-spans of [start, end) that no descriptor of ds
// (non-overlapping, in key order, as Overlapping returns) covers.
func Gaps(start, end []byte, ds []*tesserapb.RangeDescriptor) [][2][]byte {
	var out [][2][]byte
	cur := start
	for _, d := range ds {
		if bytes.Compare(d.GetStartKey(), cur) > 0 {
			out = append(out, [2][]byte{cur, d.GetStartKey()})
		}
		if len(d.GetEndKey()) == 0 {
			return out
		}
		if bytes.Compare(d.GetEndKey(), cur) > 0 {
			cur = d.GetEndKey()
		}
	}
	if Before(cur, end) {
		out = append(out, [2][]byte{cur, end})
	}
	return out
}
