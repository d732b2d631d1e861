package scheduler

import (
	"cmp"
	"math"
	"slices"
)

// findHot marks the hot ranges (QPS at least HotQPSRatio times the mean and
// at least HotMinQPS; the MaxHotRanges hottest) and counts the hot ranges
// each node leads.
func (p *planner) findHot() {
	p.hot = make(map[RangeID]bool)
	rs := p.snap.Ranges
	if len(rs) == 0 || p.cfg.MaxHotRanges == 0 {
		return
	}
	var sum float64
	for i := range rs {
		sum += rs[i].QPS
	}
	floor := max(p.cfg.HotMinQPS, p.cfg.HotQPSRatio*sum/float64(len(rs)))
	var hot []int
	for i := range rs {
		if rs[i].QPS >= floor && rs[i].QPS > 0 {
			hot = append(hot, i)
		}
	}
	slices.SortFunc(hot, func(a, b int) int {
		if c := cmp.Compare(rs[b].QPS, rs[a].QPS); c != 0 {
			return c
		}
		return cmp.Compare(rs[a].ID, rs[b].ID)
	})
	if len(hot) > p.cfg.MaxHotRanges {
		hot = hot[:p.cfg.MaxHotRanges]
	}
	for _, i := range hot {
		p.hot[rs[i].ID] = true
		if j, ok := p.idx[rs[i].Leader]; ok && rs[i].Leader != 0 {
			p.hotLeader[j]++
		}
	}
}

// spreadHot transfers the leadership of hot ranges, hottest first, away
// from nodes that lead more than their share (hot ranges / live nodes,
// rounded up) to the range's live voter leading the fewest hot ranges, if
// it leads at least two fewer (so a transfer always narrows the spread,
// also when every other voter is at its share already).
func (p *planner) spreadHot() {
	if len(p.hot) == 0 || len(p.balance) == 0 {
		return
	}
	share := int(math.Ceil(float64(len(p.hot)) / float64(len(p.balance))))
	var hot []int
	for i := range p.snap.Ranges {
		if p.hot[p.snap.Ranges[i].ID] {
			hot = append(hot, i)
		}
	}
	rs := p.snap.Ranges
	slices.SortFunc(hot, func(a, b int) int {
		if c := cmp.Compare(rs[b].QPS, rs[a].QPS); c != 0 {
			return c
		}
		return cmp.Compare(rs[a].ID, rs[b].ID)
	})
	for _, i := range hot {
		if p.full() {
			return
		}
		r := &rs[i]
		l, ok := p.idx[r.Leader]
		if !ok || r.Leader == 0 || p.hotLeader[l] <= share || !p.movable(i) {
			continue
		}
		var to NodeID
		for _, rep := range r.Replicas {
			if rep.Type != Voter || rep.Node == r.Leader || p.liveness(rep.Node) != Live {
				continue
			}
			j := p.idx[rep.Node]
			if p.hotLeader[j] >= p.hotLeader[l]-1 {
				continue
			}
			if to == 0 || p.hotLeader[j] < p.hotLeader[p.idx[to]] {
				to = rep.Node
			}
		}
		if to != 0 {
			p.plan(r, Operation{Kind: OpTransferLeader, From: r.Leader, To: to, Reason: ReasonHot})
		}
	}
}
