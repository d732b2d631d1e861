package router

import (
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tesseradb/tessera/proto/tesserapb"
)

func layoutOf(c *RangeCache) string {
	s := ""
	for _, d := range c.Ranges() {
		s += fmt.Sprintf("%d@%d[%s,%s) ", d.GetRangeId(), d.GetGeneration(), d.GetStartKey(), d.GetEndKey())
	}
	return s
}

// TestCacheInsertGenerationDecides: a newer descriptor replaces the older
// ones it overlaps, whose uncovered rest stays (trimmed, old generation) so
// no hole opens; an older or equal one changes nothing; a merge result
// replaces both halves.
func TestCacheInsertGenerationDecides(t *testing.T) {
	c := NewRangeCache([]*tesserapb.RangeDescriptor{
		{RangeId: 2, EndKey: []byte("g"), Generation: 1},
		{RangeId: 3, StartKey: []byte("g"), Generation: 1},
	})
	steps := []struct {
		d       *tesserapb.RangeDescriptor
		changed bool
		want    string
	}{
		// The left half of a split of 3 arrives first: the rest stays with 3@1.
		{&tesserapb.RangeDescriptor{RangeId: 3, StartKey: []byte("g"), EndKey: []byte("p"), Generation: 2}, true, "2@1[,g) 3@2[g,p) 3@1[p,) "},
		{&tesserapb.RangeDescriptor{RangeId: 3, StartKey: []byte("g"), EndKey: []byte("p"), Generation: 2}, false, "2@1[,g) 3@2[g,p) 3@1[p,) "},
		{&tesserapb.RangeDescriptor{RangeId: 3, StartKey: []byte("g"), Generation: 1}, false, "2@1[,g) 3@2[g,p) 3@1[p,) "},
		{&tesserapb.RangeDescriptor{RangeId: 7, StartKey: []byte("p"), Generation: 2}, true, "2@1[,g) 3@2[g,p) 7@2[p,) "},
		// 3 and 7 merge back: generation max+1.
		{&tesserapb.RangeDescriptor{RangeId: 3, StartKey: []byte("g"), Generation: 3}, true, "2@1[,g) 3@3[g,) "},
	}
	for i, s := range steps {
		if got := c.Insert(s.d); got != s.changed {
			t.Fatalf("step %d: changed %v, want %v", i, got, s.changed)
		}
		if got := layoutOf(c); got != s.want {
			t.Fatalf("step %d: layout %q, want %q", i, got, s.want)
		}
	}
	if got := c.Overlapping([]byte("q"), nil); len(got) != 1 || got[0].GetRangeId() != 3 {
		t.Fatalf("q is in %v", got)
	}
}

func TestValidateSplitRequest(t *testing.T) {
	big := make([]byte, maxSplitKeyBytes+1)
	for i, req := range []*tesserapb.SplitRangeRequest{
		{SplitKey: []byte("m")},
		{RangeId: 2, Key: []byte("a"), SplitKey: []byte("m")},
		{RangeId: 1, SplitKey: []byte("m")},
		{RangeId: 2},
		{RangeId: 2, SplitKey: big},
		{Key: big, SplitKey: []byte("m")},
	} {
		if err := validateSplitRequest(req); status.Code(err) != codes.InvalidArgument {
			t.Fatalf("request %d: %v, want InvalidArgument", i, err)
		}
	}
	if err := validateSplitRequest(&tesserapb.SplitRangeRequest{Key: []byte("a"), SplitKey: []byte("m")}); err != nil {
		t.Fatal(err)
	}
}
