package sim

import (
	"context"
	"errors"
	"testing"

	"github.com/tesseradb/tessera/placement/scheduler"
)

// TestSmallClusterConverges runs the simulation at a tenth of a hundredth of
// the size (10 nodes, 1,000 ranges, 2 added, 1 killed): every phase
// converges (hot ranges' leaders spread too), with the operations the phase
// needs and no broken invariant.
func TestSmallClusterConverges(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Nodes, cfg.Ranges, cfg.AddNodes, cfg.KillNodes = 10, 1000, 2, 1
	res, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.Invariant != "" {
		t.Fatalf("invariant broken: %s", res.Invariant)
	}
	if len(res.Phases) != 3 {
		t.Fatalf("%d phases, want 3", len(res.Phases))
	}
	for _, p := range res.Phases {
		last := p.Samples[len(p.Samples)-1]
		if !p.Converged || last.Misplaced != 0 || last.CountDev > cfg.Scheduler.Tolerance+1e-9 ||
			last.BytesDev > cfg.Scheduler.Tolerance+1e-9 || last.LeadersDev > cfg.Scheduler.Tolerance+1e-9 {
			t.Fatalf("phase %q did not converge in %v: %+v", p.Name, p.Time, last)
		}
		if last.MaxHotLeaders > last.HotShare {
			t.Fatalf("phase %q ends with a node leading %d hot ranges, share %d", p.Name, last.MaxHotLeaders, last.HotShare)
		}
	}
	add, kill := res.Phases[1], res.Phases[2]
	// Two empty nodes of twelve must receive about 2/12 of 3,000 replicas.
	if n := add.Ops[scheduler.OpMove]; n < 2*225 {
		t.Fatalf("adding 2 nodes took %d moves, want at least 450", n)
	}
	if first := add.Samples[0]; first.MinCount != 0 {
		t.Fatalf("the added nodes start with %d replicas, want 0", first.MinCount)
	}
	// Killing a node: its ~250 replicas are replaced, and not before it is
	// declared dead.
	if n := kill.Ops[scheduler.OpMove]; n < 200 || n > 400 {
		t.Fatalf("killing a node took %d moves, want about 250", n)
	}
	if kill.Time <= cfg.DeadTimeout {
		t.Fatalf("kill phase converged in %v, before the dead timeout %v", kill.Time, cfg.DeadTimeout)
	}
}

// TestSmallClustersConverge runs small clusters of several shapes and
// seeds: every phase converges (found: a phase ending one rounding error
// outside the band it had reached, with 6 nodes and 200 ranges).
func TestSmallClustersConverge(t *testing.T) {
	for _, shape := range []struct{ nodes, ranges, add, kill int }{
		{3, 50, 1, 0}, {4, 100, 1, 1}, {6, 200, 1, 1}, {7, 300, 3, 1}, {12, 500, 2, 1},
	} {
		for seed := uint64(1); seed <= 4; seed++ {
			cfg := DefaultConfig()
			cfg.Nodes, cfg.Ranges, cfg.AddNodes, cfg.KillNodes, cfg.Seed = shape.nodes, shape.ranges, shape.add, shape.kill, seed
			res, err := Run(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			if res.Invariant != "" {
				t.Fatalf("%+v seed %d: invariant broken: %s", shape, seed, res.Invariant)
			}
			for _, p := range res.Phases {
				if !p.Converged {
					t.Errorf("%+v seed %d: phase %q did not converge: %+v", shape, seed, p.Name, p.Samples[len(p.Samples)-1])
				}
			}
		}
	}
}

// TestDeterministic: the same seed gives the same run.
func TestDeterministic(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Nodes, cfg.Ranges, cfg.AddNodes, cfg.KillNodes = 6, 300, 1, 1
	a, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := Run(context.Background(), cfg)
	for i := range a.Phases {
		if a.Phases[i].Time != b.Phases[i].Time || a.Phases[i].TotalOps() != b.Phases[i].TotalOps() {
			t.Fatalf("phase %d: %v/%d then %v/%d", i, a.Phases[i].Time, a.Phases[i].TotalOps(), b.Phases[i].Time, b.Phases[i].TotalOps())
		}
	}
}

func TestConfigValidate(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Nodes, cfg.KillNodes, cfg.RoundInterval = 3, 2, 0
	if _, err := Run(context.Background(), cfg); err == nil {
		t.Fatal("Run accepted 3 nodes with 2 killed and no round interval")
	}
}

func TestCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	res, err := Run(ctx, DefaultConfig())
	if !errors.Is(err, context.Canceled) || len(res.Phases) == 0 || res.Phases[0].Converged {
		t.Fatalf("cancelled run: %v, %+v", err, res)
	}
}

// BenchmarkSimulate runs the simulation (100 nodes, 100,000 ranges,
// +10, -1); make simulate prints its figures.
func BenchmarkSimulate(b *testing.B) {
	for range b.N {
		res, err := Run(context.Background(), DefaultConfig())
		if err != nil || res.Invariant != "" {
			b.Fatal(err, res.Invariant)
		}
	}
}
