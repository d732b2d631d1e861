// Package coalesce runs queued requests in batches, one batch at a time, with
// the first caller that finds no batch running as the batch leader.
//
// It is the one shape shared by the range's proposal pipeline (a batch of
// writes gets its timestamps and is proposed), the node's TSO client (one
// TSO call for every waiting request) and a group's ReadIndex coalescer (one
// raft round for every waiting read). Each of them wants the same three
// things:
//
//   - no goroutine per range or per request when nothing waits: the caller
//     that finds the batcher idle runs the batch itself, on its own goroutine;
//   - requests that arrive while a batch runs form the next batch (a batch
//     never serves a request that arrived after it started: the TSO's
//     timestamps and the ReadIndex round must be fresher than the requests);
//   - a bounded tail: the leading caller keeps serving other requests'
//     batches only while its own request is not done and for at most
//     Config.Tail batches after its own; the rest goes to a goroutine the
//     Batcher owns, so no caller stays captured while its own reply waits.
//
// The package is a leaf under internal/: it knows nothing of raft, storage or
// etcd, so every layer may use it.
package coalesce

import (
	"errors"
	"fmt"
	"sync"
)

// Config configures a Batcher.
type Config struct {
	// Tail is how many batches after the one holding its own request the
	// leading caller may run while its own request is not done, before it
	// hands what is queued to a goroutine of the Batcher. 1: a caller whose
	// request waits for something slower than one batch (a write waiting for
	// raft to apply it) serves the next batch for free, and none waits for
	// more than one batch of others.
	Tail int
}

// DefaultConfig returns the defaults documented on each field.
func DefaultConfig() Config { return Config{Tail: 1} }

// Validate checks the configuration.
func (c Config) Validate() error {
	if c.Tail < 0 {
		return fmt.Errorf("coalesce: Config.Tail must not be negative, got %d", c.Tail)
	}
	return nil
}

// Batcher queues items of type T and runs them in batches through run, one
// batch at a time. The zero value is not usable: use New.
type Batcher[T any] struct {
	cfg Config
	run func(batch []T)
	wg  sync.WaitGroup // hand-off goroutines

	mu struct {
		sync.Mutex
		pending []T
		running bool // a goroutine is running batches
		closed  bool // Close was called: no more hand-offs
	}
}

// New returns a Batcher that runs each batch with run. run is never called
// concurrently with itself; it must finish every item of its batch.
func New[T any](cfg Config, run func(batch []T)) (*Batcher[T], error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if run == nil {
		return nil, errors.New("coalesce: run is nil")
	}
	return &Batcher[T]{cfg: cfg, run: run}, nil
}

// NewDefault returns a Batcher with DefaultConfig (which is valid, so
// there is no error to return); run must not be nil.
func NewDefault[T any](run func(batch []T)) *Batcher[T] {
	return &Batcher[T]{cfg: DefaultConfig(), run: run}
}

// Add queues item for the next batch. If no batch is running, the calling
// goroutine becomes the leader: it runs the batch holding item, then, while
// done stays open, at most Config.Tail more, and hands what is still queued
// to a goroutine of the Batcher. Add returns once the caller is free; the
// caller then waits for its item's own completion (done, typically).
func (b *Batcher[T]) Add(item T, done <-chan struct{}) {
	b.mu.Lock()
	b.mu.pending = append(b.mu.pending, item)
	if b.mu.running {
		b.mu.Unlock()
		return
	}
	b.mu.running = true
	b.mu.Unlock()
	b.lead(done, b.cfg.Tail)
}

// lead runs batches until none is queued. A caller's goroutine (tail >= 0)
// runs its own batch, then at most tail more while done is open; the
// hand-off goroutine (tail < 0) runs until the queue is empty.
func (b *Batcher[T]) lead(done <-chan struct{}, tail int) {
	for n := 0; ; n++ {
		b.mu.Lock()
		if len(b.mu.pending) == 0 {
			b.mu.running = false
			b.mu.Unlock()
			return
		}
		if tail >= 0 && n > 0 && (n > tail || isClosed(done)) && !b.mu.closed {
			// Stay "running": the queue passes to a goroutine of ours.
			b.wg.Add(1)
			b.mu.Unlock()
			go func() {
				defer b.wg.Done()
				b.lead(nil, -1)
			}()
			return
		}
		batch := b.mu.pending
		b.mu.pending = nil
		b.mu.Unlock()
		b.run(batch)
	}
}

func isClosed(ch <-chan struct{}) bool {
	if ch == nil {
		return false
	}
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// Drain removes the queued items (not the batch running) and returns them,
// for the owner to fail them, e.g. when a range leader loses leadership.
func (b *Batcher[T]) Drain() []T {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := b.mu.pending
	b.mu.pending = nil
	return out
}

// Queued returns the number of items waiting for the next batch.
func (b *Batcher[T]) Queued() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.mu.pending)
}

// Close stops handing batches to goroutines of the Batcher (a leader then
// runs what is queued itself) and waits for those already started. The
// owner fails its queued items first (Drain) so that they end quickly.
func (b *Batcher[T]) Close() {
	b.mu.Lock()
	b.mu.closed = true
	b.mu.Unlock()
	b.wg.Wait()
}
