// Package backoff is the one retry delay of the code base: exponential,
// capped and jittered, so that thousands of ranges (or watches, or
// forwarded requests) that failed together do not retry in lockstep.
//
// The delay of attempt n is drawn uniformly from [d/2, d] where d is
// Min·2ⁿ capped at Max ("equal jitter"): never below half the nominal
// delay, so a retry storm still backs off, and spread over a factor of two,
// so synchronised failures spread out within one or two attempts.
//
// The package is a leaf under internal/: every layer may use it.
package backoff

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"
)

// Config configures a Backoff.
type Config struct {
	// Min is the nominal delay before the first retry.
	Min time.Duration
	// Max caps the nominal delay.
	Max time.Duration
}

// Validate checks the configuration.
func (c Config) Validate() error {
	switch {
	case c.Min <= 0:
		return fmt.Errorf("backoff: Config.Min must be positive, got %s", c.Min)
	case c.Max < c.Min:
		return fmt.Errorf("backoff: Config.Max (%s) is below Config.Min (%s)", c.Max, c.Min)
	}
	return nil
}

// Backoff yields the delays of one retry loop. It is not safe for
// concurrent use: each loop has its own.
type Backoff struct {
	cfg Config
	cur time.Duration
}

// New returns a Backoff at its first delay. An invalid cfg is corrected to
// the nearest valid one (Min at least 1 ms, Max at least Min): a retry loop
// must never spin or fail because of its pacing.
func New(cfg Config) *Backoff {
	cfg.Min = max(cfg.Min, time.Millisecond)
	cfg.Max = max(cfg.Max, cfg.Min)
	return &Backoff{cfg: cfg, cur: cfg.Min}
}

// Next returns the delay before the next attempt and doubles the nominal
// delay (up to Max).
func (b *Backoff) Next() time.Duration {
	d := b.cur
	b.cur = min(2*b.cur, b.cfg.Max)
	half := d / 2
	return half + rand.N(d-half+1)
}

// Reset returns to the first delay, after a success.
func (b *Backoff) Reset() { b.cur = b.cfg.Min }

// Wait sleeps for Next(); it returns ctx's error if ctx ends first.
func (b *Backoff) Wait(ctx context.Context) error {
	t := time.NewTimer(b.Next())
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
