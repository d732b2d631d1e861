package placement

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/tesseradb/tessera/proto/tesserapb"
)

// changeWhenLeading applies a node change once the one-node meta group
// leads (it elects itself first).
func changeWhenLeading(t *testing.T, m *Meta, c *tesserapb.NodeChange) (*tesserapb.NodeRecord, error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		rec, _, err := m.ChangeNode(ctx, c)
		cancel()
		if !errors.Is(err, ErrNodeTableNotLeader) || time.Now().After(deadline) {
			return rec, err
		}
		time.Sleep(5 * time.Millisecond) // poll interval while the group elects itself
	}
}

// TestNodeTable runs etcd's member add/update/promote/remove sequence
// against the meta group's node table: the answers and errors, ids
// allocated and never reused, and the table kept across a restart.
func TestNodeTable(t *testing.T) {
	dir := t.TempDir()
	n := startMeta(t, dir, time.Now, true)
	m := n.meta
	seed := m.NodeTable()
	if len(seed) != 1 || seed[0].GetNodeId() != 1 || seed[0].GetName() != "n1" || len(seed[0].GetPeerUrls()) != 1 {
		t.Fatalf("seeded table: %v", seed)
	}
	self := seed[0].GetPeerUrls()[0]
	add := func(learner bool, urls ...string) *tesserapb.NodeChange {
		return &tesserapb.NodeChange{Op: tesserapb.NodeChange_ADD, PeerUrls: urls, IsLearner: learner}
	}
	op := func(o tesserapb.NodeChange_Op, id uint64, urls ...string) *tesserapb.NodeChange {
		return &tesserapb.NodeChange{Op: o, NodeId: id, PeerUrls: urls}
	}
	steps := []struct {
		name   string
		change *tesserapb.NodeChange
		want   error
		wantID uint64
	}{
		{"add", add(false, "http://127.0.0.1:9002"), nil, 2},
		{"add the same peer URL", add(false, "http://127.0.0.1:9002"), ErrPeerURLExists, 0},
		{"add the first node's peer URL", add(false, self), ErrPeerURLExists, 0},
		{"add a bad URL", add(false, "127.0.0.1:9003"), ErrBadURLs, 0},
		{"add with a path", add(false, "http://127.0.0.1:9003/x"), ErrBadURLs, 0},
		{"add no URL", add(false), ErrBadURLs, 0},
		{"add a learner", add(true, "http://127.0.0.1:9003"), nil, 3},
		{"add a second learner", add(true, "http://127.0.0.1:9004"), ErrTooManyLearners, 0},
		{"promote a voter", op(tesserapb.NodeChange_PROMOTE, 2), ErrNodeNotLearner, 0},
		{"promote unknown", op(tesserapb.NodeChange_PROMOTE, 99), ErrNodeNotFound, 0},
		{"promote the learner", op(tesserapb.NodeChange_PROMOTE, 3), nil, 3},
		{"update unknown", op(tesserapb.NodeChange_UPDATE, 99, "http://127.0.0.1:9005"), ErrNodeNotFound, 0},
		{"update to a taken URL", op(tesserapb.NodeChange_UPDATE, 2, "http://127.0.0.1:9003"), ErrPeerURLExists, 0},
		{"update to its own URL", op(tesserapb.NodeChange_UPDATE, 2, "http://127.0.0.1:9002"), nil, 2},
		{"update", op(tesserapb.NodeChange_UPDATE, 2, "http://127.0.0.1:9006"), nil, 2},
		{"remove unknown", op(tesserapb.NodeChange_REMOVE, 99), ErrNodeNotFound, 0},
		{"remove", op(tesserapb.NodeChange_REMOVE, 3), nil, 3},
		{"remove again", op(tesserapb.NodeChange_REMOVE, 3), ErrNodeNotFound, 0},
		{"promote removed", op(tesserapb.NodeChange_PROMOTE, 3), ErrNodeNotFound, 0},
		{"add the removed node's URL: a new id", add(false, "http://127.0.0.1:9003"), nil, 4},
		{"no op", &tesserapb.NodeChange{}, ErrBadNodeChange, 0},
	}
	for _, s := range steps {
		rec, err := changeWhenLeading(t, m, s.change)
		if !errors.Is(err, s.want) {
			t.Fatalf("%s: error %v, want %v", s.name, err, s.want)
		}
		if s.want == nil && rec.GetNodeId() != s.wantID {
			t.Fatalf("%s: node %v, want id %d", s.name, rec, s.wantID)
		}
	}
	if _, err := changeWhenLeading(t, m, &tesserapb.NodeChange{Op: tesserapb.NodeChange_PUBLISH, NodeId: 2, Name: "n2", ClientUrls: []string{"http://127.0.0.1:9102"}, GossipAddr: "127.0.0.1:9202"}); err != nil {
		t.Fatal(err)
	}
	want := map[uint64]string{
		1: "n1 voter ACTIVE",
		2: "n2 voter ACTIVE http://127.0.0.1:9006 127.0.0.1:9202",
		3: " voter REMOVED http://127.0.0.1:9003 ",
		4: " voter ACTIVE http://127.0.0.1:9003 ",
	}
	check := func(when string) {
		t.Helper()
		got := m.NodeTable()
		if len(got) != len(want) {
			t.Fatalf("%s: table %v", when, got)
		}
		for _, r := range got {
			s := r.GetName() + " voter " + r.GetState().String()
			if r.GetIsLearner() {
				s = r.GetName() + " learner " + r.GetState().String()
			}
			if r.GetNodeId() != 1 {
				s += " " + r.GetPeerUrls()[0] + " " + r.GetGossipAddr()
			}
			if s != want[r.GetNodeId()] {
				t.Fatalf("%s: node %d is %q, want %q", when, r.GetNodeId(), s, want[r.GetNodeId()])
			}
		}
	}
	check("before restart")
	n.stop(t)
	n = startMeta(t, dir, time.Now, false)
	defer n.stop(t)
	m = n.meta
	check("after restart")
	if rec, err := changeWhenLeading(t, m, add(false, "http://127.0.0.1:9007")); err != nil || rec.GetNodeId() != 5 {
		t.Fatalf("add after restart: %v %v, want id 5", rec, err)
	}
}
