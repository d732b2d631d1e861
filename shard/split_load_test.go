package shard

import (
	"fmt"
	"testing"
	"time"

	"github.com/tesseradb/tessera/proto/tesserapb"
)

func TestLoadSplitterFindsMiddleOfLoad(t *testing.T) {
	var l loadSplitter
	now := time.Unix(1000, 0)
	// Keys a/00..a/99 are hit uniformly, z/.. as often as all of them
	// together: the load's middle is near the end of the a/ keys.
	for i := range 4000 {
		k := fmt.Sprintf("a/%02d", i%100)
		if i%2 == 1 {
			k = fmt.Sprintf("z/%02d", i%10)
		}
		l.record(now, []byte(k), nil)
	}
	desc := &tesserapb.RangeDescriptor{RangeId: 2}
	key := l.splitKey(func(k []byte) bool { return ValidateSplitKey(desc, k) == nil })
	if key == nil {
		t.Fatal("no split key")
	}
	if string(key) < "a/60" || string(key) > "z/05" {
		t.Fatalf("split key %q: want one near the middle of the load (between a/60 and z/05)", key)
	}
}

func TestLoadSplitterOneHotKeyDoesNotSplit(t *testing.T) {
	var l loadSplitter
	now := time.Unix(1000, 0)
	for range 1000 {
		l.record(now, []byte("hot"), nil)
	}
	if key := l.splitKey(func([]byte) bool { return true }); key != nil {
		t.Fatalf("split key %q for a single key's load: a key's versions never split", key)
	}
}

func TestLoadSplitterHotNeedsEverySecond(t *testing.T) {
	var l loadSplitter
	start := time.Unix(1000, 0)
	for s := range 12 {
		n := 30
		if s == 5 {
			n = 10 // one slow second
		}
		for range n {
			l.record(start.Add(time.Duration(s)*time.Second), nil, nil)
		}
	}
	now := start.Add(12 * time.Second)
	if l.hot(now, 20, 10*time.Second) {
		t.Fatal("hot although one second of the last 10 served 10 requests, under 20")
	}
	if !l.hot(now, 20, 6*time.Second) {
		t.Fatal("not hot although each of the last 6 seconds served 30 requests, over 20")
	}
}
