package sim

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/tesseradb/tessera/placement/scheduler"
)

// Config describes a simulation.
type Config struct {
	// Nodes and Ranges make the initial cluster (100 nodes, 100,000
	// ranges: the figure). The meta range is range 1, on the first
	// MetaReplicas nodes.
	Nodes, Ranges int
	// AddNodes join after the initial cluster (10).
	AddNodes int
	// KillNodes die for good after the added nodes converged (1). They die
	// at once: with more than one, ranges with a majority of voters on them
	// lose their quorum, the scheduler leaves those to the operator, and
	// the phase does not converge.
	KillNodes int
	// Seed makes the run reproducible.
	Seed uint64
	// MeanRangeBytes is the mean range size; sizes are drawn from an
	// exponential distribution capped at 8 times the mean (64 MiB: a range
	// splits at 128 MiB, so ranges are 0-128 MiB and most below 64).
	MeanRangeBytes int64
	// HotFraction of the ranges get 100-5,000 QPS, the others 0-10 (0.005).
	HotFraction float64
	// RoundInterval is the time between scheduler rounds (10 s, PD's
	// order of magnitude).
	RoundInterval time.Duration
	// ConfChangeCost is the time of one conf change or leader transfer
	// (100 ms: a few raft round trips and an apply on loaded nodes).
	ConfChangeCost time.Duration
	// DeadTimeout is how long a killed node is suspect before it is dead
	// (--dead-node-timeout, 5 min).
	DeadTimeout time.Duration
	// MaxPhaseTime bounds one phase in simulated time (48 h).
	MaxPhaseTime time.Duration
	// SampleEvery is the period of the spread samples (10 min).
	SampleEvery time.Duration
	// Scheduler configures the scheduler (its Limits the simulated
	// executor too).
	Scheduler scheduler.Config
	// MaxRunning and MaxQueued are the executor's (scheduler.
	// DefaultExecutorConfig: 64 and 1024).
	MaxRunning, MaxQueued int
}

// DefaultConfig returns the simulation: 100 nodes, 100,000 ranges,
// 10 nodes added, one killed.
func DefaultConfig() Config {
	ec := scheduler.DefaultExecutorConfig()
	return Config{
		Nodes: 100, Ranges: 100_000, AddNodes: 10, KillNodes: 1, Seed: 1,
		MeanRangeBytes: 64 << 20, HotFraction: 0.005,
		RoundInterval: 10 * time.Second, ConfChangeCost: 100 * time.Millisecond,
		DeadTimeout: 5 * time.Minute, MaxPhaseTime: 48 * time.Hour, SampleEvery: 10 * time.Minute,
		Scheduler: scheduler.DefaultConfig(), MaxRunning: ec.MaxRunning, MaxQueued: ec.MaxQueued,
	}
}

// Validate reports a configuration that cannot run.
func (c Config) Validate() error {
	var errs []error
	if c.Nodes < c.Scheduler.Replicas || c.Ranges < 1 {
		errs = append(errs, fmt.Errorf("sim: %d nodes, %d ranges: need at least %d nodes and one range", c.Nodes, c.Ranges, c.Scheduler.Replicas))
	}
	if c.AddNodes < 0 || c.KillNodes < 0 || c.Nodes+c.AddNodes-c.KillNodes < c.Scheduler.Replicas {
		errs = append(errs, fmt.Errorf("sim: add %d, kill %d of %d nodes: fewer than %d would be left", c.AddNodes, c.KillNodes, c.Nodes, c.Scheduler.Replicas))
	}
	if c.MeanRangeBytes < 1 || c.HotFraction < 0 || c.HotFraction > 1 {
		errs = append(errs, fmt.Errorf("sim: mean range bytes %d, hot fraction %v: out of range", c.MeanRangeBytes, c.HotFraction))
	}
	if c.RoundInterval <= 0 || c.ConfChangeCost < 0 || c.DeadTimeout < 0 || c.MaxPhaseTime <= 0 || c.SampleEvery <= 0 {
		errs = append(errs, errors.New("sim: intervals must be positive"))
	}
	if c.MaxRunning < 1 || c.MaxQueued < 1 {
		errs = append(errs, fmt.Errorf("sim: max running %d, max queued %d: must be positive", c.MaxRunning, c.MaxQueued))
	}
	errs = append(errs, c.Scheduler.Validate())
	return errors.Join(errs...)
}

// Sample is the spread at one moment of a phase.
type Sample struct {
	At time.Duration // since the phase started
	// Ops is the number of operations issued so far in the phase.
	Ops int
	// CountDev, BytesDev, LeadersDev are the largest distance of a live
	// node from the mean, as a fraction of the mean.
	CountDev, BytesDev, LeadersDev float64
	// MinCount and MaxCount are the fewest and most replicas on a live node.
	MinCount, MaxCount int
	// Misplaced are ranges short of voters on live nodes, or with a replica
	// on a dead node, or with a learner.
	Misplaced int
	// MaxHotLeaders is the most hot ranges (100 QPS or more) a live node
	// leads; HotShare is their fair share (hot ranges / live nodes,
	// rounded up), what the scheduler spreads them to.
	MaxHotLeaders, HotShare int
}

// Phase is the outcome of one phase.
type Phase struct {
	Name string
	// Converged is false when MaxPhaseTime passed first.
	Converged bool
	// Time is the simulated time to converge.
	Time time.Duration
	// Ops counts the operations issued, by kind; Bytes the snapshot bytes
	// they sent.
	Ops   map[scheduler.OpKind]int
	Bytes int64
	// Samples every SampleEvery, and the final state.
	Samples []Sample
}

// TotalOps is the number of operations issued in the phase.
func (p *Phase) TotalOps() int {
	n := 0
	for _, c := range p.Ops {
		n += c
	}
	return n
}

// Result is a whole simulation.
type Result struct {
	Config Config
	Phases []Phase
	// Invariant is the first broken invariant found, "" if none (replicas
	// of a range on distinct nodes, every operation applied cleanly).
	Invariant string
}

// running is an operation under way in the model.
type running struct {
	op  scheduler.Operation
	end time.Duration
}

type runHeap []*running

func (h runHeap) Len() int { return len(h) }
func (h runHeap) Less(i, j int) bool {
	if h[i].end != h[j].end {
		return h[i].end < h[j].end
	}
	return h[i].op.Range < h[j].op.Range
}
func (h runHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *runHeap) Push(x any)   { *h = append(*h, x.(*running)) }
func (h *runHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// cluster is the model.
type cluster struct {
	cfg   Config
	rng   *rand.Rand
	now   time.Duration
	snap  scheduler.Snapshot // Nodes and Ranges are the model; InFlight built per round
	node  map[scheduler.NodeID]int
	queue []scheduler.Operation
	run   runHeap
	busy  map[scheduler.RangeID]bool
	moves map[scheduler.NodeID]int
	// sendFree and recvFree: when a node's snapshot stream is free.
	sendFree, recvFree map[scheduler.NodeID]time.Duration
	phase              *Phase
	broken             string
	deadAt             []deadline
	ctx                context.Context
}

// deadline is when a killed node becomes dead.
type deadline struct {
	node scheduler.NodeID
	at   time.Duration
}

// Run simulates the phases of cfg. A cancelled ctx stops it between
// rounds with ctx's error and the phases done so far.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := newCluster(cfg)
	c.ctx = ctx
	res := &Result{Config: cfg}
	res.Phases = append(res.Phases, c.phaseRun(fmt.Sprintf("initial: %d nodes, %d ranges", cfg.Nodes, cfg.Ranges), nil))
	if cfg.AddNodes > 0 {
		res.Phases = append(res.Phases, c.phaseRun(fmt.Sprintf("add %d nodes (%d -> %d)", cfg.AddNodes, cfg.Nodes, cfg.Nodes+cfg.AddNodes), func() {
			for i := 0; i < cfg.AddNodes; i++ {
				c.addNode()
			}
		}))
	}
	if cfg.KillNodes > 0 {
		var names []string
		for i := 0; i < cfg.KillNodes; i++ {
			names = append(names, scheduler.NodeID(2+i*7).String())
		}
		res.Phases = append(res.Phases, c.phaseRun(fmt.Sprintf("kill %v for good (dead after %v)", names, cfg.DeadTimeout), func() {
			for i := 0; i < cfg.KillNodes; i++ {
				c.kill(scheduler.NodeID(2 + i*7))
			}
		}))
	}
	res.Invariant = c.broken
	return res, ctx.Err()
}

func newCluster(cfg Config) *cluster {
	c := &cluster{
		cfg: cfg, rng: rand.New(rand.NewPCG(cfg.Seed, 0x7e55e7a)),
		node: map[scheduler.NodeID]int{}, busy: map[scheduler.RangeID]bool{}, moves: map[scheduler.NodeID]int{},
		sendFree: map[scheduler.NodeID]time.Duration{}, recvFree: map[scheduler.NodeID]time.Duration{},
	}
	for i := 0; i < cfg.Nodes; i++ {
		c.addNode()
	}
	c.snap.Ranges = make([]scheduler.Range, cfg.Ranges)
	hot := int(math.Round(cfg.HotFraction * float64(cfg.Ranges)))
	for i := range c.snap.Ranges {
		r := &c.snap.Ranges[i]
		r.ID, r.Generation = scheduler.RangeID(i+1), 1
		size := c.rng.ExpFloat64() * float64(cfg.MeanRangeBytes)
		r.SizeBytes = int64(min(size, 8*float64(cfg.MeanRangeBytes)))
		r.Keys = r.SizeBytes / 1024
		r.QPS = float64(c.rng.IntN(11))
		want := cfg.Scheduler.Replicas
		var nodes []int
		if i == 0 {
			r.Meta = true
			if cfg.Nodes >= cfg.Scheduler.MetaReplicas {
				want = cfg.Scheduler.MetaReplicas
			}
			for j := 0; j < want; j++ {
				nodes = append(nodes, j)
			}
		} else {
			nodes = c.rng.Perm(cfg.Nodes)[:want]
		}
		for j, n := range nodes {
			r.Replicas = append(r.Replicas, scheduler.Replica{Node: c.snap.Nodes[n].ID, ID: scheduler.ReplicaID(j + 1)})
		}
		r.Leader = r.Replicas[c.rng.IntN(len(r.Replicas))].Node
	}
	for _, i := range c.rng.Perm(cfg.Ranges)[:hot] {
		c.snap.Ranges[i].QPS = 100 + float64(c.rng.IntN(4901))
	}
	return c
}

func (c *cluster) addNode() {
	id := scheduler.NodeID(len(c.snap.Nodes) + 1)
	c.node[id] = len(c.snap.Nodes)
	c.snap.Nodes = append(c.snap.Nodes, scheduler.Node{ID: id, Liveness: scheduler.Live})
}

// kill makes node id suspect now and dead after the dead timeout; the
// leaderships it held go to another voter at once (an election).
func (c *cluster) kill(id scheduler.NodeID) {
	c.snap.Nodes[c.node[id]].Liveness = scheduler.Suspect
	for i := range c.snap.Ranges {
		r := &c.snap.Ranges[i]
		if r.Leader != id {
			continue
		}
		r.Leader = 0
		for _, rep := range r.Replicas {
			if rep.Node != id && rep.Type == scheduler.Voter {
				r.Leader = rep.Node
				break
			}
		}
	}
	c.deadAt = append(c.deadAt, deadline{id, c.now + c.cfg.DeadTimeout})
}
