package scheduler

import (
	"cmp"
	"slices"
)

// Schedule returns the operations that move the cluster towards its goals,
// most urgent first, at most cfg.MaxOpsPerRound of them. It is a pure
// function of its arguments: it reads no clock, draws no random numbers and
// does not modify snap. cfg must be valid (Config.Validate).
//
// Each range gets at most one operation per round and none while one of its
// operations is in flight (snap.InFlight); operations that send a snapshot
// are planned only while both nodes have room under MaxPlannedPerNode,
// counting those in flight. Ranges that lost their quorum (a majority of
// voters on dead or removed nodes) are left alone: no conf change can commit
// there, and recovering them is an operator's decision.
func Schedule(cfg Config, snap *Snapshot) []Operation {
	p := newPlanner(cfg, snap)
	p.repair()
	p.balanceCount()
	p.balanceBytes()
	p.balanceLeaders()
	p.spreadHot()
	return p.ops
}

// rangeFlags mark what the planner knows of a range.
type rangeFlags uint8

const (
	// flagBusy: an operation of the range is in flight or planned.
	flagBusy rangeFlags = 1 << iota
	// flagLost: a majority of the range's voters is gone.
	flagLost
	// flagLearner: the range has a learner.
	flagLearner
)

// planner is the state of one Schedule call: the snapshot indexed by node,
// with the effect of the operations in flight and of those planned so far
// applied to the per-node counts.
type planner struct {
	cfg   Config
	snap  *Snapshot
	nodes []Node // sorted by id
	idx   map[NodeID]int
	order []int // range indexes: meta first, then by id
	live  int   // live nodes
	// flags of each range (by index in snap.Ranges), and the index of
	// each range id.
	flags    []rangeFlags
	rangeIdx map[RangeID]int
	ops      []Operation
	byNode   [][]int // range indexes with a replica on the node (snapshot)
	byLead   [][]int // range indexes led by the node (snapshot)
	// Projected per-node figures (in-flight and planned operations done).
	count   []int
	bytes   []int64
	leaders []int
	moves   []int // snapshot-sending operations touching the node
	// balance is the set of nodes balancing counts over (live ones).
	balance   []int
	meanSize  float64
	hot       map[RangeID]bool
	hotLeader []int
}

func newPlanner(cfg Config, snap *Snapshot) *planner {
	p := &planner{cfg: cfg, snap: snap, idx: make(map[NodeID]int), rangeIdx: make(map[RangeID]int, len(snap.Ranges))}
	p.nodes = slices.Clone(snap.Nodes)
	slices.SortFunc(p.nodes, func(a, b Node) int { return cmp.Compare(a.ID, b.ID) })
	n := len(p.nodes)
	for i, nd := range p.nodes {
		p.idx[nd.ID] = i
		if nd.Liveness == Live {
			p.live++
			p.balance = append(p.balance, i)
		}
	}
	p.count, p.bytes, p.leaders, p.moves = make([]int, n), make([]int64, n), make([]int, n), make([]int, n)
	p.byNode, p.byLead = make([][]int, n), make([][]int, n)
	p.hotLeader = make([]int, n)
	p.order = make([]int, len(snap.Ranges))
	p.flags = make([]rangeFlags, len(snap.Ranges))
	var total int64
	for i := range snap.Ranges {
		p.order[i] = i
		r := &snap.Ranges[i]
		p.rangeIdx[r.ID] = i
		if p.quorumLost(r) {
			p.flags[i] |= flagLost
		}
		for _, rep := range r.Replicas {
			if rep.Type == Learner {
				p.flags[i] |= flagLearner
			}
		}
		total += r.SizeBytes
		for _, rep := range r.Replicas {
			if j, ok := p.idx[rep.Node]; ok {
				p.count[j]++
				p.bytes[j] += r.SizeBytes
				p.byNode[j] = append(p.byNode[j], i)
			}
		}
		if j, ok := p.idx[r.Leader]; ok && r.Leader != 0 {
			p.leaders[j]++
			p.byLead[j] = append(p.byLead[j], i)
		}
	}
	if len(snap.Ranges) > 0 {
		p.meanSize = float64(total) / float64(len(snap.Ranges))
	}
	slices.SortFunc(p.order, func(a, b int) int {
		ra, rb := &snap.Ranges[a], &snap.Ranges[b]
		if ra.Meta != rb.Meta {
			if ra.Meta {
				return -1
			}
			return 1
		}
		return cmp.Compare(ra.ID, rb.ID)
	})
	for _, op := range snap.InFlight {
		i, ok := p.rangeIdx[op.Range]
		if !ok {
			continue
		}
		p.flags[i] |= flagBusy
		p.project(&snap.Ranges[i], op)
	}
	p.findHot()
	return p
}

// project applies the effect of op on r to the per-node figures, skipping
// what the snapshot already shows (a step already done).
func (p *planner) project(r *Range, op Operation) {
	add := func(n NodeID, d int) {
		if j, ok := p.idx[n]; ok {
			p.count[j] += d
			p.bytes[j] += int64(d) * r.SizeBytes
		}
	}
	lead := func(to NodeID) {
		if to == 0 || r.Leader == to {
			return
		}
		if j, ok := p.idx[r.Leader]; ok && r.Leader != 0 {
			p.leaders[j]--
		}
		if j, ok := p.idx[to]; ok {
			p.leaders[j]++
		}
	}
	_, hasTo := r.replicaOn(op.To)
	_, hasFrom := r.replicaOn(op.From)
	switch op.Kind {
	case OpAddVoter:
		if !hasTo {
			add(op.To, 1)
		}
	case OpRemove:
		lead(op.LeaderTo)
		if hasFrom {
			add(op.From, -1)
		}
	case OpMove:
		lead(op.LeaderTo)
		if !hasTo {
			add(op.To, 1)
		}
		if hasFrom {
			add(op.From, -1)
		}
	case OpTransferLeader:
		lead(op.To)
	}
	if op.Kind.movesData() {
		p.charge(op)
	}
}

// charge counts a snapshot-sending operation against its nodes' limits.
func (p *planner) charge(op Operation) {
	if j, ok := p.idx[op.To]; ok {
		p.moves[j]++
	}
	if j, ok := p.idx[op.From]; ok && op.From != op.To && !p.nodes[j].Liveness.gone() {
		p.moves[j]++
	}
}

// full reports whether the round has all the operations it may return.
func (p *planner) full() bool { return len(p.ops) >= p.cfg.MaxOpsPerRound }

// roomFor reports whether node j may take one more snapshot-sending
// operation.
func (p *planner) roomFor(j int) bool {
	return p.nodes[j].Liveness.gone() || p.moves[j] < p.cfg.MaxPlannedPerNode
}

// plan records op: the range is busy for the rest of the round and the
// per-node figures move as if it were done.
func (p *planner) plan(r *Range, op Operation) {
	op.Range, op.Generation = r.ID, r.Generation
	if op.Kind.movesData() {
		op.Bytes = r.SizeBytes
	}
	p.ops = append(p.ops, op)
	p.flags[p.rangeIdx[r.ID]] |= flagBusy
	p.project(r, op)
	if p.hot[r.ID] {
		to := op.LeaderTo
		if op.Kind == OpTransferLeader {
			to = op.To
		}
		if to != 0 {
			if j, ok := p.idx[r.Leader]; ok {
				p.hotLeader[j]--
			}
			p.hotLeader[p.idx[to]]++
		}
	}
}

// liveness returns the liveness of node n; unknown nodes are removed ones.
func (p *planner) liveness(n NodeID) Liveness {
	if j, ok := p.idx[n]; ok {
		return p.nodes[j].Liveness
	}
	return Removed
}

// want returns the number of voters range r should have.
func (p *planner) want(r *Range) int {
	if r.Meta && p.live >= p.cfg.MetaReplicas {
		return p.cfg.MetaReplicas
	}
	return p.cfg.Replicas
}

// quorumLost reports whether a majority of r's voters is gone.
func (p *planner) quorumLost(r *Range) bool {
	voters, gone := 0, 0
	for _, rep := range r.Replicas {
		if rep.Type == Voter {
			voters++
			if p.liveness(rep.Node).gone() {
				gone++
			}
		}
	}
	return voters > 0 && gone > voters/2
}

// target returns the best node to receive a replica of r, or -1: a live
// node that holds none of r, has room for a move and space for r. Of those,
// the nodes that stay within the replica-count band after taking it come
// first; among them the one with the fewest snapshot-sending operations in
// flight (so repairs spread over every node with room instead of queueing
// at the emptiest few), then the fewest replicas, then bytes, then the
// lowest id.
func (p *planner) target(r *Range) int {
	hi := p.countMetric().hi
	key := func(j int) [4]int64 {
		over := int64(0)
		if float64(p.count[j]+1) > hi {
			over = 1
		}
		return [4]int64{over, int64(p.moves[j]), int64(p.count[j]), p.bytes[j]}
	}
	best := -1
	var bestKey [4]int64
	for _, j := range p.balance {
		if _, ok := r.replicaOn(p.nodes[j].ID); ok || !p.roomFor(j) {
			continue
		}
		if c := p.nodes[j].CapacityBytes; c > 0 && p.bytes[j]+r.SizeBytes > c {
			continue
		}
		if k := key(j); best < 0 || slices.Compare(k[:], bestKey[:]) < 0 {
			best, bestKey = j, k
		}
	}
	return best
}

// leaderTarget returns the live voter of r, other than except, with the
// fewest leaders, or 0.
func (p *planner) leaderTarget(r *Range, except NodeID) NodeID {
	var best NodeID
	bestN := 0
	for _, rep := range r.Replicas {
		if rep.Type != Voter || rep.Node == except || p.liveness(rep.Node) != Live {
			continue
		}
		n := p.leaders[p.idx[rep.Node]]
		if best == 0 || n < bestN || (n == bestN && rep.Node < best) {
			best, bestN = rep.Node, n
		}
	}
	return best
}

// leaderAway returns where leadership must go before node from's replica of
// r is removed: nowhere when from does not lead.
func (p *planner) leaderAway(r *Range, from NodeID) NodeID {
	if r.Leader != from {
		return 0
	}
	return p.leaderTarget(r, from)
}

// bounds returns the balanced interval around mean for a figure whose unit
// of movement is unit (1 replica or leader, a mean range size of bytes).
func (p *planner) bounds(mean, unit float64) (lo, hi float64) {
	d := max(mean*p.cfg.Tolerance, p.cfg.MinSlack*unit)
	return mean - d, mean + d
}
