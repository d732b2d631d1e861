package raftgroup

import (
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

const manyGroups = 120

func TestProposalsCommitOnAllReplicas(t *testing.T) {
	c := newTestCluster(t, 3, manyGroups, nil)
	c.campaignSpread(3)
	leaders := c.waitLeaders(c.groups)
	perNode := map[NodeID]int{}
	for _, l := range leaders {
		perNode[l]++
	}
	if len(perNode) < 2 {
		t.Errorf("leaders did not spread: %v", perNode)
	}
	proposeAll(t, c, c.groups, 5, "a")
	c.waitConverged(c.groups, allNodes(3))
	for _, g := range c.groups[:3] {
		if _, n := c.node(1).sm(g).contentHash(t); n < 5 {
			t.Errorf("%s has %d entries, want >= 5", g, n)
		}
	}
	// Batching: rounds persisted several groups at once.
	if v := metricValue(t, c.node(1).reg, "tessera_raft_proposals_total"); v < 1 {
		t.Errorf("no proposals counted on n1")
	}
}

func TestRestartLosesNoCommittedEntry(t *testing.T) {
	c := newTestCluster(t, 3, 20, nil)
	c.campaignSpread(3)
	c.waitLeaders(c.groups)
	proposeAll(t, c, c.groups, 10, "before")
	want := map[GroupID]int{}
	for _, g := range c.groups {
		_, n := c.node(1).sm(g).contentHash(t)
		want[g] = n
	}
	// Restart every node: each reloads its log and applied state from disk.
	for _, id := range allNodes(3) {
		c.restartNode(id)
	}
	c.waitLeaders(c.groups)
	for _, g := range c.groups {
		for _, id := range allNodes(3) {
			if _, n := c.node(id).sm(g).contentHash(t); n < want[g] {
				// Applied state is reloaded, so data applied before the
				// restart is present before any new proposal.
				if n < 10 {
					t.Errorf("%s on %s: %d entries after restart, want >= 10", g, id, n)
				}
			}
		}
	}
	proposeAll(t, c, c.groups, 3, "after")
	c.waitConverged(c.groups, allNodes(3))
	for _, g := range c.groups {
		if _, n := c.node(2).sm(g).contentHash(t); n < want[g]+3 {
			t.Errorf("%s: %d entries, want >= %d", g, n, want[g]+3)
		}
	}
}

func TestLaggingReplicaCatchesUpBySnapshot(t *testing.T) {
	c := newTestCluster(t, 3, 10, func(cfg *Config) {
		cfg.LogTruncateThreshold = 40
		cfg.LogKeepEntries = 5
	})
	c.campaignSpread(2) // leaders on n1 and n2 only
	c.waitLeaders(c.groups)
	dir := c.node(3).dir
	c.stopNode(3)
	proposeAll(t, c, c.groups, 80, "missed")
	// The leaders truncated past what n3 has.
	if v := metricValue(t, c.node(1).reg, "tessera_raft_log_truncations_total") + metricValue(t, c.node(2).reg, "tessera_raft_log_truncations_total"); v == 0 {
		t.Fatal("no log truncation happened; the test would not exercise snapshots")
	}
	n3 := c.startNode(3, dir, nil)
	c.waitConverged(c.groups, allNodes(3))
	if v := metricValue(t, n3.reg, "tessera_raft_snapshots_applied_total"); v < float64(len(c.groups)) {
		t.Errorf("n3 applied %v snapshots, want >= %d", v, len(c.groups))
	}
	if v := metricValue(t, c.node(1).reg, "tessera_raft_snapshots_sent_total") + metricValue(t, c.node(2).reg, "tessera_raft_snapshots_sent_total"); v == 0 {
		t.Error("no snapshot counted as sent")
	}
	// After the snapshot the replica keeps replicating from the log, and a
	// restart of the snapshotted replica keeps its state.
	proposeAll(t, c, c.groups, 3, "after")
	c.waitConverged(c.groups, allNodes(3))
	c.restartNode(3)
	c.waitConverged(c.groups, allNodes(3))
}

func TestPartitionedReplicaRejoins(t *testing.T) {
	c := newTestCluster(t, 3, 30, nil)
	c.campaignSpread(3)
	c.waitLeaders(c.groups)
	c.cut.Store(NodeID(3), true)
	// Groups led by n3 elect a new leader among n1, n2 and keep going.
	proposeAll(t, c, c.groups, 5, "during")
	for _, g := range c.groups {
		if _, n := c.node(3).sm(g).contentHash(t); n >= 5 {
			t.Fatalf("%s: partitioned n3 received %d entries", g, n)
		}
	}
	c.cut.Delete(NodeID(3))
	c.waitConverged(c.groups, allNodes(3))
}

func TestConfChangeThroughLearner(t *testing.T) {
	c := newTestCluster(t, 3, 2, nil)
	g := GroupID(1)
	if err := c.node(1).host.Campaign(g); err != nil {
		t.Fatal(err)
	}
	c.waitLeaders(c.groups)
	proposeAll(t, c, []GroupID{g}, 20, "pre")
	// A fourth node with no state: it creates the replica when the leader
	// contacts it.
	c.startNode(4, t.TempDir(), nil)
	c.addMember(4)

	change := func(ccs ...*raftpb.ConfChangeSingle) {
		t.Helper()
		waitUntil(t, "conf change proposal", 10*time.Second, func() error {
			l, err := c.leader(g)
			if err != nil {
				return err
			}
			return c.node(l).host.ProposeConfChange(g, &raftpb.ConfChangeV2{Changes: ccs})
		})
	}
	voters := func(id NodeID) (map[NodeID]bool, map[NodeID]bool) {
		st, err := c.node(id).host.Status(g)
		if err != nil {
			t.Fatal(err)
		}
		v, l := map[NodeID]bool{}, map[NodeID]bool{}
		for _, x := range st.Voters {
			v[x] = true
		}
		for _, x := range st.Learners {
			l[x] = true
		}
		return v, l
	}
	single := func(typ raftpb.ConfChangeType, id NodeID) *raftpb.ConfChangeSingle {
		return &raftpb.ConfChangeSingle{Type: typ.Enum(), NodeId: proto.Uint64(uint64(testReplica(g, id)))}
	}

	change(single(raftpb.ConfChangeAddLearnerNode, 4))
	waitUntil(t, "learner n4", 20*time.Second, func() error {
		if _, l := voters(1); !l[4] {
			return errNotYet("n4 not a learner")
		}
		if c.node(4).sm(g) == nil || c.node(4).sm(g).appliedIndex() < c.node(1).sm(g).appliedIndex() {
			return errNotYet("n4 not caught up")
		}
		// The new replica knew only itself and its leader; the rest of
		// the map comes with the descriptor in a real store.
		if err := c.node(4).host.SetPeers(g, c.peers(g)); err != nil {
			return err
		}
		return nil
	})
	if st, err := c.node(4).host.Status(g); err != nil || st.IsLeader {
		t.Fatalf("learner status %+v, %v", st, err)
	}

	// Promote: 3 -> 4 voters.
	change(single(raftpb.ConfChangeAddNode, 4))
	waitUntil(t, "4 voters", 20*time.Second, func() error {
		if v, _ := voters(1); len(v) != 4 {
			return errNotYet("voters %v", v)
		}
		return nil
	})
	// 4 -> 3 voters, removing n1 and adding nothing, as a joint change
	// together with a no-op update of n2 (two changes force joint consensus).
	change(single(raftpb.ConfChangeRemoveNode, 1), single(raftpb.ConfChangeUpdateNode, 2))
	waitUntil(t, "3 voters without n1", 20*time.Second, func() error {
		v, _ := voters(4)
		if len(v) != 3 || v[1] || !v[4] {
			return errNotYet("voters on n4: %v", v)
		}
		if l, err := c.leader(g); err != nil || l == 1 {
			return errNotYet("leader %v %v", l, err)
		}
		return nil
	})
	proposeAll(t, c, []GroupID{g}, 5, "post")
	c.waitConverged([]GroupID{g}, []NodeID{2, 3, 4})
}

func TestLeaderTransfer(t *testing.T) {
	c := newTestCluster(t, 3, 5, nil)
	c.makeLeader(c.groups, 1)
	for _, g := range c.groups {
		to := NodeID(int(g)%2 + 2)
		if err := c.node(1).host.TransferLeader(g, to); err != nil {
			t.Fatal(err)
		}
	}
	waitUntil(t, "leadership moved", 20*time.Second, func() error {
		for _, g := range c.groups {
			want := NodeID(int(g)%2 + 2)
			if l, err := c.leader(g); err != nil || l != want {
				return errNotYet("%s leader %v want %v", g, l, want)
			}
			if l, _ := c.node(1).host.Leader(g); l != want {
				return errNotYet("n1 thinks %s is led by %v", g, l)
			}
		}
		return nil
	})
	if err := c.node(1).host.TransferLeader(1, 3); err == nil {
		t.Error("transfer from a follower succeeded")
	}
	proposeAll(t, c, c.groups, 2, "after")
	c.waitConverged(c.groups, allNodes(3))
}

type notYet string

func (e notYet) Error() string { return string(e) }

func errNotYet(format string, args ...any) error {
	return notYet(sprintf(format, args...))
}
