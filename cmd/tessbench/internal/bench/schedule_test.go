package bench

import (
	"sync"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func TestScheduleOpenLoopIntendedTimes(t *testing.T) {
	s := NewSchedule(t0, 3, 7, 0) // 3 req/s: one every 333.33…ms
	for i := range int64(7) {
		tk, ok := s.Next(t0.Add(time.Hour)) // how late it is asked does not matter
		if !ok {
			t.Fatalf("request %d: schedule ended early", i)
		}
		want := t0.Add(time.Duration(float64(i) * float64(time.Second) / 3))
		if tk.Index != i || !tk.Intended.Equal(want) {
			t.Errorf("request %d: got %d at %s, want at %s", i, tk.Index, tk.Intended.Sub(t0), want.Sub(t0))
		}
	}
	// No drift: request 3 is due at exactly 1s, request 6 at 2s.
	if got := s.IntendedAt(3).Sub(t0); got != time.Second {
		t.Errorf("request 3 due at %s, want 1s", got)
	}
	if got := s.IntendedAt(6).Sub(t0); got != 2*time.Second {
		t.Errorf("request 6 due at %s, want 2s", got)
	}
	if _, ok := s.Next(t0); ok {
		t.Error("schedule gave an 8th request of 7")
	}
	if _, ok := s.Next(t0); ok {
		t.Error("schedule restarted after ending")
	}
	if s.Remaining() != 0 {
		t.Errorf("remaining = %d, want 0", s.Remaining())
	}
}

func TestScheduleOpenLoopDuration(t *testing.T) {
	// 100/s for 50ms: requests due at 0, 10, 20, 30, 40ms; 50ms is past it.
	s := NewSchedule(t0, 100, 0, 50*time.Millisecond)
	if s.End() != 5 {
		t.Errorf("end = %d, want 5", s.End())
	}
	if got := s.LastIntended().Sub(t0); got != 40*time.Millisecond {
		t.Errorf("last intended = %s, want 40ms", got)
	}
	n := 0
	for {
		if _, ok := s.Next(t0); !ok {
			break
		}
		n++
	}
	if n != 5 {
		t.Errorf("got %d requests, want 5", n)
	}
}

func TestScheduleOpenLoopEndIsTheSmallerBound(t *testing.T) {
	if e := NewSchedule(t0, 1000, 10, time.Second).End(); e != 10 {
		t.Errorf("total bound: end = %d, want 10", e)
	}
	if e := NewSchedule(t0, 1000, 5000, time.Second).End(); e != 1000 {
		t.Errorf("duration bound: end = %d, want 1000", e)
	}
	if e := NewSchedule(t0, 7, 0, time.Second).End(); e != 7 {
		t.Errorf("7/s for 1s: end = %d, want 7", e)
	}
}

func TestScheduleRemainingCountsUnclaimed(t *testing.T) {
	s := NewSchedule(t0, 10, 10, 0)
	for range 4 {
		s.Next(t0)
	}
	if s.Remaining() != 6 {
		t.Errorf("remaining = %d, want 6", s.Remaining())
	}
}

func TestScheduleClosedLoop(t *testing.T) {
	s := NewSchedule(t0, 0, 0, time.Second)
	tk, ok := s.Next(t0.Add(999 * time.Millisecond))
	if !ok || !tk.Intended.IsZero() {
		t.Fatalf("closed loop before the end: ok=%v intended=%v, want a request without intended time", ok, tk.Intended)
	}
	if _, ok := s.Next(t0.Add(time.Second)); ok {
		t.Error("closed loop gave a request at its duration")
	}
	if s.Remaining() != 0 {
		t.Error("closed loop reports remaining requests")
	}
	s = NewSchedule(t0, 0, 3, 0)
	for i := range 3 {
		if _, ok := s.Next(t0.Add(time.Duration(i) * time.Hour)); !ok {
			t.Fatalf("closed loop with total 3 ended at %d", i)
		}
	}
	if _, ok := s.Next(t0); ok {
		t.Error("closed loop gave a 4th request of 3")
	}
}

func TestScheduleGivesEachIndexOnce(t *testing.T) {
	const total = 10000
	s := NewSchedule(t0, 1e6, total, 0)
	var mu sync.Mutex
	seen := make(map[int64]int)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				tk, ok := s.Next(t0)
				if !ok {
					return
				}
				mu.Lock()
				seen[tk.Index]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(seen) != total {
		t.Fatalf("%d distinct requests, want %d", len(seen), total)
	}
	for i, n := range seen {
		if n != 1 || i < 0 || i >= total {
			t.Fatalf("request %d claimed %d times", i, n)
		}
	}
}
