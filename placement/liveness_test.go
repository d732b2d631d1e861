package placement

import (
	"net"
	"testing"
	"time"

	"github.com/tesseradb/tessera/proto/tesserapb"
	"github.com/tesseradb/tessera/raftgroup"
	"github.com/tesseradb/tessera/shard"
)

func TestDecideLiveness(t *testing.T) {
	cfg := LivenessConfig{HeartbeatInterval: time.Second, SuspectTimeout: 3 * time.Second, DeadNodeTimeout: 10 * time.Second}
	t0 := time.Unix(1000, 0)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	var never time.Time
	for _, c := range []struct {
		name      string
		now, last time.Time
		since     time.Time
		gossip    string
		want      string
	}{
		{"fresh heartbeat, gossip alive", at(20), at(19), t0, GossipAlive, Live},
		{"fresh heartbeat, gossip unknown", at(20), at(19), t0, GossipUnknown, Live},
		{"fresh heartbeat, gossip suspects", at(20), at(19), t0, GossipSuspect, Suspect},
		{"fresh heartbeat, gossip says dead", at(20), at(19), t0, GossipDead, Suspect},
		{"heartbeat 4 s old", at(20), at(16), t0, GossipAlive, Suspect},
		{"heartbeat 9 s old", at(20), at(11), t0, GossipDead, Suspect},
		{"heartbeat 10 s old", at(20), at(10), t0, GossipAlive, Dead},
		{"no heartbeat yet, leader new", at(5), never, t0, GossipAlive, Suspect},
		{"no heartbeat since the leader started 10 s ago", at(10), never, t0, GossipAlive, Dead},
		{"old heartbeat, leader started recently", at(100), at(1), at(95), GossipDead, Suspect},
	} {
		if got := DecideLiveness(cfg, c.now, c.last, c.since, c.gossip); got != c.want {
			t.Errorf("%s: %s, want %s", c.name, got, c.want)
		}
	}
}

// TestLivenessSnapshot: the cluster snapshot counts replicas from the
// directory, leaders and bytes from heartbeats, and a silent node turns
// suspect, then dead.
func TestLivenessSnapshot(t *testing.T) {
	now := time.Unix(1000, 0)
	clock := func() time.Time { return now }
	cfg := LivenessConfig{HeartbeatInterval: time.Second, SuspectTimeout: 3 * time.Second, DeadNodeTimeout: 10 * time.Second}
	l := NewLiveness(cfg, func() map[raftgroup.NodeID]string { return map[raftgroup.NodeID]string{1: GossipAlive, 2: GossipAlive} }, clock)
	reps, next := shard.NewReplicas([]raftgroup.NodeID{1, 2, 3}, 1)
	r2 := &tesserapb.RangeDescriptor{RangeId: 2, Replicas: reps, NextReplicaId: next, Generation: 1}
	table := []*tesserapb.NodeRecord{{NodeId: 1}, {NodeId: 2}, {NodeId: 3}, {NodeId: 4, State: tesserapb.NodeRecord_REMOVED}}
	l.Heartbeat(&tesserapb.NodeHeartbeat{NodeId: 1, Ranges: []*tesserapb.RangeLoad{{RangeId: 2, SizeBytes: 100, Qps: 5, IsLeader: true}}})
	l.Heartbeat(&tesserapb.NodeHeartbeat{NodeId: 2, Ranges: []*tesserapb.RangeLoad{{RangeId: 2, SizeBytes: 90}}})
	now = now.Add(4 * time.Second)
	l.Heartbeat(&tesserapb.NodeHeartbeat{NodeId: 1, Ranges: []*tesserapb.RangeLoad{{RangeId: 2, SizeBytes: 100, Qps: 5, IsLeader: true}}})
	s := l.Snapshot(table, []*tesserapb.RangeDescriptor{r2})
	if len(s.Nodes) != 3 || len(s.Ranges) != 1 {
		t.Fatalf("snapshot: %+v", s)
	}
	want := []struct {
		live              string
		replicas, leaders int
		bytes             uint64
	}{{Live, 1, 1, 100}, {Suspect, 1, 0, 90}, {Suspect, 1, 0, 0}}
	for i, w := range want {
		n := s.Nodes[i]
		if n.Liveness != w.live || n.Replicas != w.replicas || n.Leaders != w.leaders || n.Bytes != w.bytes {
			t.Errorf("node %d: %+v, want %+v", i+1, n, w)
		}
	}
	if r := s.Ranges[0]; r.Leader != 1 || r.SizeBytes != 100 || r.QPS != 5 {
		t.Errorf("range: %+v", r)
	}
	now = now.Add(7 * time.Second)
	s = l.Snapshot(table, []*tesserapb.RangeDescriptor{r2})
	if s.Nodes[1].Liveness != Dead || s.Nodes[2].Liveness != Dead || s.Nodes[0].Liveness != Suspect {
		t.Errorf("after 11 s: %s %s %s, want suspect dead dead", s.Nodes[0].Liveness, s.Nodes[1].Liveness, s.Nodes[2].Liveness)
	}
	l.Reset()
	if s = l.Snapshot(table, nil); s.Nodes[1].Liveness != Suspect {
		t.Errorf("after a leader change: %s, want suspect (a new leader waits a full timeout)", s.Nodes[1].Liveness)
	}
}

// TestGossipHostName: a host name is resolved to the IP memberlist binds.
func TestGossipHostName(t *testing.T) {
	addr := freeUDPTCPAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	g, err := StartGossip(GossipConfig{Addr: "localhost:" + port, Self: &tesserapb.NodeDescriptor{NodeId: 1}})
	if err != nil {
		t.Fatal(err)
	}
	_ = g.Close()
	if _, err := StartGossip(GossipConfig{Addr: "no-such-host.invalid:" + port, Self: &tesserapb.NodeDescriptor{NodeId: 1}}); err == nil {
		t.Fatal("an unresolvable gossip host was accepted")
	}
}

// TestGossip: two memberlists on loopback find each other; one that
// leaves is reported gone (dead).
func TestGossip(t *testing.T) {
	a, err := StartGossip(GossipConfig{Addr: "127.0.0.1:0", Self: &tesserapb.NodeDescriptor{NodeId: 1}})
	if err == nil {
		a.Close()
	}
	// Port 0 is not usable for a gossip address others dial: pick free ones.
	addrA, addrB := freeUDPTCPAddr(t), freeUDPTCPAddr(t)
	if a, err = StartGossip(GossipConfig{Addr: addrA, Self: &tesserapb.NodeDescriptor{NodeId: 1}}); err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := StartGossip(GossipConfig{Addr: addrB, Self: &tesserapb.NodeDescriptor{NodeId: 2}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Join([]string{addrA}); err != nil {
		t.Fatal(err)
	}
	waitGossip(t, a, 2, GossipAlive)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	waitGossip(t, a, 2, GossipDead)
}

func waitGossip(t *testing.T, g *Gossip, id raftgroup.NodeID, want string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for g.States()[id] != want {
		if time.Now().After(deadline) {
			t.Fatalf("gossip state of %s: %q, want %q", id, g.States()[id], want)
		}
		time.Sleep(20 * time.Millisecond) // poll interval
	}
}

func freeUDPTCPAddr(t *testing.T) string {
	t.Helper()
	a, err := FreeGossipAddr()
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestSnapshotForScheduler: the snapshot converts to the scheduler's model
// (liveness, draining, the meta range, leader and size).
func TestSnapshotForScheduler(t *testing.T) {
	now := time.Unix(1000, 0)
	l := NewLiveness(LivenessConfig{HeartbeatInterval: time.Second, SuspectTimeout: 3 * time.Second, DeadNodeTimeout: 10 * time.Second}, nil, func() time.Time { return now })
	reps, next := shard.NewReplicas([]raftgroup.NodeID{1, 2}, 1)
	meta := &tesserapb.RangeDescriptor{RangeId: MetaRangeID, Replicas: reps, NextReplicaId: next, Generation: 1}
	l.Heartbeat(&tesserapb.NodeHeartbeat{NodeId: 1, Ranges: []*tesserapb.RangeLoad{{RangeId: MetaRangeID, SizeBytes: 10, IsLeader: true}}})
	l.Heartbeat(&tesserapb.NodeHeartbeat{NodeId: 2})
	table := []*tesserapb.NodeRecord{{NodeId: 1}, {NodeId: 2, State: tesserapb.NodeRecord_DRAINING}}
	s, err := l.Snapshot(table, []*tesserapb.RangeDescriptor{meta}).Scheduler()
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Nodes) != 2 || s.Nodes[0].Liveness.String() != "live" || s.Nodes[1].Liveness.String() != "draining" {
		t.Fatalf("nodes: %+v", s.Nodes)
	}
	if len(s.Ranges) != 1 || !s.Ranges[0].Meta || s.Ranges[0].Leader != 1 || s.Ranges[0].SizeBytes != 10 || len(s.Ranges[0].Replicas) != 2 {
		t.Fatalf("ranges: %+v", s.Ranges)
	}
}
