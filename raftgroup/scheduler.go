package raftgroup

import "sync"

// schedFlags say why a group was queued.
type schedFlags uint8

const (
	flagReady schedFlags = 1 << iota // check for a Ready
	flagTick                         // advance the raft clock by one tick
)

type schedState struct {
	flags      schedFlags
	queued     bool // in the queue
	processing bool // held by a worker
}

// scheduler queues groups for the worker pool. A group is queued at most once
// and held by at most one worker; work that arrives while a worker holds it is
// remembered in its flags and the group is queued again when released (the
// shape of CockroachDB's raft scheduler). Workers take every queued group up
// to a bound, so one round persists many groups with one fsync.
type scheduler struct {
	mu struct {
		sync.Mutex
		queue   []GroupID
		state   map[GroupID]*schedState
		stopped bool
	}
	cond     *sync.Cond
	maxRound int
	// idle wakes waitIdle callers when a worker releases groups.
	idle        *sync.Cond
	idleWaiters int // guarded by mu
}

type scheduled struct {
	id    GroupID
	flags schedFlags
}

func newScheduler(maxRound int) *scheduler {
	s := &scheduler{maxRound: maxRound}
	s.mu.state = make(map[GroupID]*schedState)
	s.cond = sync.NewCond(&s.mu.Mutex)
	s.idle = sync.NewCond(&s.mu.Mutex)
	return s
}

// enqueue adds flags to a group and queues it if it is neither queued nor held.
func (s *scheduler) enqueue(id GroupID, f schedFlags) {
	s.mu.Lock()
	if s.enqueueLocked(id, f) {
		s.cond.Signal()
	}
	s.mu.Unlock()
}

// enqueueMany queues several groups with one lock acquisition.
func (s *scheduler) enqueueMany(ids []GroupID, f schedFlags) {
	s.mu.Lock()
	n := 0
	for _, id := range ids {
		if s.enqueueLocked(id, f) {
			n++
		}
	}
	s.mu.Unlock()
	switch {
	case n == 1:
		s.cond.Signal()
	case n > 1:
		s.cond.Broadcast()
	}
}

func (s *scheduler) enqueueLocked(id GroupID, f schedFlags) bool {
	if s.mu.stopped {
		return false
	}
	st := s.mu.state[id]
	if st == nil {
		st = &schedState{}
		s.mu.state[id] = st
	}
	st.flags |= f
	if st.queued || st.processing {
		return false
	}
	st.queued = true
	s.mu.queue = append(s.mu.queue, id)
	return true
}

// next blocks until groups are queued (or the scheduler stops, returning
// nil), then takes up to maxRound of them and marks them held.
func (s *scheduler) next(dst []scheduled) []scheduled {
	s.mu.Lock()
	defer s.mu.Unlock()
	for len(s.mu.queue) == 0 && !s.mu.stopped {
		s.cond.Wait()
	}
	if s.mu.stopped {
		return nil
	}
	n := min(len(s.mu.queue), s.maxRound)
	for _, id := range s.mu.queue[:n] {
		st := s.mu.state[id]
		dst = append(dst, scheduled{id: id, flags: st.flags})
		st.flags, st.queued, st.processing = 0, false, true
	}
	rest := copy(s.mu.queue, s.mu.queue[n:])
	s.mu.queue = s.mu.queue[:rest]
	if rest > 0 {
		s.cond.Signal() // more work for another worker
	}
	return dst
}

// done releases held groups; those that received work meanwhile are queued
// again.
func (s *scheduler) done(held []scheduled) {
	s.mu.Lock()
	n := 0
	for _, h := range held {
		st := s.mu.state[h.id]
		if st == nil {
			continue
		}
		st.processing = false
		if st.flags != 0 && !s.mu.stopped {
			st.queued = true
			s.mu.queue = append(s.mu.queue, h.id)
			n++
		}
	}
	if s.idleWaiters > 0 {
		s.idle.Broadcast()
	}
	s.mu.Unlock()
	if n > 0 {
		s.cond.Broadcast()
	}
}

// waitIdle returns once no worker holds group id (a worker that took it
// before the caller removed it from the host has finished its round). It
// must not be called from a worker.
func (s *scheduler) waitIdle(id GroupID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		st := s.mu.state[id]
		if st == nil || !st.processing || s.mu.stopped {
			return
		}
		s.idleWaiters++
		s.idle.Wait()
		s.idleWaiters--
	}
}

// remove forgets a group (after it was destroyed).
func (s *scheduler) remove(id GroupID) {
	s.mu.Lock()
	if st := s.mu.state[id]; st != nil && !st.queued && !st.processing {
		delete(s.mu.state, id)
	}
	s.mu.Unlock()
}

// stop wakes every worker; next returns nil from then on.
func (s *scheduler) stop() {
	s.mu.Lock()
	s.mu.stopped = true
	s.mu.Unlock()
	s.cond.Broadcast()
	s.idle.Broadcast()
}
