package watchhub

import (
	"fmt"
	"testing"

	"go.etcd.io/etcd/api/v3/mvccpb"
)

func ev(key string) *mvccpb.Event {
	return &mvccpb.Event{Kv: &mvccpb.KeyValue{Key: []byte(key)}}
}

func showRevs(revs []releasedRev) string {
	out := ""
	for _, r := range revs {
		out += fmt.Sprintf("%d:", r.rev)
		for _, e := range r.events {
			out += string(e.GetKv().GetKey())
		}
		out += " "
	}
	return out
}

// TestDedupeRevs: a revision two subscriptions received (the old range
// before a split and a half reading its history again) is released once,
// with every key's event once, in the order of the old range's entry.
func TestDedupeRevs(t *testing.T) {
	for _, tc := range []struct {
		in   []releasedRev
		want string
	}{
		{[]releasedRev{{1, []*mvccpb.Event{ev("a")}}, {2, []*mvccpb.Event{ev("b")}}}, "1:a 2:b "},
		// The old range saw a and m; the right half sees m again.
		{[]releasedRev{{1, []*mvccpb.Event{ev("a"), ev("m")}}, {1, []*mvccpb.Event{ev("m")}}, {3, []*mvccpb.Event{ev("z")}}}, "1:am 3:z "},
		// The halves each saw their part first, the old range all of it.
		{[]releasedRev{{5, []*mvccpb.Event{ev("m")}}, {5, []*mvccpb.Event{ev("a"), ev("m")}}, {5, []*mvccpb.Event{ev("a")}}}, "5:am "},
		{nil, ""},
	} {
		if got := showRevs(dedupeRevs(tc.in)); got != tc.want {
			t.Errorf("dedupeRevs = %q, want %q", got, tc.want)
		}
	}
}
