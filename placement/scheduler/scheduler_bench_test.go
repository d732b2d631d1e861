package scheduler

import (
	"math/rand/v2"
	"testing"
)

// BenchmarkSchedule100k plans one round for 110 nodes (10 of them new and
// empty) and 100,000 ranges: the simulator's hottest call.
func BenchmarkSchedule100k(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	snap := &Snapshot{}
	for i := 1; i <= 110; i++ {
		snap.Nodes = append(snap.Nodes, Node{ID: NodeID(i), Liveness: Live})
	}
	for i := 0; i < 100_000; i++ {
		r := Range{ID: RangeID(i + 1), Generation: 1, SizeBytes: int64(rng.ExpFloat64() * (64 << 20)), QPS: float64(rng.IntN(11))}
		for j, n := range rng.Perm(100)[:3] {
			r.Replicas = append(r.Replicas, Replica{Node: NodeID(n + 1), ID: ReplicaID(j + 1)})
		}
		r.Leader = r.Replicas[0].Node
		snap.Ranges = append(snap.Ranges, r)
	}
	cfg := DefaultConfig()
	b.ResetTimer()
	for range b.N {
		if len(Schedule(cfg, snap)) == 0 {
			b.Fatal("nothing planned")
		}
	}
}
