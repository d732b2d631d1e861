package raftgroup

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// readBatcher coalesces ReadIndex requests of one group, as etcd's
// linearizable read loop does: one raft ReadIndex round is in flight at a
// time, and every request that arrives meanwhile waits for the next round
// (the round in flight may have started before it arrived, so its index
// cannot serve it). Each raft round costs a heartbeat to every follower; this
// keeps that to one per round trip however many reads are waiting.
type readBatcher struct {
	mu struct {
		sync.Mutex
		running bool
		next    *readRound // the round that new requests join
	}
}

// readRound is one raft ReadIndex round and its waiters.
type readRound struct {
	done  chan struct{}
	index uint64
	err   error
}

// readRoundTimeout bounds one round: a leader that cannot reach a quorum
// never answers, and the waiters must not wait forever for a round that a
// later request could retry.
const readRoundTimeout = 5 * time.Second

// wait joins the next round and returns its index. start begins a raft round.
func (b *readBatcher) wait(ctx context.Context, stop <-chan struct{}, spawn func(func()) bool, start func() (chan uint64, func(), error)) (uint64, error) {
	b.mu.Lock()
	if b.mu.next == nil {
		b.mu.next = &readRound{done: make(chan struct{})}
	}
	r := b.mu.next
	lead := !b.mu.running
	if lead {
		b.mu.running = true
	}
	b.mu.Unlock()
	if lead && !spawn(func() { b.run(stop, start) }) {
		return 0, ErrStopped
	}
	select {
	case <-r.done:
		return r.index, r.err
	case <-ctx.Done():
		return 0, fmt.Errorf("raftgroup: read index: %w", ctx.Err())
	case <-stop:
		return 0, ErrStopped
	}
}

// run runs rounds until no request waits. It is the only goroutine running
// rounds for this group while b.mu.running is set.
func (b *readBatcher) run(stop <-chan struct{}, start func() (chan uint64, func(), error)) {
	for {
		b.mu.Lock()
		r := b.mu.next
		b.mu.next = nil
		if r == nil {
			b.mu.running = false
			b.mu.Unlock()
			return
		}
		b.mu.Unlock()
		ch, cancel, err := start()
		if err == nil {
			t := time.NewTimer(readRoundTimeout)
			select {
			case r.index = <-ch:
			case <-t.C:
				err = fmt.Errorf("raftgroup: read index round timed out after %v", readRoundTimeout)
			case <-stop:
				err = ErrStopped
			}
			t.Stop()
			cancel()
		}
		r.err = err
		close(r.done)
	}
}
