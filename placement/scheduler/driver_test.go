package scheduler

import (
	"cmp"
	"slices"
	"testing"
	"time"
)

// snapshotOf copies the mover's model into a Snapshot, as the meta leader
// will build one from the range directory and heartbeats.
func (m *modelMover) snapshotOf(nodes []Node, inFlight []Operation) *Snapshot {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := &Snapshot{Nodes: nodes, InFlight: inFlight}
	for _, r := range m.ranges {
		c := *r
		c.Replicas = slices.Clone(r.Replicas)
		s.Ranges = append(s.Ranges, c)
	}
	slices.SortFunc(s.Ranges, func(a, b Range) int { return cmp.Compare(a.ID, b.ID) })
	return s
}

// TestScheduleThroughExecutor runs rounds the way the meta leader will:
// snapshot (with the executor's operations in flight), Schedule, Submit,
// until a round plans nothing and nothing is in flight. A node joins and
// another drains: the cluster ends balanced, the draining node empty, every
// range on three distinct nodes, and every operation succeeded.
func TestScheduleThroughExecutor(t *testing.T) {
	var ranges []Range
	for i := 0; i < 24; i++ {
		r := Range{ID: RangeID(i + 2), Generation: 1, SizeBytes: int64(1+i%4) << 20}
		for k := 0; k < 3; k++ {
			r.Replicas = append(r.Replicas, Replica{Node: NodeID(1 + (i+k)%4), ID: ReplicaID(k + 1)})
		}
		r.Leader = r.Replicas[0].Node
		ranges = append(ranges, r)
	}
	m := newModelMover(ranges...)
	e := newTestExecutor(t, m, func(c *ExecutorConfig) { c.Limits.MaxMovesPerNode = 2 })
	nodes := []Node{{ID: 1, Liveness: Live}, {ID: 2, Liveness: Live}, {ID: 3, Liveness: Draining}, {ID: 4, Liveness: Live}, {ID: 5, Liveness: Live}}
	cfg := DefaultConfig()
	cfg.Limits.MaxMovesPerNode, cfg.MaxPlannedPerNode = 2, 4
	deadline := time.Now().Add(30 * time.Second)
	rounds := 0
	for {
		if time.Now().After(deadline) {
			t.Fatalf("no convergence after %d rounds: %+v", rounds, e.Status())
		}
		snap := m.snapshotOf(nodes, e.InFlight())
		ops := Schedule(cfg, snap)
		if len(ops) == 0 && len(snap.InFlight) == 0 {
			break
		}
		rounds++
		if _, err := e.Submit(ops); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the round's operations", func() bool { return len(e.InFlight()) == 0 })
	}
	st := e.Status()
	if st.Failed != 0 {
		t.Fatalf("%d operations failed: %+v", st.Failed, st.Recent)
	}
	snap := m.snapshotOf(nodes, nil)
	p := newPlanner(cfg, snap)
	for j, n := range p.nodes {
		switch {
		case n.Liveness == Draining && (p.count[j] != 0 || p.leaders[j] != 0):
			t.Errorf("draining %s still has %d replicas, %d leaders", n.ID, p.count[j], p.leaders[j])
		case n.Liveness == Live && (p.count[j] < 17 || p.count[j] > 19):
			t.Errorf("%s has %d replicas, want 18±1 (72 over 4 live nodes)", n.ID, p.count[j])
		}
	}
	for _, r := range snap.Ranges {
		if r.voters() != 3 || len(r.Replicas) != 3 {
			t.Errorf("r%d ends with %+v", uint64(r.ID), r.Replicas)
		}
		if err := checkInvariants(cfg, &Snapshot{Ranges: []Range{r}}); err != nil {
			t.Error(err)
		}
	}
	t.Logf("%d rounds, %d operations", rounds, st.Done)
}
