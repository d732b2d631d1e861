package descset

import (
	"fmt"
	"strings"
	"testing"

	"github.com/tesseradb/tessera/proto/tesserapb"
)

func desc(id uint64, start, end string, gen uint64) *tesserapb.RangeDescriptor {
	return &tesserapb.RangeDescriptor{RangeId: id, StartKey: []byte(start), EndKey: []byte(end), Generation: gen}
}

func show(ds []*tesserapb.RangeDescriptor) string {
	var b strings.Builder
	for _, d := range ds {
		fmt.Fprintf(&b, "r%d[%s,%s)g%d ", d.GetRangeId(), d.GetStartKey(), d.GetEndKey(), d.GetGeneration())
	}
	return strings.TrimSpace(b.String())
}

func TestInsertGenerationDecides(t *testing.T) {
	for _, tc := range []struct {
		name   string
		steps  []*tesserapb.RangeDescriptor
		want   string
		refuse []int // steps Insert must refuse
	}{
		{
			name:  "split evicts its parent and leaves a gap for the right half",
			steps: []*tesserapb.RangeDescriptor{desc(1, "", "m", 1), desc(2, "m", "", 1), desc(1, "", "f", 2)},
			want:  "r1[,f)g2 r2[m,)g1",
		},
		{
			name:  "both halves of a split",
			steps: []*tesserapb.RangeDescriptor{desc(1, "", "m", 1), desc(2, "m", "", 1), desc(3, "f", "m", 2), desc(1, "", "f", 2)},
			want:  "r1[,f)g2 r3[f,m)g2 r2[m,)g1",
		},
		{
			name:   "a stale parent is ignored once a half is in",
			steps:  []*tesserapb.RangeDescriptor{desc(1, "", "f", 2), desc(1, "", "m", 1)},
			want:   "r1[,f)g2",
			refuse: []int{1},
		},
		{
			name:  "a merge evicts both halves",
			steps: []*tesserapb.RangeDescriptor{desc(1, "", "f", 2), desc(3, "f", "m", 4), desc(2, "m", "", 1), desc(1, "", "m", 5)},
			want:  "r1[,m)g5 r2[m,)g1",
		},
		{
			name:   "an equal generation that overlaps is refused, the same descriptor is a no-op",
			steps:  []*tesserapb.RangeDescriptor{desc(1, "a", "m", 3), desc(4, "c", "z", 3), desc(1, "a", "m", 3)},
			want:   "r1[a,m)g3",
			refuse: []int{1, 2},
		},
		{
			name:   "empty span refused",
			steps:  []*tesserapb.RangeDescriptor{desc(1, "m", "a", 3), desc(2, "m", "m", 1)},
			want:   "",
			refuse: []int{0, 1},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := New()
			for i, d := range tc.steps {
				ok, _ := s.Insert(d)
				refused := false
				for _, r := range tc.refuse {
					refused = refused || r == i
				}
				if ok == refused {
					t.Fatalf("step %d (%s): inserted=%v, want %v", i, show([]*tesserapb.RangeDescriptor{d}), ok, !refused)
				}
			}
			if got := show(s.All()); got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestLookupOverlappingGaps(t *testing.T) {
	s := New()
	for _, d := range []*tesserapb.RangeDescriptor{desc(1, "", "c", 1), desc(2, "f", "m", 1), desc(3, "m", "", 1)} {
		s.Insert(d)
	}
	for key, want := range map[string]uint64{"": 1, "b": 1, "c": 0, "e": 0, "f": 2, "l\xff": 2, "m": 3, "zzz": 3} {
		got := s.Get([]byte(key))
		if got.GetRangeId() != want {
			t.Errorf("Get(%q) = r%d, want r%d", key, got.GetRangeId(), want)
		}
	}
	if got, want := show(s.Overlapping([]byte("b"), []byte("g"))), "r1[,c)g1 r2[f,m)g1"; got != want {
		t.Errorf("Overlapping(b,g) = %q, want %q", got, want)
	}
	if got, want := show(s.Overlapping([]byte("c"), []byte("f"))), ""; got != want {
		t.Errorf("Overlapping(c,f) = %q, want %q", got, want)
	}
	if got, want := show(s.Overlapping([]byte("m"), nil)), "r3[m,)g1"; got != want {
		t.Errorf("Overlapping(m,) = %q, want %q", got, want)
	}
	if got, want := show(s.Scan([]byte("c"), 1)), "r2[f,m)g1"; got != want {
		t.Errorf("Scan(c,1) = %q, want %q", got, want)
	}
	gaps := Gaps([]byte("a"), nil, s.Overlapping([]byte("a"), nil))
	if got, want := fmt.Sprintf("%q", gaps), `[["c" "f"]]`; got != want {
		t.Errorf("Gaps = %s, want %s", got, want)
	}
	gaps = Gaps([]byte("d"), []byte("e"), nil)
	if got, want := fmt.Sprintf("%q", gaps), `[["d" "e"]]`; got != want {
		t.Errorf("Gaps(empty) = %s, want %s", got, want)
	}
}
