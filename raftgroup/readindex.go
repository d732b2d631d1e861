package raftgroup

import (
	"context"
	"fmt"
	"time"

	"github.com/tesseradb/tessera/internal/coalesce"
)

// readBatcher coalesces ReadIndex requests of one group, as etcd's
// linearizable read loop does: one raft ReadIndex round is in flight at a
// time, and every request that arrives meanwhile waits for the next round
// (the round in flight may have started before it arrived, so its index
// cannot serve it). Each raft round costs a heartbeat to every follower; this
// keeps that to one per round trip however many reads are waiting. The
// request that finds no round running runs it on its own goroutine, with the
// bounded tail of internal/coalesce.
type readBatcher struct {
	batches *coalesce.Batcher[*readWaiter]
	stop    <-chan struct{}
	start   readStart
}

// readWaiter is one request waiting for a round.
type readWaiter struct {
	done  chan struct{}
	index uint64
	err   error
}

// readRoundTimeout bounds one round: a leader that cannot reach a quorum
// never answers, and the waiters must not wait forever for a round that a
// later request could retry.
const readRoundTimeout = 5 * time.Second

// newReadBatcher returns the batcher of one group; start begins a raft
// round, stop ends waiting when the host stops.
func newReadBatcher(stop <-chan struct{}, start readStart) *readBatcher {
	b := &readBatcher{stop: stop, start: start}
	b.batches = coalesce.NewDefault(b.round)
	return b
}

// wait joins the next round and returns its index.
func (b *readBatcher) wait(ctx context.Context) (uint64, error) {
	w := &readWaiter{done: make(chan struct{})}
	b.batches.Add(w, w.done)
	select {
	case <-w.done:
		return w.index, w.err
	case <-ctx.Done():
		return 0, fmt.Errorf("raftgroup: read index: %w", ctx.Err())
	case <-b.stop:
		return 0, ErrStopped
	}
}

// close waits for the batcher's hand-off goroutine (the host has stopped,
// so a round it runs ends at once).
func (b *readBatcher) close() { b.batches.Close() }

// readStart begins one raft ReadIndex round: the channel receives its
// index, cancel forgets it, and lost reports an error once the replica is no
// longer the leader that started it (raft then drops the round silently).
type readStart func() (ch chan uint64, cancel func(), lost func() error, err error)

// readLeaderCheck is how often a waiting round checks that its leader still
// leads.
const readLeaderCheck = 20 * time.Millisecond

// round runs one raft round for a batch of waiters.
func (b *readBatcher) round(batch []*readWaiter) {
	var index uint64
	ch, cancel, lost, err := b.start()
	if err == nil {
		t := time.NewTimer(readRoundTimeout)
		tick := time.NewTicker(readLeaderCheck)
	wait:
		for {
			select {
			case index = <-ch:
				break wait
			case <-tick.C:
				if err = lost(); err != nil {
					break wait
				}
			case <-t.C:
				err = fmt.Errorf("raftgroup: read index round timed out after %v", readRoundTimeout)
				break wait
			case <-b.stop:
				err = ErrStopped
				break wait
			}
		}
		t.Stop()
		tick.Stop()
		cancel()
	}
	for _, w := range batch {
		w.index, w.err = index, err
		close(w.done)
	}
}
