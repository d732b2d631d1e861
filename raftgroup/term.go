package raftgroup

import "go.etcd.io/raft/v3"

// TermStatus is the part of a group's raft state that says who leads in
// which term, as raft holds it now (a vote cast shows at once).
type TermStatus struct {
	Term     uint64
	Leader   NodeID
	IsLeader bool
}

// Term returns a group's term and leader; cheaper than Status (no
// configuration or progress copies), for checks made per range per round.
func (h *Host) Term(id GroupID) (TermStatus, error) {
	g, err := h.group(id)
	if err != nil {
		return TermStatus{}, err
	}
	g.raftMu.Lock()
	st := g.rn.BasicStatus()
	g.raftMu.Unlock()
	return TermStatus{Term: st.GetTerm(), Leader: g.nodeOf(st.Lead), IsLeader: st.RaftState == raft.StateLeader}, nil
}
