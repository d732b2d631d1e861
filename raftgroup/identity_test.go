package raftgroup

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tesseradb/tessera/engine"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// heartbeatAt is a heartbeat of a far higher term: a replica that steps it
// moves to that term, so whether it was stepped shows in Status.
func heartbeatAt(from, to ReplicaID, term uint64) *raftpb.Message {
	return &raftpb.Message{
		Type: raftpb.MsgHeartbeat.Enum(),
		From: proto.Uint64(uint64(from)),
		To:   proto.Uint64(uint64(to)),
		Term: proto.Uint64(term),
	}
}

func dropped(t *testing.T, nd *hostNode, reason string) float64 {
	t.Helper()
	return counterValue(t, nd.reg, "tessera_raft_messages_dropped_total", map[string]string{"reason": reason})
}

func term(t *testing.T, nd *hostNode, g GroupID) uint64 {
	t.Helper()
	st, err := nd.host.Status(g)
	if err != nil {
		t.Fatal(err)
	}
	return st.Term
}

// The host steps a message only when it is addressed to the local replica id
// and its From replica is the sending node's: an old incarnation's id, a
// replica of another node, or an unknown replica is dropped and counted.
func TestReplicaIdentityChecks(t *testing.T) {
	c := newTestCluster(t, 3, 1, nil)
	g := GroupID(1)
	c.waitLeaders(c.groups)
	n3 := c.node(3)
	self, err := n3.host.ReplicaID(g)
	if err != nil || self != testReplica(g, 3) {
		t.Fatalf("replica id on n3 = %v, %v; want %v", self, err, testReplica(g, 3))
	}
	before := term(t, n3, g)
	high := before + 100

	for _, tc := range []struct {
		name     string
		from     NodeID
		msg      *raftpb.Message
		reason   string
		stepping bool
	}{
		{"old replica id", 1, heartbeatAt(testReplica(g, 1), self-1, high), dropStaleReplica, false},
		{"From is another node's replica", 1, heartbeatAt(testReplica(g, 2), self, high), dropWrongSender, false},
		{"From unknown", 1, heartbeatAt(99, self, high), dropUnknownSender, false},
	} {
		was := dropped(t, n3, tc.reason)
		n3.host.HandleMessages(tc.from, []GroupMessage{{Group: g, Message: tc.msg}})
		if got := dropped(t, n3, tc.reason); got != was+1 {
			t.Errorf("%s: dropped{reason=%q} went %v -> %v, want +1", tc.name, tc.reason, was, got)
		}
		if got := term(t, n3, g); got != before && got < high {
			// An election may have raised the term a little meanwhile; the
			// dropped message's term must never show.
			before = got
		} else if got >= high {
			t.Fatalf("%s: the dropped message was stepped (term %d)", tc.name, got)
		}
	}

	// A snapshot is checked the same way before any of it is read.
	snap := &raftpb.Message{
		Type: raftpb.MsgSnap.Enum(), From: proto.Uint64(uint64(testReplica(g, 2))), To: proto.Uint64(uint64(self)), Term: proto.Uint64(high),
		Snapshot: &raftpb.Snapshot{Metadata: &raftpb.SnapshotMetadata{Index: proto.Uint64(1 << 40), Term: proto.Uint64(high)}},
	}
	was := dropped(t, n3, dropWrongSender)
	err = n3.host.HandleSnapshot(context.Background(), 1, SnapshotHeader{Group: g, Message: snap}, bytes.NewReader(nil))
	if err == nil || !strings.Contains(err.Error(), dropWrongSender) || dropped(t, n3, dropWrongSender) != was+1 {
		t.Fatalf("snapshot from n2's replica on n1's stream: %v (dropped %v -> %v)", err, was, dropped(t, n3, dropWrongSender))
	}

	// Control: the same message, correctly addressed, is stepped.
	n3.host.HandleMessages(1, []GroupMessage{{Group: g, Message: heartbeatAt(testReplica(g, 1), self, high)}})
	waitUntil(t, "n3 steps the well-addressed heartbeat", 10*time.Second, func() error {
		if got := term(t, n3, g); got < high {
			return errNotYet("term %d", got)
		}
		return nil
	})
}

// A removed group leaves a tombstone: messages to the removed replica id do
// not recreate it (also after a restart), CreateGroup with a replica id
// below the tombstone is refused, and the group's raft state is gone.
func TestTombstoneBlocksOldReplica(t *testing.T) {
	c := newTestCluster(t, 3, 1, nil)
	g := GroupID(1)
	c.makeLeader(c.groups, 1)
	proposeAll(t, c, c.groups, 5, "pre")
	old := testReplica(g, 3)
	if err := c.node(3).host.RemoveGroup(g, old+1); err != nil {
		t.Fatal(err)
	}
	if err := c.node(3).host.RemoveGroup(g, old+1); !errors.Is(err, ErrGroupNotFound) {
		t.Fatalf("second RemoveGroup = %v, want ErrGroupNotFound", err)
	}
	for _, k := range []byte{engine.KindHardState, engine.KindTruncated, engine.KindAppliedState} {
		if _, err := c.node(3).eng.Get(engine.LocalGroupKey(uint64(g), k)); !errors.Is(err, engine.ErrNotFound) {
			t.Fatalf("local key %q of the removed group: %v, want not found", k, err)
		}
	}

	check := func(stage string) {
		t.Helper()
		nd := c.node(3)
		// The leader still has n3's old replica in its configuration and
		// keeps heartbeating it; every heartbeat must be dropped.
		waitUntil(t, stage+": heartbeats to the old replica dropped", 10*time.Second, func() error {
			if n := dropped(t, nd, dropTombstoned); n < 3 {
				return errNotYet("%v dropped as tombstoned", n)
			}
			return nil
		})
		if groups := nd.host.Groups(); len(groups) != 0 {
			t.Fatalf("%s: n3 hosts %v after its group was removed", stage, groups)
		}
		if nd.sm(g) != nil && stage != "before restart" {
			t.Fatalf("%s: a state machine was created for the tombstoned group", stage)
		}
		if ts, err := nd.host.Tombstone(g); err != nil || ts != old+1 {
			t.Fatalf("%s: tombstone %v, %v; want %v", stage, ts, err, old+1)
		}
		err := nd.host.CreateGroup(g, old, c.peers(g), newTestSM(g, nd.eng))
		if !errors.Is(err, ErrTombstoned) {
			t.Fatalf("%s: CreateGroup with the old replica id = %v, want ErrTombstoned", stage, err)
		}
	}
	check("before restart")
	c.restartNode(3)
	check("after restart")

	// A new incarnation (a higher replica id) may be created.
	nd := c.node(3)
	if err := nd.host.CreateGroup(g, old+1, nil, newTestSM(g, nd.eng)); err != nil {
		t.Fatalf("CreateGroup above the tombstone: %v", err)
	}
	if err := nd.host.RemoveGroup(g, 0); err != nil {
		t.Fatal(err)
	}
	if ts, err := nd.host.Tombstone(g); err != nil || ts != old+2 {
		t.Fatalf("tombstone after removing replica %v: %v, %v; want %v (never lowered, at least id+1)", old+1, ts, err, old+2)
	}
}
