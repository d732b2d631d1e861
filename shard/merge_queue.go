package shard

import "time"

// noteFrozenLocked records when the replica saw its range frozen (the
// first time since it was last thawed, or since it opened).
func (r *Replica) noteFrozenLocked() {
	switch {
	case !r.mu.frozen:
		r.mu.frozenSince = time.Time{}
	case r.mu.frozenSince.IsZero():
		r.mu.frozenSince = time.Now()
	}
}

// FrozenFor returns how long this replica has seen its range frozen for a
// merge (0: not frozen). A range frozen for longer than a merge takes lost
// its merge's initiator (a crash after the freeze): the leader of the left
// neighbour runs the merge again (router.FinishMerge), which either
// subsumes it or thaws it.
func (r *Replica) FrozenFor() time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.mu.frozen || r.mu.frozenSince.IsZero() || r.mu.mergedInto != nil {
		return 0
	}
	return max(time.Since(r.mu.frozenSince), time.Nanosecond)
}
