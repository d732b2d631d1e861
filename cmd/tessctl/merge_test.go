package main

import (
	"errors"
	"fmt"
	"reflect"
	"testing"

	"github.com/tesseradb/tessera/proto/tesserapb"
)

// rs is a data range replica's status for tests.
type rs struct {
	id, node, leader, term, applied uint64
	resolved, compact               int64
	start, end                      string
	gen                             uint64
	replicas                        []uint64
	meta                            bool
}

func (s rs) proto() *tesserapb.RangeStatus {
	d := &tesserapb.RangeDescriptor{RangeId: s.id, Generation: s.gen}
	for _, n := range s.replicas {
		d.Replicas = append(d.Replicas, &tesserapb.ReplicaDescriptor{NodeId: n, ReplicaId: n + 10})
	}
	if s.start != "" {
		d.StartKey = []byte(s.start)
	}
	if s.end != "" {
		d.EndKey = []byte(s.end)
	}
	return &tesserapb.RangeStatus{
		RangeDescriptor: d, NodeId: s.node, LeaderNode: s.leader, Term: s.term,
		AppliedIndex: s.applied, ResolvedRevision: s.resolved, CompactRevision: s.compact, IsMeta: s.meta,
	}
}

// refsOf is what tessctl shows for replicas on nodes (rs.proto gives node
// n's replica the id n+10).
func refsOf(nodes []uint64) []replicaRef {
	out := []replicaRef{}
	for _, n := range nodes {
		out = append(out, replicaRef{Node: n, Replica: n + 10, Type: "voter"})
	}
	return out
}

// reportOf is node id's answer holding sts.
func reportOf(id uint64, sts ...rs) nodeReport {
	resp := &tesserapb.RangesResponse{NodeId: id, Name: nameOf(id)}
	for _, s := range sts {
		s.node = id
		resp.Ranges = append(resp.Ranges, s.proto())
	}
	return nodeReport{
		member: member{ID: id, Name: nameOf(id), ClientURLs: []string{urlOf(id, 2379)}, PeerURLs: []string{urlOf(id, 2380)}},
		ranges: resp,
		health: health{ok: true},
	}
}

func nameOf(id uint64) string          { return fmt.Sprintf("node%d", id) }
func urlOf(id uint64, port int) string { return fmt.Sprintf("http://10.0.0.%d:%d", id, port) }

// unreachable is a member that could not be asked.
func unreachable(id uint64) nodeReport {
	return nodeReport{
		member: member{ID: id, Name: nameOf(id), ClientURLs: []string{urlOf(id, 2379)}, PeerURLs: []string{urlOf(id, 2380)}},
		err:    errors.New("connection refused"),
		health: health{reason: "connection refused"},
	}
}

func TestMergeRanges(t *testing.T) {
	all := []uint64{1, 2, 3}
	meta := rs{id: 1, meta: true, gen: 1, replicas: all}
	tests := []struct {
		name    string
		reports []nodeReport
		want    []rangeInfo
	}{{
		name: "all agree; meta first, then key order",
		reports: []nodeReport{
			reportOf(1, withLeader(meta, 1, 2, 10), rs{id: 3, start: "g", leader: 2, term: 3, applied: 7, resolved: 50, gen: 1, replicas: all}, rs{id: 2, end: "g", leader: 1, term: 2, applied: 5, resolved: 40, gen: 1, replicas: all}),
			reportOf(2, withLeader(meta, 1, 2, 9), rs{id: 3, start: "g", leader: 2, term: 3, applied: 8, resolved: 60, compact: 30, gen: 1, replicas: all}, rs{id: 2, end: "g", leader: 1, term: 2, applied: 4, gen: 1, replicas: all}),
		},
		want: []rangeInfo{
			{ID: 1, Meta: true, StartKey: []byte{}, EndKey: []byte{}, Generation: 1, Replicas: refsOf(all), Leader: 1, Term: 2, AppliedIndex: ptr[uint64](10),
				Reports: []replicaReport{{1, 1, 2, 10}, {2, 1, 2, 9}}},
			{ID: 2, StartKey: []byte{}, EndKey: []byte("g"), Span: `["", "g")`, Generation: 1, Replicas: refsOf(all), Leader: 1, Term: 2,
				AppliedIndex: ptr[uint64](5), ResolvedRevision: ptr[int64](40), CompactRevision: ptr[int64](0),
				Reports: []replicaReport{{1, 1, 2, 5}, {2, 1, 2, 4}}},
			{ID: 3, StartKey: []byte("g"), EndKey: []byte{}, Span: `["g", "")`, Generation: 1, Replicas: refsOf(all), Leader: 2, Term: 3,
				AppliedIndex: ptr[uint64](8), ResolvedRevision: ptr[int64](60), CompactRevision: ptr[int64](30),
				Reports: []replicaReport{{1, 2, 3, 7}, {2, 2, 3, 8}}},
		},
	}, {
		name: "the highest term names the leader; a stale replica does not",
		reports: []nodeReport{
			reportOf(1, rs{id: 2, leader: 1, term: 4, applied: 20, resolved: 9, gen: 1, replicas: all}),
			reportOf(2, rs{id: 2, leader: 3, term: 5, applied: 21, resolved: 7, gen: 1, replicas: all}),
			reportOf(3, rs{id: 2, leader: 3, term: 5, applied: 22, resolved: 11, gen: 1, replicas: all}),
		},
		want: []rangeInfo{{
			ID: 2, StartKey: []byte{}, EndKey: []byte{}, Span: `["", "")`, Generation: 1, Replicas: refsOf(all), Leader: 3, Term: 5,
			AppliedIndex: ptr[uint64](22), ResolvedRevision: ptr[int64](11), CompactRevision: ptr[int64](0),
			Reports: []replicaReport{{1, 1, 4, 20}, {2, 3, 5, 21}, {3, 3, 5, 22}},
		}},
	}, {
		name: "the leader did not answer: no applied index or revisions",
		reports: []nodeReport{
			reportOf(1, rs{id: 2, leader: 3, term: 5, applied: 20, gen: 1, replicas: all}),
			unreachable(3),
		},
		want: []rangeInfo{{
			ID: 2, StartKey: []byte{}, EndKey: []byte{}, Span: `["", "")`, Generation: 1, Replicas: refsOf(all), Leader: 3, Term: 5,
			Reports: []replicaReport{{1, 3, 5, 20}},
		}},
	}, {
		name: "no leader known; the highest term is shown",
		reports: []nodeReport{
			reportOf(1, rs{id: 2, term: 7, applied: 20, gen: 1, replicas: all}),
			reportOf(2, rs{id: 2, term: 6, applied: 20, gen: 1, replicas: all}),
		},
		want: []rangeInfo{{
			ID: 2, StartKey: []byte{}, EndKey: []byte{}, Span: `["", "")`, Generation: 1, Replicas: refsOf(all), Term: 7,
			Reports: []replicaReport{{1, 0, 7, 20}, {2, 0, 6, 20}},
		}},
	}, {
		name: "the newest descriptor wins",
		reports: []nodeReport{
			reportOf(1, rs{id: 2, start: "a", end: "z", leader: 1, term: 1, gen: 1, replicas: []uint64{3, 1, 2}}),
			reportOf(2, rs{id: 2, start: "a", end: "m", leader: 1, term: 1, gen: 2, replicas: []uint64{2, 1}}),
		},
		want: []rangeInfo{{
			ID: 2, StartKey: []byte("a"), EndKey: []byte("m"), Span: `["a", "m")`, Generation: 2, Replicas: refsOf([]uint64{1, 2}), Leader: 1, Term: 1,
			AppliedIndex: ptr[uint64](0), ResolvedRevision: ptr[int64](0), CompactRevision: ptr[int64](0),
			Reports: []replicaReport{{1, 1, 1, 0}, {2, 1, 1, 0}},
		}},
	}, {
		name: "binary keys are quoted",
		reports: []nodeReport{
			reportOf(1, rs{id: 4, start: "\x00\xff", end: "a\"b", gen: 1, replicas: []uint64{1}}),
		},
		want: []rangeInfo{{
			ID: 4, StartKey: []byte("\x00\xff"), EndKey: []byte("a\"b"), Span: `["\x00\xff", "a\"b")`, Generation: 1, Replicas: refsOf([]uint64{1}),
			Reports: []replicaReport{{1, 0, 0, 0}},
		}},
	}, {
		name:    "nobody answered",
		reports: []nodeReport{unreachable(1), unreachable(2)},
		want:    []rangeInfo{},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := mergeRanges(tt.reports)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("mergeRanges:\n got %s\nwant %s", mustJSON(t, got), mustJSON(t, tt.want))
			}
		})
	}
}

func withLeader(s rs, leader, term, applied uint64) rs {
	s.leader, s.term, s.applied = leader, term, applied
	return s
}

func TestNodeStatuses(t *testing.T) {
	all := []uint64{1, 2, 3}
	meta := rs{id: 1, meta: true, gen: 1, replicas: all}
	r2 := rs{id: 2, end: "g", gen: 1, replicas: all}
	r3 := rs{id: 3, start: "g", gen: 1, replicas: []uint64{1, 2, 4}}
	reports := []nodeReport{
		reportOf(2, withLeader(meta, 1, 1, 1), withLeader(r2, 2, 1, 1), withLeader(r3, 2, 1, 1)),
		reportOf(1, withLeader(meta, 1, 1, 1), withLeader(r2, 2, 1, 1), withLeader(r3, 2, 1, 1)),
		unreachable(3),
		reportOf(4, withLeader(r3, 2, 1, 1)),
	}
	reports[3].health = health{reason: "etcdserver: request timed out"}
	reports[1].ranges.Name = "" // the member list's name is used
	got := nodeStatuses(reports, mergeRanges(reports))
	want := []nodeStatus{
		{ID: 1, Name: "node1", ClientURL: urlOf(1, 2379), PeerURL: urlOf(1, 2380), Healthy: true, Health: "healthy", Replicas: ptr(3), Leaders: ptr(1), MetaLeader: true, HasMeta: true},
		{ID: 2, Name: "node2", ClientURL: urlOf(2, 2379), PeerURL: urlOf(2, 2380), Healthy: true, Health: "healthy", Replicas: ptr(3), Leaders: ptr(2), HasMeta: true},
		{ID: 3, Name: "node3", ClientURL: urlOf(3, 2379), PeerURL: urlOf(3, 2380), Health: "unhealthy: connection refused", Error: "connection refused"},
		{ID: 4, Name: "node4", ClientURL: urlOf(4, 2379), PeerURL: urlOf(4, 2380), Health: "unhealthy: etcdserver: request timed out", Replicas: ptr(1), Leaders: ptr(0)},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("nodeStatuses:\n got %s\nwant %s", mustJSON(t, got), mustJSON(t, want))
	}
}
