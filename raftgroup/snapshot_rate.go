package raftgroup

import (
	"context"
	"io"
	"sync"
	"time"
)

// rateLimiter paces the bytes of every snapshot this host sends, together
// (Config.SnapshotRate): a move's snapshot must not take the disk and the
// network from foreground writes. It is a reservation clock: each read
// reserves its bytes at the rate after the previous reservation and waits
// until its slot.
type rateLimiter struct {
	rate float64 // bytes per second
	mu   struct {
		sync.Mutex
		next time.Time // when the bytes reserved so far are paid for
	}
}

func newRateLimiter(bytesPerSec int64) *rateLimiter {
	return &rateLimiter{rate: float64(bytesPerSec)}
}

// reserve reserves n bytes at now and returns how long to wait before
// sending them.
func (l *rateLimiter) reserve(now time.Time, n int) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	start := l.mu.next
	if start.Before(now) {
		start = now
	}
	l.mu.next = start.Add(time.Duration(float64(n) / l.rate * float64(time.Second)))
	return start.Sub(now)
}

// wait waits for n bytes' slot or ctx.
func (l *rateLimiter) wait(ctx context.Context, n int) error {
	d := l.reserve(time.Now(), n)
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// snapshotChunk bounds one paced read (64 KiB: fine-grained pacing, few
// wake-ups).
const snapshotChunk = 64 << 10

// limitedReader paces reads of r through l.
type limitedReader struct {
	ctx context.Context
	l   *rateLimiter
	r   io.Reader
}

func (lr *limitedReader) Read(p []byte) (int, error) {
	if len(p) > snapshotChunk {
		p = p[:snapshotChunk]
	}
	n, err := lr.r.Read(p)
	if n > 0 {
		if werr := lr.l.wait(lr.ctx, n); werr != nil {
			return n, werr
		}
	}
	return n, err
}
