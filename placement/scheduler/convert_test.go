package scheduler

import (
	"strings"
	"testing"

	"github.com/tesseradb/tessera/proto/tesserapb"
)

func TestRangeFromDescriptor(t *testing.T) {
	d := &tesserapb.RangeDescriptor{RangeId: 7, StartKey: []byte("a"), EndKey: []byte("m"), Generation: 4, NextReplicaId: 6,
		Replicas: []*tesserapb.ReplicaDescriptor{
			{NodeId: 1, ReplicaId: 1}, {NodeId: 3, ReplicaId: 4}, {NodeId: 5, ReplicaId: 5, Type: tesserapb.ReplicaType_LEARNER},
		}}
	r, err := RangeFromDescriptor(d)
	if err != nil {
		t.Fatal(err)
	}
	if r.ID != 7 || string(r.StartKey) != "a" || string(r.EndKey) != "m" || r.Generation != 4 || r.NextReplicaID != 6 ||
		len(r.Replicas) != 3 || r.Replicas[1] != (Replica{Node: 3, ID: 4, Type: Voter}) || r.Replicas[2].Type != Learner {
		t.Fatalf("converted %+v", r)
	}
	// A learner added next gets the descriptor's next replica id, never a
	// reused one.
	if err := r.ApplyStep(Step{StepAddLearner, 2}); err != nil {
		t.Fatal(err)
	}
	if rep, _ := r.replicaOn(2); rep.ID != 6 || r.NextReplicaID != 7 || r.Generation != 5 {
		t.Fatalf("added %+v, next %d, generation %d", rep, r.NextReplicaID, r.Generation)
	}
	d.Replicas = append(d.Replicas, &tesserapb.ReplicaDescriptor{NodeId: 3, ReplicaId: 9})
	if _, err := RangeFromDescriptor(d); err == nil || !strings.Contains(err.Error(), "two replicas on n3") {
		t.Fatalf("two replicas on one node: %v", err)
	}
}
