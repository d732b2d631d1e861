package bench

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
)

// fakeClock is a virtual clock: sleeping jumps to the wake-up time and a
// fake request advances it by its service time. It is exact for one client.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) SleepUntil(ctx context.Context, t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t.After(c.now) {
		c.now = t
	}
	return ctx.Err()
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// serviceWorker takes service time per request on clk.
func serviceWorker(clk *fakeClock, service time.Duration) Worker {
	return WorkerFunc(func(context.Context) (string, error) {
		clk.advance(service)
		return "op", nil
	})
}

func runCfg(rate float64, total int64, duration time.Duration) RunConfig {
	cfg := DefaultRunConfig()
	cfg.Clients = 1
	cfg.Rate, cfg.Total, cfg.Duration = rate, total, duration
	return cfg
}

// latencies returns the recorded latencies of op in order, read back from
// the histogram at each rank.
func latencies(t *testing.T, rec *Recorder, op string, n int) []time.Duration {
	t.Helper()
	h := rec.ops[op].hist
	if h.Count() != int64(n) {
		t.Fatalf("%s: %d latencies recorded, want %d", op, h.Count(), n)
	}
	var out []time.Duration
	for i := 1; i <= n; i++ {
		out = append(out, h.Quantile(100*float64(i)/float64(n)))
	}
	return out
}

func checkLatencies(t *testing.T, got, want []time.Duration) {
	t.Helper()
	for i := range want {
		if !within(got[i], want[i], 0.001) {
			t.Errorf("latency %d = %s, want %s", i, got[i], want[i])
		}
	}
}

// The worked example of Schedule: at 100/s with one client taking 25ms a
// request, the queue grows by 15ms a request and the latencies show it.
func TestDriveOpenLoopCountsQueueing(t *testing.T) {
	clk := &fakeClock{now: t0}
	rec, st := Drive(context.Background(), runCfg(100, 5, 0), []Worker{serviceWorker(clk, 25*time.Millisecond)}, clk)
	checkLatencies(t, latencies(t, rec, "op", 5), []time.Duration{
		25 * time.Millisecond, 40 * time.Millisecond, 55 * time.Millisecond, 70 * time.Millisecond, 85 * time.Millisecond,
	})
	if got := st.Span.End.Sub(st.Span.Start); got != 125*time.Millisecond {
		t.Errorf("span = %s, want 125ms", got)
	}
	if st.Unsent != 0 {
		t.Errorf("unsent = %d, want 0", st.Unsent)
	}
}

// The same server in a closed loop reports only its service time: the
// coordinated omission that the open loop avoids.
func TestDriveClosedLoopMeasuresServiceTime(t *testing.T) {
	clk := &fakeClock{now: t0}
	rec, st := Drive(context.Background(), runCfg(0, 5, 0), []Worker{serviceWorker(clk, 25*time.Millisecond)}, clk)
	checkLatencies(t, latencies(t, rec, "op", 5), []time.Duration{
		25 * time.Millisecond, 25 * time.Millisecond, 25 * time.Millisecond, 25 * time.Millisecond, 25 * time.Millisecond,
	})
	if got := st.Span.End.Sub(st.Span.Start); got != 125*time.Millisecond {
		t.Errorf("span = %s, want 125ms", got)
	}
}

// An open loop faster than the schedule waits for each intended time: the
// requests keep their pace and the latency is the service time.
func TestDriveOpenLoopKeepsPace(t *testing.T) {
	clk := &fakeClock{now: t0}
	rec, st := Drive(context.Background(), runCfg(100, 0, 50*time.Millisecond), []Worker{serviceWorker(clk, 5*time.Millisecond)}, clk)
	checkLatencies(t, latencies(t, rec, "op", 5), []time.Duration{
		5 * time.Millisecond, 5 * time.Millisecond, 5 * time.Millisecond, 5 * time.Millisecond, 5 * time.Millisecond,
	})
	if got := st.Span.End.Sub(st.Span.Start); got != 45*time.Millisecond {
		t.Errorf("span = %s, want 45ms (last request due at 40ms, done at 45ms)", got)
	}
}

func TestDriveClosedLoopStopsAtDuration(t *testing.T) {
	clk := &fakeClock{now: t0}
	// Requests start at 0, 30, 60 and 90ms; at 120ms the 100ms are over.
	rec, _ := Drive(context.Background(), runCfg(0, 0, 100*time.Millisecond), []Worker{serviceWorker(clk, 30*time.Millisecond)}, clk)
	if n := rec.ops["op"].hist.Count(); n != 4 {
		t.Errorf("%d requests, want 4", n)
	}
}

// An open loop that falls further behind than MaxLag stops sending and
// reports what it did not send.
func TestDriveOpenLoopMaxLag(t *testing.T) {
	clk := &fakeClock{now: t0}
	cfg := runCfg(100, 10, 0) // due at 0…90ms
	cfg.MaxLag = 50 * time.Millisecond
	rec, st := Drive(context.Background(), cfg, []Worker{serviceWorker(clk, 100*time.Millisecond)}, clk)
	// Request 0 runs 0–100ms, request 1 (due 10ms) 100–200ms; at 200ms the
	// run is past 90+50ms and stops: 8 requests unsent.
	checkLatencies(t, latencies(t, rec, "op", 2), []time.Duration{100 * time.Millisecond, 190 * time.Millisecond})
	if st.Unsent != 8 {
		t.Errorf("unsent = %d, want 8", st.Unsent)
	}
}

func TestDriveManyClientsSendExactlyTotal(t *testing.T) {
	var calls atomic.Int64
	w := WorkerFunc(func(context.Context) (string, error) {
		calls.Add(1)
		return "op", nil
	})
	for _, rate := range []float64{0, 1e6} {
		calls.Store(0)
		cfg := runCfg(rate, 1000, 0)
		cfg.Clients = 8
		var completed atomic.Int64
		cfg.OnComplete = func() { completed.Add(1) }
		workers := make([]Worker, cfg.Clients)
		for i := range workers {
			workers[i] = w
		}
		rec, st := Drive(context.Background(), cfg, workers, RealClock{})
		if calls.Load() != 1000 || rec.ops["op"].hist.Count() != 1000 || completed.Load() != 1000 {
			t.Errorf("rate %g: %d calls, %d recorded, %d completions; want 1000 each",
				rate, calls.Load(), rec.ops["op"].hist.Count(), completed.Load())
		}
		if st.Unsent != 0 {
			t.Errorf("rate %g: unsent = %d", rate, st.Unsent)
		}
	}
}

func TestDriveGroupsErrorsByCode(t *testing.T) {
	clk := &fakeClock{now: t0}
	var i int
	w := WorkerFunc(func(context.Context) (string, error) {
		i++
		clk.advance(time.Millisecond)
		switch i % 4 {
		case 1:
			return "put", rpctypes.ErrLeaderChanged
		case 2:
			return "put", context.DeadlineExceeded
		case 3:
			return "get", rpctypes.ErrLeaderChanged
		}
		return "get", nil
	})
	rec, _ := Drive(context.Background(), runCfg(0, 8, 0), []Worker{w}, clk)
	want := map[string]int64{
		"Unavailable: etcdserver: leader changed":     4,
		"DeadlineExceeded: context deadline exceeded": 2,
	}
	if len(rec.errors) != len(want) {
		t.Errorf("errors = %v, want %v", rec.errors, want)
	}
	for k, n := range want {
		if rec.errors[k] != n {
			t.Errorf("errors[%q] = %d, want %d", k, rec.errors[k], n)
		}
	}
	if rec.ops["put"].errors != 4 || rec.ops["put"].hist.Count() != 0 {
		t.Errorf("put: %d errors %d ok, want 4 and 0", rec.ops["put"].errors, rec.ops["put"].hist.Count())
	}
	if rec.ops["get"].errors != 2 || rec.ops["get"].hist.Count() != 2 {
		t.Errorf("get: %d errors %d ok, want 2 and 2", rec.ops["get"].errors, rec.ops["get"].hist.Count())
	}
}

// Cancelling the run stops it promptly; the requests it cut short are not
// counted as server errors.
func TestDriveStopsOnCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan struct{})
	var once sync.Once
	w := WorkerFunc(func(rctx context.Context) (string, error) {
		once.Do(func() { close(started) })
		<-rctx.Done()
		return "op", rctx.Err()
	})
	done := make(chan struct{})
	var rec *Recorder
	var st DriveStats
	go func() {
		defer close(done)
		rec, st = Drive(ctx, runCfg(0, 0, time.Hour), []Worker{w, w}, RealClock{})
	}()
	<-started
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Drive did not return after cancel")
	}
	if !st.Interrupted {
		t.Error("not marked interrupted")
	}
	if len(rec.errors) != 0 {
		t.Errorf("errors = %v, want none", rec.errors)
	}
}
