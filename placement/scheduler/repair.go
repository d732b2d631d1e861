package scheduler

import "slices"

// repair plans, in priority order over all ranges (meta first): finishing
// or rolling back interrupted moves, replacing replicas on dead or removed
// nodes, meeting the replication factor, and moving leaders and replicas
// off draining nodes.
func (p *planner) repair() {
	passes := []func(*Range) (Operation, bool){p.repairLearner, p.repairDead, p.repairReplication, p.repairDraining}
	for _, pass := range passes {
		for _, i := range p.order {
			if p.full() {
				return
			}
			r := &p.snap.Ranges[i]
			if p.flags[i]&(flagBusy|flagLost) != 0 {
				continue
			}
			if op, ok := pass(r); ok {
				p.plan(r, op)
			}
		}
	}
}

// healthyVoters counts r's voters on nodes that are neither gone nor
// draining.
func (p *planner) healthyVoters(r *Range) int {
	n := 0
	for _, rep := range r.Replicas {
		if l := p.liveness(rep.Node); rep.Type == Voter && !l.gone() && l != Draining {
			n++
		}
	}
	return n
}

// repairLearner handles a learner left behind by an interrupted move (no
// operation of the range is in flight, so nothing is about to promote it):
// promoted when its node is live and the range is short of healthy voters,
// removed otherwise.
func (p *planner) repairLearner(r *Range) (Operation, bool) {
	for _, rep := range r.Replicas {
		if rep.Type != Learner {
			continue
		}
		if p.liveness(rep.Node) == Live && p.healthyVoters(r) < p.want(r) {
			return Operation{Kind: OpPromote, To: rep.Node, Reason: ReasonInterrupted}, true
		}
		return Operation{Kind: OpRemove, From: rep.Node, Reason: ReasonInterrupted}, true
	}
	return Operation{}, false
}

// repairDead replaces a voter on a dead or removed node by a new one on the
// best live node, or only removes it when the range has enough voters
// without it.
func (p *planner) repairDead(r *Range) (Operation, bool) {
	voters := r.voters()
	for _, rep := range r.Replicas {
		if rep.Type != Voter || !p.liveness(rep.Node).gone() {
			continue
		}
		if voters-1 >= p.want(r) {
			return Operation{Kind: OpRemove, From: rep.Node, Reason: ReasonDead}, true
		}
		t := p.target(r)
		if t < 0 {
			return Operation{}, false
		}
		return Operation{Kind: OpMove, From: rep.Node, To: p.nodes[t].ID, Reason: ReasonDead}, true
	}
	return Operation{}, false
}

// repairReplication adds a voter to a range short of its replication factor
// (the meta range growing to 5) or removes one from a range above it (the
// meta range back to 3 when live nodes fall below 5), choosing the voter on
// the least wanted node: draining, then suspect, then the fullest, then
// one that does not lead.
func (p *planner) repairReplication(r *Range) (Operation, bool) {
	voters, want := r.voters(), p.want(r)
	switch {
	case voters < want:
		t := p.target(r)
		if t < 0 {
			return Operation{}, false
		}
		return Operation{Kind: OpAddVoter, To: p.nodes[t].ID, Reason: ReasonReplication}, true
	case voters > want:
		var worst NodeID
		worstKey := [3]int{-1, -1, -1}
		for _, rep := range r.Replicas {
			if rep.Type != Voter {
				continue
			}
			rank := 0
			switch p.liveness(rep.Node) {
			case Draining:
				rank = 2
			case Suspect:
				rank = 1
			}
			follower := 0
			if rep.Node != r.Leader {
				follower = 1
			}
			key := [3]int{rank, p.count[p.idx[rep.Node]], follower}
			if slices.Compare(key[:], worstKey[:]) > 0 {
				worst, worstKey = rep.Node, key
			}
		}
		return Operation{Kind: OpRemove, From: worst, LeaderTo: p.leaderAway(r, worst), Reason: ReasonReplication}, true
	}
	return Operation{}, false
}

// repairDraining moves leadership off a draining node, then (in a later
// round, once another node leads) its replica.
func (p *planner) repairDraining(r *Range) (Operation, bool) {
	if p.liveness(r.Leader) == Draining {
		if to := p.leaderTarget(r, r.Leader); to != 0 {
			return Operation{Kind: OpTransferLeader, From: r.Leader, To: to, Reason: ReasonDraining}, true
		}
	}
	for _, rep := range r.Replicas {
		if p.liveness(rep.Node) != Draining {
			continue
		}
		j := p.idx[rep.Node]
		if !p.roomFor(j) {
			return Operation{}, false
		}
		t := p.target(r)
		if t < 0 {
			return Operation{}, false
		}
		return Operation{Kind: OpMove, From: rep.Node, To: p.nodes[t].ID, LeaderTo: p.leaderAway(r, rep.Node), Reason: ReasonDraining}, true
	}
	return Operation{}, false
}
