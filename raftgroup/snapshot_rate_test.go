package raftgroup

import (
	"testing"
	"time"
)

// TestRateLimiterReserve: reservations follow each other at the rate, and
// time that passed with nothing sent is not saved up as a burst.
func TestRateLimiterReserve(t *testing.T) {
	l := newRateLimiter(1 << 20) // 1 MiB/s
	t0 := time.Unix(1000, 0)
	if d := l.reserve(t0, 512<<10); d != 0 {
		t.Fatalf("first reservation waits %v", d)
	}
	if d := l.reserve(t0, 512<<10); d != 500*time.Millisecond {
		t.Fatalf("second half MiB waits %v, want 500ms", d)
	}
	if d := l.reserve(t0.Add(250*time.Millisecond), 1<<20); d != 750*time.Millisecond {
		t.Fatalf("third reservation waits %v, want 750ms", d)
	}
	// Idle for a minute: no burst credit.
	later := t0.Add(time.Minute)
	l.reserve(later, 1<<20)
	if d := l.reserve(later, 1<<20); d != time.Second {
		t.Fatalf("after idling, 1 MiB waits %v, want 1s", d)
	}
}
