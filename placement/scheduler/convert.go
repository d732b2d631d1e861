package scheduler

import (
	"fmt"

	"github.com/tesseradb/tessera/proto/tesserapb"
)

// RangeFromDescriptor converts a range descriptor (from the range
// directory) to the scheduler's model; the caller adds the leader, size,
// keys and QPS from node heartbeats, and marks the meta range.
func RangeFromDescriptor(d *tesserapb.RangeDescriptor) (Range, error) {
	r := Range{
		ID:            RangeID(d.GetRangeId()),
		StartKey:      d.GetStartKey(),
		EndKey:        d.GetEndKey(),
		Generation:    d.GetGeneration(),
		NextReplicaID: ReplicaID(d.GetNextReplicaId()),
	}
	seen := make(map[NodeID]bool, len(d.GetReplicas()))
	for _, rd := range d.GetReplicas() {
		n := NodeID(rd.GetNodeId())
		if n == 0 || rd.GetReplicaId() == 0 {
			return Range{}, fmt.Errorf("scheduler: r%d: replica %v without a node or replica id", d.GetRangeId(), rd)
		}
		if seen[n] {
			return Range{}, fmt.Errorf("scheduler: r%d: two replicas on %s", d.GetRangeId(), n)
		}
		seen[n] = true
		typ := Voter
		switch rd.GetType() {
		case tesserapb.ReplicaType_VOTER:
		case tesserapb.ReplicaType_LEARNER:
			typ = Learner
		default:
			return Range{}, fmt.Errorf("scheduler: r%d: replica on %s of unknown type %v", d.GetRangeId(), n, rd.GetType())
		}
		r.Replicas = append(r.Replicas, Replica{Node: n, ID: ReplicaID(rd.GetReplicaId()), Type: typ})
	}
	return r, nil
}
