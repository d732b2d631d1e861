package scheduler

import "time"

// snapshotBudget is one node's snapshot bandwidth, a token bucket that may
// go into debt: an operation is admitted while the level is not negative
// and then takes its whole size, so a snapshot larger than the burst still
// runs, and the ones after it wait until the debt is paid back at the rate.
type snapshotBudget struct {
	level float64 // bytes
	last  time.Time
}

// refill brings the bucket to now at rate bytes/s, capped at burst.
func (b *snapshotBudget) refill(now time.Time, rate, burst float64) {
	if b.last.IsZero() {
		b.level, b.last = burst, now
		return
	}
	if dt := now.Sub(b.last).Seconds(); dt > 0 {
		b.level = min(burst, b.level+dt*rate)
		b.last = now
	}
}

// wait returns how long until the bucket admits an operation (0: now).
func (b *snapshotBudget) wait(rate float64) time.Duration {
	if b.level >= 0 {
		return 0
	}
	return time.Duration(-b.level / rate * float64(time.Second))
}
