package scheduler

import (
	"math/rand/v2"
	"testing"
)

// randomSnapshot builds a cluster of n nodes with random liveness, ranges
// with random replicas (some learners), leaders, sizes and loads, and a few
// operations in flight.
func randomSnapshot(rng *rand.Rand, nodes, ranges int) *Snapshot {
	s := &Snapshot{}
	for i := 1; i <= nodes; i++ {
		l := Live
		if rng.IntN(6) == 0 {
			l = Liveness(rng.IntN(5))
		}
		s.Nodes = append(s.Nodes, Node{ID: NodeID(i), Liveness: l})
	}
	for i := 0; i < ranges; i++ {
		r := Range{ID: RangeID(i + 1), Generation: 1, SizeBytes: rng.Int64N(64 << 20), QPS: float64(rng.IntN(10)) * float64(rng.IntN(100)), Meta: i == 0}
		perm := rng.Perm(nodes)
		k := 1 + rng.IntN(min(5, nodes))
		for j := 0; j < k; j++ {
			typ := Voter
			if j > 0 && rng.IntN(8) == 0 {
				typ = Learner
			}
			r.Replicas = append(r.Replicas, Replica{Node: NodeID(perm[j] + 1), ID: ReplicaID(j + 1), Type: typ})
		}
		r.Leader = r.Replicas[0].Node
		s.Ranges = append(s.Ranges, r)
	}
	for i := 0; i < ranges/10; i++ {
		r := &s.Ranges[rng.IntN(ranges)]
		s.InFlight = append(s.InFlight, Operation{Kind: OpTransferLeader, Range: r.ID, From: r.Leader, To: r.Replicas[len(r.Replicas)-1].Node})
	}
	return s
}

// TestScheduleInvariants checks, on random clusters, what every plan must
// keep: one operation per range and none for a range in flight; new
// replicas only on live nodes without one; leadership only to live voters;
// every operation applies to its range; the move limit per node (counting
// the moves in flight); determinism.
func TestScheduleInvariants(t *testing.T) {
	for seed := uint64(0); seed < 300; seed++ {
		rng := rand.New(rand.NewPCG(seed, 1))
		snap := randomSnapshot(rng, 3+rng.IntN(12), 1+rng.IntN(200))
		cfg := DefaultConfig()
		cfg.Limits.MaxMovesPerNode = 1 + rng.IntN(4)
		cfg.MaxPlannedPerNode = cfg.Limits.MaxMovesPerNode + rng.IntN(4)
		cfg.MaxOpsPerRound = 1 + rng.IntN(100)
		ops := Schedule(cfg, snap)
		if len(ops) > cfg.MaxOpsPerRound {
			t.Fatalf("seed %d: %d operations, limit %d", seed, len(ops), cfg.MaxOpsPerRound)
		}
		live := map[NodeID]Liveness{}
		for _, n := range snap.Nodes {
			live[n.ID] = n.Liveness
		}
		busy := map[RangeID]bool{}
		for _, op := range snap.InFlight {
			busy[op.Range] = true
		}
		moves := map[NodeID]int{}
		for _, op := range ops {
			if busy[op.Range] {
				t.Fatalf("seed %d: second operation for r%d: %s", seed, uint64(op.Range), op)
			}
			busy[op.Range] = true
			var r Range
			for _, x := range snap.Ranges {
				if x.ID == op.Range {
					r = x
				}
			}
			if op.Kind == OpAddVoter || op.Kind == OpMove {
				if live[op.To] != Live {
					t.Fatalf("seed %d: %s adds a replica on a %s node", seed, op, live[op.To])
				}
				for _, n := range chargedNodes(op) {
					if !live[n].gone() {
						moves[n]++
					}
				}
			}
			if op.Kind == OpTransferLeader || op.LeaderTo != 0 {
				to := op.To
				if op.LeaderTo != 0 {
					to = op.LeaderTo
				}
				if live[to] != Live {
					t.Fatalf("seed %d: %s gives leadership to a %s node", seed, op, live[to])
				}
			}
			r.Replicas = append([]Replica(nil), r.Replicas...)
			if err := r.Apply(op); err != nil {
				t.Fatalf("seed %d: %v", seed, err)
			}
		}
		for n, c := range moves {
			if c > cfg.MaxPlannedPerNode {
				t.Fatalf("seed %d: %d moves on %s, limit %d", seed, c, n, cfg.MaxPlannedPerNode)
			}
		}
		again := Schedule(cfg, snap)
		if len(again) != len(ops) {
			t.Fatalf("seed %d: not deterministic", seed)
		}
		for i := range ops {
			if ops[i] != again[i] {
				t.Fatalf("seed %d: not deterministic: %s then %s", seed, ops[i], again[i])
			}
		}
	}
}
