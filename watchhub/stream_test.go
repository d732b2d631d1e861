package watchhub

import (
	"fmt"
	"strings"
	"testing"

	"go.etcd.io/etcd/api/v3/mvccpb"

	"github.com/tesseradb/tessera/engine"
)

func event(typ mvccpb.Event_EventType, key string, rev int64, val string) *mvccpb.Event {
	return &mvccpb.Event{Type: typ, Kv: &mvccpb.KeyValue{Key: []byte(key), ModRevision: rev, Value: []byte(val)},
		PrevKv: &mvccpb.KeyValue{Key: []byte(key), Value: []byte("prev")}}
}

func TestWatcherFilter(t *testing.T) {
	revs := []releasedRev{
		{rev: 10, events: []*mvccpb.Event{event(mvccpb.PUT, "a", 10, "1"), event(mvccpb.PUT, "b", 10, "1")}},
		{rev: 20, events: []*mvccpb.Event{event(mvccpb.DELETE, "b", 20, ""), event(mvccpb.PUT, "c", 20, "2")}},
		{rev: 30, events: []*mvccpb.Event{event(mvccpb.PUT, "b", 30, "3")}},
	}
	for _, tc := range []struct {
		name  string
		w     watcher
		after engine.Revision
		want  string
	}{
		{"single key", watcher{key: []byte("b"), end: []byte("b\x00")}, 0, "b@10 b@20 b@30"},
		{"range", watcher{key: []byte("a"), end: []byte("c")}, 0, "a@10 b@10 b@20 b@30"},
		{"from key on", watcher{key: []byte("b")}, 0, "b@10 b@20 c@20 b@30"},
		{"after", watcher{key: []byte("a")}, 10, "b@20 c@20 b@30"},
		{"start", watcher{key: []byte("a"), start: 30}, 0, "b@30"},
		{"noput", watcher{key: []byte("a"), noPut: true}, 0, "b@20"},
		{"nodelete", watcher{key: []byte("b"), end: []byte("b\x00"), noDelete: true}, 0, "b@10 b@30"},
	} {
		var got []string
		for _, ev := range tc.w.filter(revs, tc.after) {
			got = append(got, fmt.Sprintf("%s@%d", ev.Kv.Key, ev.Kv.ModRevision))
			if ev.PrevKv != nil {
				t.Errorf("%s: prev_kv kept for a watcher without it", tc.name)
			}
		}
		if g := strings.Join(got, " "); g != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, g, tc.want)
		}
	}
	w := watcher{key: []byte("a"), prevKV: true}
	if evs := w.filter(revs, 0); evs[0].PrevKv == nil {
		t.Error("prev_kv dropped for a watcher that asked for it")
	}
}

func TestChunks(t *testing.T) {
	big := strings.Repeat("x", 100)
	evs := []*mvccpb.Event{
		event(mvccpb.PUT, "a", 1, big), event(mvccpb.PUT, "b", 1, big), event(mvccpb.PUT, "c", 1, big),
		event(mvccpb.PUT, "a", 2, big), event(mvccpb.PUT, "a", 3, big),
	}
	cs := chunks(evs, 250)
	// Revision 1 stays whole though over the limit; 2 and 3 (each over
	// half the limit) go apart.
	var shape []string
	for _, c := range cs {
		var revs []string
		for _, e := range c {
			revs = append(revs, fmt.Sprint(e.Kv.ModRevision))
		}
		shape = append(shape, strings.Join(revs, ","))
	}
	if got := strings.Join(shape, " | "); got != "1,1,1 | 2 | 3" {
		t.Errorf("chunks = %q", got)
	}
	if cs := chunks(evs, 1<<20); len(cs) != 1 || len(cs[0]) != len(evs) {
		t.Errorf("under the limit: %d chunks", len(cs))
	}
}
