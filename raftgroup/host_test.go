package raftgroup

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/tesseradb/tessera/engine"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// testSM is a simple state machine: every normal entry with data is stored
// under its own key in the group's data span. Proposals carry an 8-byte id so
// proposers can wait for their entry to apply.
type testSM struct {
	id  GroupID
	eng *engine.Engine

	mu       sync.Mutex
	applied  uint64
	waiters  map[uint64]chan struct{}
	pending  []uint64
	restored int
}

func newTestSM(id GroupID, eng *engine.Engine) *testSM {
	return &testSM{id: id, eng: eng, waiters: make(map[uint64]chan struct{})}
}

func (s *testSM) prefix() string { return fmt.Sprintf("g%05d/", s.id) }

func (s *testSM) DataSpan() engine.Span {
	return engine.DataSpan([]byte(s.prefix()), []byte(fmt.Sprintf("g%05d0", s.id)))
}

func (s *testSM) Apply(b *engine.Batch, ents []*raftpb.Entry) error {
	for _, e := range ents {
		if e.GetType() != raftpb.EntryNormal || len(e.GetData()) < 8 {
			continue
		}
		key := fmt.Sprintf("%s%020d", s.prefix(), e.GetIndex())
		if err := engine.MVCCPut(b, []byte(key), 1, engine.Value{Data: e.GetData()}); err != nil {
			return err
		}
		s.mu.Lock()
		s.pending = append(s.pending, binary.BigEndian.Uint64(e.GetData()))
		s.mu.Unlock()
	}
	return nil
}

func (s *testSM) Applied(index uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.applied = index
	for _, id := range s.pending {
		if ch, ok := s.waiters[id]; ok {
			close(ch)
			delete(s.waiters, id)
		}
	}
	s.pending = s.pending[:0]
}

func (s *testSM) SnapshotApplied(index uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.applied = index
	s.restored++
	return nil
}

func (s *testSM) LeaderChanged(NodeID, uint64, bool) {}

func (s *testSM) wait(id uint64) chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch := make(chan struct{})
	s.waiters[id] = ch
	return ch
}

func (s *testSM) appliedIndex() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.applied
}

// contentHash hashes the group's data as stored in the engine.
func (s *testSM) contentHash(t testing.TB) (string, int) {
	h := sha256.New()
	n := 0
	err := engine.MVCCScan(s.eng, []byte(s.prefix()), []byte(fmt.Sprintf("g%05d0", s.id)), 1<<62, engine.ScanOptions{}, func(kv engine.KeyValue) bool {
		h.Write(kv.Key)
		h.Write(kv.Data)
		n++
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", h.Sum(nil)[:8]), n
}

// hostNode is one host with its engine and gRPC server.
type hostNode struct {
	id     NodeID
	dir    string
	addr   string
	eng    *engine.Engine
	host   *Host
	server *grpc.Server
	reg    *prometheus.Registry

	mu  sync.Mutex
	sms map[GroupID]*testSM
}

func (n *hostNode) sm(g GroupID) *testSM {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.sms[g]
}

type testCluster struct {
	t       testing.TB
	cfgMut  func(*Config)
	mu      sync.Mutex
	addrs   map[NodeID]string
	nodes   map[NodeID]*hostNode
	cut     sync.Map // NodeID -> bool: partitioned away
	groups  []GroupID
	members []NodeID // nodes in every group's peer map (guarded by mu)
	nextReq atomic.Uint64
}

// testReplica is node n's replica id in group g: never equal to a node id
// (so every test exercises the replica -> node mapping) and different per
// group.
func testReplica(g GroupID, n NodeID) ReplicaID { return ReplicaID(10*uint64(n) + uint64(g)%10) }

// peers is group g's peer map over the cluster's members.
func (c *testCluster) peers(g GroupID) []Peer {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []Peer
	for _, n := range c.members {
		out = append(out, Peer{Replica: testReplica(g, n), Node: n})
	}
	return out
}

// addMember puts node n into every group's peer map on the running hosts.
func (c *testCluster) addMember(n NodeID) {
	c.mu.Lock()
	c.members = append(c.members, n)
	nodes := make([]*hostNode, 0, len(c.nodes))
	for _, nd := range c.nodes {
		nodes = append(nodes, nd)
	}
	c.mu.Unlock()
	for _, nd := range nodes {
		for _, g := range c.groups {
			_ = nd.host.SetPeers(g, c.peers(g)) // a group not hosted there yet is fine
		}
	}
}

func testConfig() Config {
	cfg := DefaultConfig()
	// Fast clocks keep tests short; 100+ groups on 3 hosts still fit in two
	// cores at this rate.
	cfg.TickInterval = 20 * time.Millisecond
	cfg.ElectionTicks = 10
	cfg.HeartbeatTicks = 2
	cfg.Transport.ReconnectBackoffMin = 10 * time.Millisecond
	cfg.Transport.ReconnectBackoffMax = 200 * time.Millisecond
	return cfg
}

// newTestCluster starts n hosts with groups 1..groups, all on voters 1..n.
func newTestCluster(t testing.TB, n, groups int, cfgMut func(*Config)) *testCluster {
	c := &testCluster{t: t, cfgMut: cfgMut, addrs: map[NodeID]string{}, nodes: map[NodeID]*hostNode{}}
	for i := 1; i <= n; i++ {
		c.members = append(c.members, NodeID(i))
	}
	for g := 1; g <= groups; g++ {
		c.groups = append(c.groups, GroupID(g))
	}
	for _, id := range slices.Clone(c.members) {
		c.startNode(id, filepath.Join(t.TempDir(), id.String()), func(nd *hostNode) {
			for _, g := range c.groups {
				var voters []ReplicaID
				for _, p := range c.peers(g) {
					voters = append(voters, p.Replica)
				}
				if err := nd.host.Bootstrap(g, voters); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
	t.Cleanup(c.stopAll)
	return c
}

// startNode opens (or reopens) a node's engine and host and creates every
// group that has state in the engine, or the cluster's groups after bootstrap.
func (c *testCluster) startNode(id NodeID, dir string, bootstrap func(*hostNode)) *hostNode {
	t := c.t
	reg := prometheus.NewRegistry()
	ecfg := engine.DefaultConfig(filepath.Join(dir, "engine"))
	ecfg.Registerer = reg
	eng, err := engine.Open(ecfg)
	if err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	addr := c.addrs[id]
	c.mu.Unlock()
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	nd := &hostNode{id: id, dir: dir, addr: lis.Addr().String(), eng: eng, reg: reg, sms: map[GroupID]*testSM{}}
	c.mu.Lock()
	c.addrs[id] = nd.addr
	c.nodes[id] = nd
	c.mu.Unlock()

	cfg := testConfig()
	cfg.NodeID = id
	cfg.Engine = eng
	cfg.SnapshotDir = filepath.Join(dir, "snapshots")
	cfg.Registerer = reg
	cfg.Transport.Resolve = func(p NodeID) (string, error) {
		c.mu.Lock()
		defer c.mu.Unlock()
		if a, ok := c.addrs[p]; ok {
			return a, nil
		}
		return "", fmt.Errorf("unknown node %s", p)
	}
	cfg.Transport.DialOptions = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	cfg.Transport.Knobs = &TransportKnobs{DropMessage: func(from, to NodeID, _ GroupMessage) bool {
		_, a := c.cut.Load(from)
		_, b := c.cut.Load(to)
		return a || b
	}}
	cfg.NewReplica = func(g GroupID, _ ReplicaID) (StateMachine, bool) {
		sm := newTestSM(g, eng)
		nd.mu.Lock()
		nd.sms[g] = sm
		nd.mu.Unlock()
		return sm, true
	}
	cfg.Knobs = &TestingKnobs{OnStorageFailure: func(err error) { t.Errorf("storage failure on %s: %v", id, err) }}
	if c.cfgMut != nil {
		c.cfgMut(&cfg)
	}
	h, err := NewHost(cfg)
	if err != nil {
		t.Fatal(err)
	}
	nd.host = h
	if bootstrap != nil {
		bootstrap(nd)
	}
	for _, g := range c.groups {
		if _, err := eng.Get(engine.LocalGroupKey(uint64(g), engine.KindHardState)); err != nil {
			continue // this node holds no replica of g
		}
		sm := newTestSM(g, eng)
		nd.mu.Lock()
		nd.sms[g] = sm
		nd.mu.Unlock()
		if err := h.CreateGroup(g, testReplica(g, id), c.peers(g), sm); err != nil {
			t.Fatal(err)
		}
	}
	nd.server = grpc.NewServer()
	h.RegisterService(nd.server)
	go func() { _ = nd.server.Serve(lis) }()
	h.Start()
	return nd
}

func (c *testCluster) stopNode(id NodeID) {
	c.mu.Lock()
	nd := c.nodes[id]
	delete(c.nodes, id)
	c.mu.Unlock()
	if nd == nil {
		return
	}
	nd.server.Stop()
	if err := nd.host.Close(); err != nil {
		c.t.Errorf("close host %s: %v", id, err)
	}
	if err := nd.eng.Close(); err != nil {
		c.t.Errorf("close engine %s: %v", id, err)
	}
}

func (c *testCluster) restartNode(id NodeID) *hostNode {
	c.mu.Lock()
	dir := c.nodes[id].dir
	c.mu.Unlock()
	c.stopNode(id)
	return c.startNode(id, dir, nil)
}

func (c *testCluster) stopAll() {
	c.mu.Lock()
	var ids []NodeID
	for id := range c.nodes {
		ids = append(ids, id)
	}
	c.mu.Unlock()
	for _, id := range ids {
		c.stopNode(id)
	}
}

func (c *testCluster) node(id NodeID) *hostNode {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[id]
}

// waitFor polls cond until it holds or the deadline passes.
func waitUntil(t testing.TB, what string, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for {
		if err = cond(); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s: %v", timeout, what, err)
		}
		time.Sleep(5 * time.Millisecond) // poll interval, not a wait for a condition
	}
}

// leader returns the node that leads g, as agreed by every live replica that
// knows a leader.
func (c *testCluster) leader(g GroupID) (NodeID, error) {
	c.mu.Lock()
	nodes := make([]*hostNode, 0, len(c.nodes))
	for _, nd := range c.nodes {
		nodes = append(nodes, nd)
	}
	c.mu.Unlock()
	for _, nd := range nodes {
		if _, cut := c.cut.Load(nd.id); cut {
			continue
		}
		st, err := nd.host.Status(g)
		if err != nil {
			continue
		}
		if st.IsLeader {
			return nd.id, nil
		}
	}
	return 0, fmt.Errorf("%s has no leader", g)
}

func (c *testCluster) waitLeaders(groups []GroupID) map[GroupID]NodeID {
	out := map[GroupID]NodeID{}
	waitUntil(c.t, "leaders", 30*time.Second, func() error {
		for _, g := range groups {
			l, err := c.leader(g)
			if err != nil {
				return err
			}
			out[g] = l
		}
		return nil
	})
	return out
}

// makeLeader waits until node id leads each group, asking the current leader
// to transfer leadership (a campaign alone loses to an established leader
// under PreVote and CheckQuorum).
func (c *testCluster) makeLeader(groups []GroupID, id NodeID) {
	c.placeLeaders(groups, func(GroupID) NodeID { return id })
}

func (c *testCluster) placeLeaders(groups []GroupID, target func(GroupID) NodeID) {
	waitUntil(c.t, "leaders in place", 30*time.Second, func() error {
		var errs []error
		for _, g := range groups {
			want := target(g)
			l, err := c.leader(g)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			if l != want {
				_ = c.node(l).host.TransferLeader(g, want)
				errs = append(errs, fmt.Errorf("%s led by %s, want %s", g, l, want))
			}
		}
		return errors.Join(errs...)
	})
}

// campaignSpread places the leader of group g on node (g mod n)+1, so
// leaders spread over the nodes.
func (c *testCluster) campaignSpread(n int) {
	c.placeLeaders(c.groups, func(g GroupID) NodeID { return NodeID(int(g)%n + 1) })
}

// propose proposes one entry on g's current leader and waits until the
// leader applied it, retrying through leader changes.
func (c *testCluster) propose(ctx context.Context, g GroupID, payload string) error {
	id := c.nextReq.Add(1)
	data := binary.BigEndian.AppendUint64(nil, id)
	data = append(data, payload...)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		l, err := c.leader(g)
		if err != nil {
			time.Sleep(5 * time.Millisecond) // poll for an election to finish
			continue
		}
		nd := c.node(l)
		if nd == nil {
			continue
		}
		sm := nd.sm(g)
		ch := sm.wait(id)
		if err := nd.host.Propose(g, data); err != nil {
			if errors.Is(err, ErrNotLeader) || errors.Is(err, ErrStopped) {
				continue
			}
			return err
		}
		select {
		case <-ch:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Second):
			// Lost in a leader change: propose again. The test SM
			// tolerates duplicates (each entry has its own key).
		}
	}
}

// waitConverged waits until every live replica of each group has the same
// applied index and content as the group's leader.
func (c *testCluster) waitConverged(groups []GroupID, ids []NodeID) {
	waitUntil(c.t, "replicas to converge", 60*time.Second, func() error {
		for _, g := range groups {
			var want string
			var wantN int
			var wantIdx uint64
			for i, id := range ids {
				nd := c.node(id)
				sm := nd.sm(g)
				if sm == nil {
					return fmt.Errorf("%s has no replica of %s", id, g)
				}
				h, n := sm.contentHash(c.t)
				st, err := nd.host.Status(g)
				if err != nil {
					return err
				}
				idx := st.Applied
				if i == 0 {
					want, wantN, wantIdx = h, n, idx
					continue
				}
				if h != want || idx != wantIdx {
					return fmt.Errorf("%s on %s: %d entries applied to %d (hash %s); on %s: %d applied to %d (hash %s)",
						g, id, n, idx, h, ids[0], wantN, wantIdx, want)
				}
			}
		}
		return nil
	})
}

func metricValue(t testing.TB, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			var sum float64
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
			return sum
		}
	}
	return 0
}

func proposeAll(t testing.TB, c *testCluster, groups []GroupID, perGroup int, tag string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, len(groups))
	for _, g := range groups {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < perGroup; i++ {
				if err := c.propose(ctx, g, fmt.Sprintf("%s-%d", tag, i)); err != nil {
					errs <- fmt.Errorf("%s: %w", g, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func allNodes(n int) []NodeID {
	var ids []NodeID
	for i := 1; i <= n; i++ {
		ids = append(ids, NodeID(i))
	}
	return ids
}

func sprintf(format string, args ...any) string { return fmt.Sprintf(format, args...) }
