package main

import (
	"bytes"
	"cmp"
	"fmt"
	"slices"

	"github.com/tesseradb/tessera/proto/tesserapb"
)

// rangeInfo is one range as its replicas report it. Its JSON form is
// tessctl's stable output.
type rangeInfo struct {
	ID   uint64 `json:"range_id"`
	Meta bool   `json:"meta"`
	// StartKey and EndKey are base64 in JSON, as etcdctl's keys; Span shows
	// them readably: ["a", "g"), an empty end key is the end of the keyspace.
	// The meta group has no span.
	StartKey   []byte `json:"start_key"`
	EndKey     []byte `json:"end_key"`
	Span       string `json:"span"`
	Generation uint64 `json:"generation"`
	// Replicas are the descriptor's replicas, by node id.
	Replicas []replicaRef `json:"replicas"`
	// Leader is the node the replica with the highest term names (0: none).
	Leader uint64 `json:"leader"`
	Term   uint64 `json:"term"`
	// From the leader's own replica; null when the leader did not report
	// (and, for the meta group, resolved and compact revisions).
	AppliedIndex     *uint64 `json:"applied_index"`
	ResolvedRevision *int64  `json:"resolved_revision"`
	CompactRevision  *int64  `json:"compact_revision"`
	// Reports are the replicas that answered, by node id.
	Reports []replicaReport `json:"replica_reports"`
}

// replicaRef is one replica of a range: the node holding it, its replica id
// within the range (its raft peer id) and its type ("voter" or "learner").
type replicaRef struct {
	Node    uint64 `json:"node_id"`
	Replica uint64 `json:"replica_id"`
	Type    string `json:"type"`
}

// nodes returns the nodes holding a replica of the range.
func (ri rangeInfo) nodes() []uint64 {
	out := make([]uint64, len(ri.Replicas))
	for i, r := range ri.Replicas {
		out[i] = r.Node
	}
	return out
}

// replicaRefs returns a descriptor's replicas sorted by node id.
func replicaRefs(d *tesserapb.RangeDescriptor) []replicaRef {
	out := make([]replicaRef, 0, len(d.GetReplicas()))
	for _, r := range d.GetReplicas() {
		typ := "voter"
		if r.GetType() == tesserapb.ReplicaType_LEARNER {
			typ = "learner"
		}
		out = append(out, replicaRef{Node: r.GetNodeId(), Replica: r.GetReplicaId(), Type: typ})
	}
	slices.SortFunc(out, func(a, b replicaRef) int { return cmp.Compare(a.Node, b.Node) })
	return out
}

// replicaReport is one replica's view of its range.
type replicaReport struct {
	Node         uint64 `json:"node_id"`
	Leader       uint64 `json:"leader"`
	Term         uint64 `json:"term"`
	AppliedIndex uint64 `json:"applied_index"`
}

// mergeRanges merges the members' replica lists into one entry per range:
// the meta group first, then data ranges by start key. The descriptor is
// the one with the highest generation; the leader the one named at the
// highest term; the applied index and revisions are the leader's.
func mergeRanges(reports []nodeReport) []rangeInfo {
	byID := map[uint64][]*tesserapb.RangeStatus{}
	for _, r := range reports {
		for _, st := range r.ranges.GetRanges() {
			id := st.GetRangeDescriptor().GetRangeId()
			byID[id] = append(byID[id], st)
		}
	}
	out := make([]rangeInfo, 0, len(byID))
	for id, sts := range byID {
		slices.SortFunc(sts, func(a, b *tesserapb.RangeStatus) int { return cmp.Compare(a.GetNodeId(), b.GetNodeId()) })
		out = append(out, mergeRange(id, sts))
	}
	slices.SortFunc(out, func(a, b rangeInfo) int {
		switch {
		case a.Meta != b.Meta:
			if a.Meta {
				return -1
			}
			return 1
		case !bytes.Equal(a.StartKey, b.StartKey):
			return bytes.Compare(a.StartKey, b.StartKey)
		}
		return cmp.Compare(a.ID, b.ID)
	})
	return out
}

// mergeRange merges the reports of one range (sorted by node id).
func mergeRange(id uint64, sts []*tesserapb.RangeStatus) rangeInfo {
	desc := sts[0].GetRangeDescriptor()
	ri := rangeInfo{ID: id}
	var leaderTerm uint64
	for _, st := range sts {
		if d := st.GetRangeDescriptor(); d.GetGeneration() > desc.GetGeneration() {
			desc = d
		}
		ri.Meta = ri.Meta || st.GetIsMeta()
		ri.Term = max(ri.Term, st.GetTerm())
		if st.GetLeaderNode() != 0 && (ri.Leader == 0 || st.GetTerm() > leaderTerm) {
			ri.Leader, leaderTerm = st.GetLeaderNode(), st.GetTerm()
		}
		ri.Reports = append(ri.Reports, replicaReport{
			Node: st.GetNodeId(), Leader: st.GetLeaderNode(), Term: st.GetTerm(), AppliedIndex: st.GetAppliedIndex(),
		})
	}
	ri.Generation = desc.GetGeneration()
	ri.Replicas = replicaRefs(desc)
	ri.StartKey, ri.EndKey = []byte{}, []byte{} // "" in JSON, never null
	if !ri.Meta {
		ri.StartKey = append(ri.StartKey, desc.GetStartKey()...)
		ri.EndKey = append(ri.EndKey, desc.GetEndKey()...)
		ri.Span = formatSpan(ri.StartKey, ri.EndKey)
	}
	for _, st := range sts {
		if ri.Leader == 0 || st.GetNodeId() != ri.Leader {
			continue
		}
		ri.AppliedIndex = ptr(st.GetAppliedIndex())
		if !ri.Meta {
			ri.ResolvedRevision = ptr(st.GetResolvedRevision())
			ri.CompactRevision = ptr(st.GetCompactRevision())
		}
	}
	return ri
}

func ptr[T any](v T) *T { return &v }

// formatSpan shows [start, end) as Tessera's own messages do: ["a", "g").
func formatSpan(start, end []byte) string {
	return fmt.Sprintf("[%q, %q)", start, end)
}

// nodeStatus is one node as tessctl status shows it. Its JSON form is
// tessctl's stable output.
type nodeStatus struct {
	ID        uint64 `json:"id"`
	Name      string `json:"name"`
	ClientURL string `json:"client_url"`
	PeerURL   string `json:"peer_url"`
	Healthy   bool   `json:"healthy"`
	Health    string `json:"health"` // "healthy", or why not
	// Replicas and Leaders are null when the node did not report.
	Replicas *int `json:"replicas"`
	Leaders  *int `json:"leaders"`
	// MetaLeader: the node leads the meta group (and serves the TSO).
	MetaLeader bool `json:"meta_leader"`
	// HasMeta: the node holds a replica of the meta group.
	HasMeta bool `json:"has_meta"`
	// Error is why the node did not report ("" when it did).
	Error string `json:"error"`
}

// nodeStatuses returns one entry per member, by id. Leaderships count the
// ranges (the meta group included) whose merged leader is the node.
func nodeStatuses(reports []nodeReport, ranges []rangeInfo) []nodeStatus {
	out := make([]nodeStatus, 0, len(reports))
	for _, r := range reports {
		ns := nodeStatus{ID: r.member.ID, Name: r.member.Name, Healthy: r.health.ok, Health: "healthy"}
		if len(r.member.ClientURLs) > 0 {
			ns.ClientURL = r.member.ClientURLs[0]
		}
		if len(r.member.PeerURLs) > 0 {
			ns.PeerURL = r.member.PeerURLs[0]
		}
		if !r.health.ok {
			ns.Health = "unhealthy: " + r.health.reason
		}
		if r.err != nil {
			ns.Error = r.err.Error()
		}
		if r.ranges != nil {
			if r.ranges.GetName() != "" {
				ns.Name = r.ranges.GetName()
			}
			ns.Replicas = ptr(len(r.ranges.GetRanges()))
			for _, st := range r.ranges.GetRanges() {
				ns.HasMeta = ns.HasMeta || st.GetIsMeta()
			}
			leaders := 0
			for _, ri := range ranges {
				if ri.Leader == r.member.ID {
					leaders++
					ns.MetaLeader = ns.MetaLeader || ri.Meta
				}
			}
			ns.Leaders = &leaders
		}
		out = append(out, ns)
	}
	slices.SortFunc(out, func(a, b nodeStatus) int { return cmp.Compare(a.ID, b.ID) })
	return out
}
