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
func (b *readBatcher) wait(ctx context.Context, stop <-chan struct{}, spawn func(func()) bool, start readStart) (uint64, error) {
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

// readStart begins one raft ReadIndex round: the channel receives its
// index, cancel forgets it, and lost reports an error once the replica is no
// longer the leader that started it (raft then drops the round silently).
type readStart func() (ch chan uint64, cancel func(), lost func() error, err error)

// readLeaderCheck is how often a waiting round checks that its leader still
// leads.
const readLeaderCheck = 20 * time.Millisecond

// run runs rounds until no request waits. It is the only goroutine running
// rounds for this group while b.mu.running is set.
func (b *readBatcher) run(stop <-chan struct{}, start readStart) {
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
		ch, cancel, lost, err := start()
		if err == nil {
			t := time.NewTimer(readRoundTimeout)
			tick := time.NewTicker(readLeaderCheck)
		wait:
			for {
				select {
				case r.index = <-ch:
					break wait
				case <-tick.C:
					if err = lost(); err != nil {
						break wait
					}
				case <-t.C:
					err = fmt.Errorf("raftgroup: read index round timed out after %v", readRoundTimeout)
					break wait
				case <-stop:
					err = ErrStopped
					break wait
				}
			}
			t.Stop()
			tick.Stop()
			cancel()
		}
		r.err = err
		close(r.done)
	}
}
