package placement

import (
	"bytes"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"

	"github.com/tesseradb/tessera/proto/tesserapb"
	"github.com/tesseradb/tessera/raftgroup"
	"github.com/tesseradb/tessera/shard"
)

// MetaRangeID is the group id of the meta group; data ranges follow it.
const MetaRangeID = 1

// MaxReplicas is the replication factor of every range (and of the meta
// group): three, five once five nodes or more exist, as DESIGN.md says for
// the meta group; data ranges use three.
const (
	dataReplicas = 3
	metaReplicas = 3
)

// InitialLayout computes the cluster's bootstrap record: node ids 1..N in the
// order of the initial cluster, the meta group on the first three nodes (five
// when there are five or more), and one data range per interval between the
// sorted split keys, replicated on three nodes chosen round-robin. Each
// range's replicas get replica ids 1..n in their round-robin order (so range
// i's first replica sits on node i mod N, and replica ids differ from node
// ids on most ranges) and next_replica_id n+1; the meta group the same.
// Every node computes the same record from the same flags.
func InitialLayout(nodes []*tesserapb.NodeDescriptor, splitKeys [][]byte) (*tesserapb.ClusterBootstrap, error) {
	if len(nodes) == 0 {
		return nil, errors.New("placement: no nodes in the initial cluster")
	}
	keys := make([][]byte, 0, len(splitKeys))
	for _, k := range splitKeys {
		if len(k) == 0 {
			return nil, errors.New("placement: empty split key")
		}
		keys = append(keys, k)
	}
	slices.SortFunc(keys, bytes.Compare)
	keys = slices.CompactFunc(keys, bytes.Equal)

	h := fnv.New64a()
	ids := make([]raftgroup.NodeID, len(nodes))
	for i, n := range nodes {
		if n.GetNodeId() != uint64(i+1) {
			return nil, fmt.Errorf("placement: node %q has id %d, want %d", n.GetName(), n.GetNodeId(), i+1)
		}
		ids[i] = raftgroup.NodeID(n.GetNodeId())
		fmt.Fprintf(h, "%s=%s,", n.GetName(), n.GetPeerUrl())
	}
	metaN := min(len(nodes), metaReplicas)
	if len(nodes) >= 5 {
		metaN = 5
	}
	metaReps, metaNext := shard.NewReplicas(ids[:metaN], 1)
	b := &tesserapb.ClusterBootstrap{
		ClusterId: h.Sum64(),
		Nodes:     nodes,
		Meta:      &tesserapb.RangeDescriptor{RangeId: MetaRangeID, Replicas: metaReps, NextReplicaId: metaNext, Generation: 1},
	}
	n := min(len(nodes), dataReplicas)
	start := []byte(nil)
	for i := 0; i <= len(keys); i++ {
		var end []byte
		if i < len(keys) {
			end = keys[i]
		}
		var on []raftgroup.NodeID
		for j := 0; j < n; j++ {
			on = append(on, ids[(i+j)%len(ids)])
		}
		reps, next := shard.NewReplicas(on, 1)
		b.Ranges = append(b.Ranges, &tesserapb.RangeDescriptor{
			RangeId: uint64(MetaRangeID + 1 + i), StartKey: start, EndKey: end, Replicas: reps, NextReplicaId: next, Generation: 1,
		})
		start = end
	}
	return b, nil
}
