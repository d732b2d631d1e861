package scheduler

import (
	"cmp"
	"math"
	"slices"
)

// metric is one per-node figure balancing works on.
type metric struct {
	value  func(j int) float64
	lo, hi float64
}

func (p *planner) countMetric() metric {
	var sum float64
	for _, j := range p.balance {
		sum += float64(p.count[j])
	}
	lo, hi := p.bounds(sum/float64(max(len(p.balance), 1)), 1)
	return metric{value: func(j int) float64 { return float64(p.count[j]) }, lo: lo, hi: hi}
}

func (p *planner) bytesMetric() metric {
	var sum float64
	for _, j := range p.balance {
		sum += float64(p.bytes[j])
	}
	lo, hi := p.bounds(sum/float64(max(len(p.balance), 1)), p.meanSize)
	return metric{value: func(j int) float64 { return float64(p.bytes[j]) }, lo: lo, hi: hi}
}

// movable reports whether a replica of r may move for balance: no
// operation in flight, no learner (repair handles those), quorum intact.
func (p *planner) movable(i int) bool {
	return p.flags[i]&(flagBusy|flagLost|flagLearner) == 0
}

// sortedBalance returns the balance nodes ordered by m, descending when
// desc, ties by node id.
func (p *planner) sortedBalance(m metric, desc bool) []int {
	out := slices.Clone(p.balance)
	slices.SortStableFunc(out, func(a, b int) int {
		c := cmp.Compare(m.value(a), m.value(b))
		if desc {
			c = -c
		}
		if c != 0 {
			return c
		}
		return cmp.Compare(a, b)
	})
	return out
}

// pairsTried bounds the (source, target) pairs one balancing step tries
// before it gives up: the fullest sources against the emptiest targets.
const pairsTried = 8

// balanceMoves moves replicas from nodes above m's bounds to nodes below
// them (or from above the mean to below the bound, and from above the bound
// to below the mean) until no pair is out of bounds or the round is full.
// pick chooses the range of source s to move to target t, or -1, and
// optionally a range of t to move to s in exchange (or -1).
func (p *planner) balanceMoves(m func() metric, pick func(s, t int) (int, int), reason Reason) {
	for !p.full() {
		mm := m()
		mean := (mm.lo + mm.hi) / 2
		srcs, dsts := p.sortedBalance(mm, true), p.sortedBalance(mm, false)
		done := false
		tried := 0
	search:
		for _, s := range srcs {
			if mm.value(s) <= mean {
				break
			}
			if !p.roomFor(s) {
				continue
			}
			for _, t := range dsts {
				if mm.value(t) >= mean {
					break
				}
				if s == t || !p.roomFor(t) || !(mm.value(s) > mm.hi || mm.value(t) < mm.lo) {
					continue
				}
				if tried++; tried > pairsTried*pairsTried {
					break search
				}
				if i, back := pick(s, t); i >= 0 {
					p.planMove(i, s, t, reason)
					if back >= 0 && !p.full() {
						p.planMove(back, t, s, reason)
					}
					done = true
					break search
				}
			}
		}
		if !done {
			return
		}
	}
}

// planMove plans the move of range i's replica from node s to node t.
func (p *planner) planMove(i, s, t int, reason Reason) {
	r := &p.snap.Ranges[i]
	from := p.nodes[s].ID
	p.plan(r, Operation{Kind: OpMove, From: from, To: p.nodes[t].ID, LeaderTo: p.leaderAway(r, from), Reason: reason})
}

// canMove reports whether range i's replica on source s may move to
// target t.
func (p *planner) canMove(i, s, t int) bool {
	if !p.movable(i) {
		return false
	}
	r := &p.snap.Ranges[i]
	if _, ok := r.replicaOn(p.nodes[t].ID); ok {
		return false
	}
	if rep, ok := r.replicaOn(p.nodes[s].ID); !ok || rep.Type != Voter {
		return false
	}
	if c := p.nodes[t].CapacityBytes; c > 0 && p.bytes[t]+r.SizeBytes > c {
		return false
	}
	// Moving the leader's replica needs another live voter to lead.
	if r.Leader == p.nodes[s].ID && p.leaderTarget(r, r.Leader) == 0 {
		return false
	}
	return true
}

// balanceCount evens out replicas per node. Of the ranges on the source it
// moves the one whose size is closest to the two nodes' difference in bytes
// per replica of difference in count (so that bytes converge with counts:
// an empty node gets ranges of the source's mean size, not its largest;
// the smallest when the source holds fewer bytes), one the source does not
// lead when sizes tie (no leader transfer needed).
func (p *planner) balanceCount() {
	p.balanceMoves(p.countMetric, func(s, t int) (int, int) {
		ideal := max(float64(p.bytes[s]-p.bytes[t])/float64(max(p.count[s]-p.count[t], 1)), 0)
		best, bestD, bestLeads := -1, math.Inf(1), false
		for _, i := range p.byNode[s] {
			r := &p.snap.Ranges[i]
			if !p.canMove(i, s, t) {
				continue
			}
			d, leads := math.Abs(float64(r.SizeBytes)-ideal), r.Leader == p.nodes[s].ID
			if d < bestD || (d == bestD && bestLeads && !leads) {
				best, bestD, bestLeads = i, d, leads
			}
		}
		return best, -1
	}, ReasonCount)
}

// balanceBytes evens out bytes per node without taking replica counts out
// of their bounds. It moves the range of the source closest to half the two
// nodes' difference and smaller than the difference (so the pair ends
// closer). When the move would take a count out of bounds it swaps instead:
// a large range of the source for the smallest range of the target, the
// two sizes differing by about half the difference; counts do not change.
func (p *planner) balanceBytes() {
	p.balanceMoves(p.bytesMetric, func(s, t int) (int, int) {
		cm := p.countMetric()
		diff := float64(p.bytes[s] - p.bytes[t])
		if float64(p.count[t]+1) <= cm.hi && float64(p.count[s]-1) >= cm.lo {
			return p.closest(s, t, diff/2, 0, diff), -1
		}
		if p.moves[s]+2 > p.cfg.MaxPlannedPerNode || p.moves[t]+2 > p.cfg.MaxPlannedPerNode {
			return -1, -1
		}
		small := -1
		for _, i := range p.byNode[t] {
			r := &p.snap.Ranges[i]
			if p.canMove(i, t, s) && (small < 0 || r.SizeBytes < p.snap.Ranges[small].SizeBytes) {
				small = i
			}
		}
		if small < 0 {
			return -1, -1
		}
		ss := float64(p.snap.Ranges[small].SizeBytes)
		big := p.closest(s, t, diff/2+ss, ss, diff+ss)
		if big < 0 || big == small {
			return -1, -1
		}
		return big, small
	}, ReasonBytes)
}

// closest returns the range on s movable to t whose size is closest to
// ideal, strictly between lo and hi, or -1.
func (p *planner) closest(s, t int, ideal, lo, hi float64) int {
	best, bestD := -1, math.Inf(1)
	for _, i := range p.byNode[s] {
		r := &p.snap.Ranges[i]
		size := float64(r.SizeBytes)
		if size <= lo || size >= hi || !p.canMove(i, s, t) {
			continue
		}
		if d := math.Abs(size - ideal); d < bestD {
			best, bestD = i, d
		}
	}
	return best
}

// balanceLeaders evens out leaders per node with leader transfers among a
// range's voters: from the node with the most leaders while it is above the
// bound, then to the node with the fewest while it is below. Hot ranges are
// left to spreadHot.
func (p *planner) balanceLeaders() {
	if len(p.balance) == 0 {
		return
	}
	inBalance := make([]bool, len(p.nodes))
	for _, j := range p.balance {
		inBalance[j] = true
	}
	leadersOn := func(j int) float64 { return float64(p.leaders[j]) }
	for !p.full() {
		var sum float64
		for _, j := range p.balance {
			sum += leadersOn(j)
		}
		lo, hi := p.bounds(sum/float64(len(p.balance)), 1)
		m := metric{value: leadersOn, lo: lo, hi: hi}
		srcs, dsts := p.sortedBalance(m, true), p.sortedBalance(m, false)
		planned := false
		// From the fullest source above the bound to its range's voter
		// with the fewest leaders.
		if s := srcs[0]; leadersOn(s) > hi {
			bestI, bestT := -1, NodeID(0)
			for _, i := range p.byLead[s] {
				r := &p.snap.Ranges[i]
				if p.hot[r.ID] || !p.movable(i) || r.Leader != p.nodes[s].ID {
					continue
				}
				t := p.leaderTarget(r, r.Leader)
				if t == 0 || p.leaders[p.idx[t]] >= p.leaders[s]-1 {
					continue
				}
				if bestI < 0 || p.leaders[p.idx[t]] < p.leaders[p.idx[bestT]] {
					bestI, bestT = i, t
				}
			}
			if bestI >= 0 {
				r := &p.snap.Ranges[bestI]
				p.plan(r, Operation{Kind: OpTransferLeader, From: r.Leader, To: bestT, Reason: ReasonLeaders})
				planned = true
			}
		}
		// To the emptiest target below the bound from the fullest leader
		// of a range it holds.
		if t := dsts[0]; !planned && leadersOn(t) < lo {
			bestI := -1
			for _, i := range p.byNode[t] {
				r := &p.snap.Ranges[i]
				rep, _ := r.replicaOn(p.nodes[t].ID)
				l, ok := p.idx[r.Leader]
				if rep.Type != Voter || !ok || !inBalance[l] || r.Leader == p.nodes[t].ID || p.hot[r.ID] || !p.movable(i) {
					continue
				}
				if p.leaders[l] <= p.leaders[t]+1 {
					continue
				}
				if bestI < 0 || p.leaders[l] > p.leaders[p.idx[p.snap.Ranges[bestI].Leader]] {
					bestI = i
				}
			}
			if bestI >= 0 {
				r := &p.snap.Ranges[bestI]
				p.plan(r, Operation{Kind: OpTransferLeader, From: r.Leader, To: p.nodes[t].ID, Reason: ReasonLeaders})
				planned = true
			}
		}
		if !planned {
			return
		}
	}
}
