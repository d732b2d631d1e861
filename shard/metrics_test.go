package shard

import (
	"math"
	"testing"
	"time"
)

// TestLoadMeter: a steady rate converges to itself, and an idle range's
// load halves every half-life.
func TestLoadMeter(t *testing.T) {
	l := loadMeter{halfLife: time.Minute}
	now := time.Unix(1_000_000, 0)
	// 10 requests per second for ten half-lives.
	for range 10 * 60 * 10 {
		now = now.Add(100 * time.Millisecond)
		l.add(now, 1)
	}
	if r := l.rate(now); math.Abs(r-10) > 0.2 {
		t.Fatalf("steady 10/s: rate %v", r)
	}
	r0 := l.rate(now)
	if r := l.rate(now.Add(time.Minute)); math.Abs(r-r0/2) > 1e-9 {
		t.Errorf("one idle half-life: rate %v, want %v", r, r0/2)
	}
	if r := l.rate(now.Add(time.Hour)); r > 1e-9 {
		t.Errorf("an idle hour: rate %v, want about 0", r)
	}
	var empty loadMeter
	empty.halfLife = time.Minute
	if r := empty.rate(now); r != 0 {
		t.Errorf("no request: rate %v", r)
	}
}
