package bench

import (
	"context"
	"time"
)

// Clock is the harness's view of time, so that scheduling can be tested
// without waiting.
type Clock interface {
	// Now returns the current time; it must carry a monotonic reading.
	Now() time.Time
	// SleepUntil returns once Now() >= t, or with ctx's error.
	SleepUntil(ctx context.Context, t time.Time) error
}

// RealClock is the wall clock with its monotonic reading.
type RealClock struct{}

var _ Clock = RealClock{}

// Now implements Clock.
func (RealClock) Now() time.Time { return time.Now() }

// SleepUntil implements Clock.
func (RealClock) SleepUntil(ctx context.Context, t time.Time) error {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err()
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
