package placement

import (
	"context"
)

// ConfirmLeader confirms, with a ReadIndex round of the meta group started
// now, that this replica still leads and serves leases; otherwise it
// returns a raftgroup.NotLeaderError.
//
// A lease answer that says a lease does not exist (a keep-alive's TTL 0, a
// lookup that finds nothing, TimeToLive's -1, Revoke's "lease not found")
// must come from the current leader: a leader cut off from the others
// believes it leads until CheckQuorum makes it step down, and meanwhile
// the majority's new leader may grant leases this one never hears of. The
// robustness harness caught a keep-alive answering TTL 0 for a lease
// granted a moment before by the new leader (telling the client its lease
// was gone). An answer computed before the round, by a replica that had
// applied an entry of its term, is then the state of the only leader at
// that moment: every grant acknowledged before was applied by it.
// Positive answers need no round: a renewal or lookup on a deposed leader
// only costs a lost renewal, and a stale incarnation is refused by the
// ranges (shard/replica_lease.go).
func (m *Meta) ConfirmLeader(ctx context.Context) error {
	if _, err := m.raft.ReadIndex(ctx, MetaRangeID); err != nil {
		m.mu.Lock()
		defer m.mu.Unlock()
		return m.notLeaderLocked()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.leaseLeaderLocked() {
		return m.notLeaderLocked()
	}
	return nil
}
