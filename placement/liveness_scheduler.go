package placement

import (
	"fmt"
	"time"

	"github.com/tesseradb/tessera/placement/scheduler"
	"github.com/tesseradb/tessera/proto/tesserapb"
)

// Scheduler converts the snapshot to the scheduler's model: a draining
// node is Draining whatever its liveness (unless dead), the meta group's
// range is marked, sizes and loads come from the leaders' heartbeats.
func (s ClusterSnapshot) Scheduler() (scheduler.Snapshot, error) {
	var out scheduler.Snapshot
	for _, n := range s.Nodes {
		l, err := scheduler.ParseLiveness(n.Liveness)
		if err != nil {
			return scheduler.Snapshot{}, fmt.Errorf("placement: node %d: %w", n.Record.GetNodeId(), err)
		}
		if n.Record.GetState() == tesserapb.NodeRecord_DRAINING && l != scheduler.Dead {
			l = scheduler.Draining
		}
		node := scheduler.Node{ID: scheduler.NodeID(n.Record.GetNodeId()), Liveness: l}
		if n.HeartbeatAge >= 0 {
			node.LastHeartbeat = s.At.Add(-n.HeartbeatAge)
		} else {
			node.LastHeartbeat = time.Time{}
		}
		out.Nodes = append(out.Nodes, node)
	}
	for _, r := range s.Ranges {
		sr, err := scheduler.RangeFromDescriptor(r.Descriptor)
		if err != nil {
			return scheduler.Snapshot{}, err
		}
		sr.Leader = r.Leader
		sr.SizeBytes = int64(r.SizeBytes)
		sr.QPS = r.QPS
		sr.Meta = r.Descriptor.GetRangeId() == MetaRangeID
		out.Ranges = append(out.Ranges, sr)
	}
	return out, nil
}
