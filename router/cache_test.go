package router

import (
	"fmt"
	"testing"

	"github.com/tesseradb/tessera/proto/tesserapb"
)

func TestOverlapping(t *testing.T) {
	c := NewRangeCache([]*tesserapb.RangeDescriptor{
		{RangeId: 3, StartKey: []byte("d"), EndKey: []byte("m")},
		{RangeId: 2, StartKey: nil, EndKey: []byte("d")},
		{RangeId: 4, StartKey: []byte("m"), EndKey: nil},
	})
	ids := func(key, end string) string {
		var e []byte
		if end != "" {
			e = []byte(end)
		}
		out := ""
		for _, r := range c.Overlapping([]byte(key), e) {
			out += fmt.Sprint(r.GetRangeId())
		}
		return out
	}
	for _, tc := range []struct{ key, end, want string }{
		{"a", "", "2"},
		{"d", "", "3"},
		{"c", "", "2"},
		{"zz", "", "4"},
		{"a", "d", "2"},
		{"a", "d\x00", "23"},
		{"a", "\x00", "234"},
		{"e", "\x00", "34"},
		{"\x00", "\x00", "234"},
		{"d", "m", "3"},
		{"c", "n", "234"},
		{"m", "\xff", "4"},
		{"e", "e", "3"}, // empty: routed to the key's range, which answers nothing
		{"e", "a", "3"}, // inverted: the same
	} {
		if got := ids(tc.key, tc.end); got != tc.want {
			t.Errorf("Overlapping(%q, %q) = %s, want %s", tc.key, tc.end, got, tc.want)
		}
	}
	if c.Update(&tesserapb.RangeDescriptor{RangeId: 3, Generation: 0}) {
		t.Error("update with an older generation accepted")
	}
	if !c.Update(&tesserapb.RangeDescriptor{RangeId: 3, StartKey: []byte("d"), EndKey: []byte("m"), Generation: 2}) {
		t.Error("update with a newer generation refused")
	}
}
