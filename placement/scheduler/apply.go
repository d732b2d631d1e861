package scheduler

import (
	"fmt"
	"slices"
)

// ApplyStep changes r as the step would once done: the model of the moves
// used by tests and the simulator. Generation goes up with every replica
// change, as the descriptor's does. A step that cannot apply (a learner
// on a node that holds a replica, promoting a voter, removing a replica
// that is not there) returns an error and leaves r as it was.
func (r *Range) ApplyStep(st Step) error {
	i := slices.IndexFunc(r.Replicas, func(rep Replica) bool { return rep.Node == st.Node })
	switch st.Kind {
	case StepAddLearner:
		if i >= 0 {
			return fmt.Errorf("scheduler: r%d: %s already holds a replica", uint64(r.ID), st.Node)
		}
		next := r.NextReplicaID
		if next == 0 {
			for _, rep := range r.Replicas {
				next = max(next, rep.ID+1)
			}
		}
		r.Replicas = append(slices.Clip(r.Replicas), Replica{Node: st.Node, ID: next, Type: Learner})
		r.NextReplicaID = next + 1
	case StepPromote:
		if i < 0 || r.Replicas[i].Type != Learner {
			return fmt.Errorf("scheduler: r%d: no learner on %s to promote", uint64(r.ID), st.Node)
		}
		r.Replicas = slices.Clone(r.Replicas)
		r.Replicas[i].Type = Voter
	case StepRemove:
		if i < 0 {
			return fmt.Errorf("scheduler: r%d: no replica on %s to remove", uint64(r.ID), st.Node)
		}
		r.Replicas = slices.Delete(slices.Clone(r.Replicas), i, i+1)
		if r.Leader == st.Node {
			r.Leader = 0
		}
	case StepTransferLeader:
		if i < 0 || r.Replicas[i].Type != Voter {
			return fmt.Errorf("scheduler: r%d: no voter on %s to lead", uint64(r.ID), st.Node)
		}
		r.Leader = st.Node
		return nil
	default:
		return fmt.Errorf("scheduler: unknown step %v", st.Kind)
	}
	r.Generation++
	return nil
}

// Apply applies every step of op to r, stopping at the first that fails.
func (r *Range) Apply(op Operation) error {
	for _, st := range op.Steps() {
		if err := r.ApplyStep(st); err != nil {
			return fmt.Errorf("%s: %w", op, err)
		}
	}
	return nil
}
