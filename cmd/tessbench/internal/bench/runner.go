package bench

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// DriveStats tells what happened around the recorded requests.
type DriveStats struct {
	// Span runs from the schedule's start to the last completion.
	Span RunSpan
	// Unsent counts open-loop requests that were scheduled but not sent:
	// the MaxLag bound stopped the run, or ctx was cancelled.
	Unsent int64
	// Interrupted is true when ctx ended the run early.
	Interrupted bool
}

// Drive sends requests through workers (one goroutine each) following the
// schedule that cfg describes, and returns everything they recorded, merged.
//
// Latency is measured from the intended send time in an open loop and from
// the actual send in a closed loop. A request that fails because ctx was
// cancelled is not counted: it says nothing about the server.
func Drive(ctx context.Context, cfg RunConfig, workers []Worker, clk Clock) (*Recorder, DriveStats) {
	start := clk.Now()
	sched := NewSchedule(start, cfg.Rate, cfg.Total, cfg.Duration)
	var hardStop time.Time
	if sched.Open() {
		hardStop = sched.LastIntended().Add(cfg.maxLag())
	}

	recs := make([]*Recorder, len(workers))
	last := make([]time.Time, len(workers))
	var unsent atomic.Int64
	var wg sync.WaitGroup
	for i, w := range workers {
		rec := NewRecorder()
		recs[i] = rec
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				t, ok := sched.Next(clk.Now())
				if !ok {
					return
				}
				var sent time.Time
				if sched.Open() {
					if clk.Now().After(hardStop) {
						unsent.Add(1)
						return
					}
					if err := clk.SleepUntil(ctx, t.Intended); err != nil {
						unsent.Add(1)
						return
					}
					sent = t.Intended
				} else {
					sent = clk.Now()
				}
				rctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
				op, err := w.Do(rctx)
				cancel()
				done := clk.Now()
				if err != nil && ctx.Err() != nil {
					unsent.Add(1)
					return
				}
				rec.Record(op, done.Sub(sent), err)
				last[i] = done
				if cfg.OnComplete != nil {
					cfg.OnComplete()
				}
			}
		}()
	}
	wg.Wait()

	merged := NewRecorder()
	end := start
	for i, rec := range recs {
		merged.Merge(rec)
		if last[i].After(end) {
			end = last[i]
		}
	}
	return merged, DriveStats{
		Span:        RunSpan{Start: start, End: end},
		Unsent:      unsent.Load() + sched.Remaining(),
		Interrupted: ctx.Err() != nil,
	}
}
