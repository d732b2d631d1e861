package placement

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/tesseradb/tessera/engine"
	"github.com/tesseradb/tessera/proto/tesserapb"
	"github.com/tesseradb/tessera/raftgroup"
	"github.com/tesseradb/tessera/shard"
)

// TestTSODeposedLeaderServesNothing: a meta leader cut off from the others
// keeps believing it leads until CheckQuorum (an election timeout) makes it
// step down; meanwhile the others elect a leader whose timestamps are above
// the old leader's whole window. The old leader must not hand out a
// timestamp in that time: one below timestamps that the new leader already
// gave to acknowledged writes would let a read called after such a write
// miss it (found by tests/robustness, partition scenario; the history is
// tests/robustness/testdata/partition-stale-tso-leader.json).
//
// Node 1 has a long election timeout (it steps down only after 10 s), nodes
// 2 and 3 a short one (they elect within a fraction of a second), so the
// window in which node 1 is a deposed leader that does not know it is
// deterministic.
func TestTSODeposedLeaderServesNothing(t *testing.T) {
	var cut atomic.Bool // node 1 is partitioned
	nodes := startMetaCluster(t, 3, func(id raftgroup.NodeID, cfg *raftgroup.Config) {
		cfg.TickInterval = 10 * time.Millisecond
		cfg.ElectionTicks = 20
		if id == 1 {
			cfg.ElectionTicks = 1000
			cfg.Transport.Knobs = &raftgroup.TransportKnobs{
				DropMessage: func(_, _ raftgroup.NodeID, _ raftgroup.GroupMessage) bool { return cut.Load() },
			}
		}
	})
	if err := nodes[0].host.Campaign(MetaRangeID); err != nil {
		t.Fatal(err)
	}
	old := allocate(t, nodes[0].meta.TSO(), 1)

	cut.Store(true)
	var newer engine.Revision
	deadline := time.Now().Add(10 * time.Second)
	for newer == 0 {
		for _, n := range nodes[1:] {
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			if ts, err := n.meta.TSO().Allocate(ctx, 1); err == nil {
				newer = ts
			}
			cancel()
		}
		if time.Now().After(deadline) {
			t.Fatal("nodes 2 and 3 elected no TSO leader")
		}
	}
	if newer <= old {
		t.Fatalf("new leader's timestamp %d not above the old leader's %d", newer, old)
	}
	if serving, _ := nodes[0].meta.TSO().Serving(); !serving {
		t.Fatal("node 1 stepped down already: the test cannot show a deposed leader")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if ts, err := nodes[0].meta.TSO().Allocate(ctx, 1); err == nil {
		t.Fatalf("deposed leader handed out timestamp %d after the new leader handed out %d", ts, newer)
	}
}

// startMetaCluster starts n nodes of one meta group on real engines, hosts
// and gRPC transports; tune adjusts each node's raft config. Everything
// stops when the test ends.
func startMetaCluster(t *testing.T, n int, tune func(raftgroup.NodeID, *raftgroup.Config)) []*metaNode {
	t.Helper()
	var lis []net.Listener
	var descs []*tesserapb.NodeDescriptor
	var voters []raftgroup.NodeID
	for i := range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lis = append(lis, l)
		id := raftgroup.NodeID(i + 1)
		voters = append(voters, id)
		descs = append(descs, &tesserapb.NodeDescriptor{NodeId: uint64(id), Name: fmt.Sprintf("n%d", id), PeerUrl: "http://" + l.Addr().String()})
	}
	layout, err := InitialLayout(descs, nil)
	if err != nil {
		t.Fatal(err)
	}
	var nodes []*metaNode
	for i := range n {
		id := raftgroup.NodeID(i + 1)
		dir := t.TempDir()
		ecfg := engine.DefaultConfig(filepath.Join(dir, "engine"))
		ecfg.Registerer = prometheus.NewRegistry()
		eng, err := engine.Open(ecfg)
		if err != nil {
			t.Fatal(err)
		}
		cfg := raftgroup.DefaultConfig()
		cfg.NodeID = id
		cfg.Engine = eng
		cfg.SnapshotDir = filepath.Join(dir, "snap")
		cfg.Transport.Resolve = func(to raftgroup.NodeID) (string, error) { return lis[to-1].Addr().String(), nil }
		cfg.Transport.DialOptions = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
		tune(id, &cfg)
		host, err := raftgroup.NewHost(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := WriteMetaInitialState(eng, layout); err != nil {
			t.Fatal(err)
		}
		if err := host.Bootstrap(MetaRangeID, shard.RaftVoters(layout.GetMeta())); err != nil {
			t.Fatal(err)
		}
		meta, err := NewMeta(id, eng, host, TSOConfig{Window: 2 * time.Second}, nil)
		if err != nil {
			t.Fatal(err)
		}
		self := raftgroup.ReplicaID(shard.ReplicaOn(layout.GetMeta(), id).GetReplicaId())
		if err := host.CreateGroup(MetaRangeID, self, shard.RaftPeers(layout.GetMeta()), meta); err != nil {
			t.Fatal(err)
		}
		srv := grpc.NewServer()
		host.RegisterService(srv)
		go func() { _ = srv.Serve(lis[i]) }()
		host.Start()
		mn := &metaNode{eng: eng, host: host, meta: meta, srv: srv}
		t.Cleanup(func() { mn.stop(t) })
		nodes = append(nodes, mn)
	}
	return nodes
}
