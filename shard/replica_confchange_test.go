package shard

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/tesseradb/tessera/engine"
	"github.com/tesseradb/tessera/proto/tesserapb"
	"github.com/tesseradb/tessera/raftgroup"
)

// TestApplyConfChangeToDescriptor: the descriptor every replica derives
// from a conf change: learners added with the node from the hint and a
// fresh id, promotion and demotion in place, removal, generation + 1 for
// each change, next_replica_id past every added id.
func TestApplyConfChangeToDescriptor(t *testing.T) {
	reps, next := NewReplicas([]raftgroup.NodeID{1, 2, 3}, 1)
	d := &tesserapb.RangeDescriptor{RangeId: 7, Replicas: reps, NextReplicaId: next, Generation: 4}
	type step struct {
		change  ReplicaChange
		want    string // node:replica:type, in descriptor order
		wantErr bool
	}
	steps := []step{
		{change: ReplicaChange{RemoveLearner: 2}, wantErr: true}, // a voter is demoted first
		{change: ReplicaChange{Promote: 4}, wantErr: true},       // no learner on 4
		{change: ReplicaChange{AddLearner: 3}, wantErr: true},    // 3 holds one
		{change: ReplicaChange{AddLearner: 4}, want: "1:1:V 2:2:V 3:3:V 4:4:L"},
		{change: ReplicaChange{Promote: 4, Demote: 2}, want: "1:1:V 2:2:L 3:3:V 4:4:V"},
		{change: ReplicaChange{LeaveJoint: true}, want: "1:1:V 2:2:L 3:3:V 4:4:V"},
		{change: ReplicaChange{RemoveLearner: 2}, want: "1:1:V 3:3:V 4:4:V"},
		{change: ReplicaChange{AddLearner: 2}, want: "1:1:V 3:3:V 4:4:V 2:5:L"}, // back with a new id
	}
	gen := d.GetGeneration()
	for i, s := range steps {
		cc, want, err := buildConfChange(d, s.change)
		if s.wantErr {
			if err == nil {
				t.Fatalf("step %d %+v: no error", i, s.change)
			}
			continue
		}
		if err != nil {
			t.Fatalf("step %d %+v: %v", i, s.change, err)
		}
		// Apply derives the descriptor from the entry alone (the hint
		// decoded from its context), as every replica does.
		hint := &tesserapb.RangeDescriptor{}
		if err := proto.Unmarshal(cc.GetContext(), hint); err != nil {
			t.Fatal(err)
		}
		got, err := ApplyConfChangeToDescriptor(d, cc, hint)
		if err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(got, want) {
			t.Fatalf("step %d: apply %v, proposer expected %v", i, got, want)
		}
		gen++
		if got.GetGeneration() != gen {
			t.Fatalf("step %d: generation %d, want %d", i, got.GetGeneration(), gen)
		}
		if s := replicasString(got); s != steps[i].want {
			t.Fatalf("step %d: replicas %q, want %q", i, s, steps[i].want)
		}
		if s.change.Promote != 0 && cc.GetTransition() != raftpb.ConfChangeTransitionJointExplicit {
			t.Fatalf("step %d: promotion does not enter a joint configuration explicitly", i)
		}
		d = got
	}
	if d.GetNextReplicaId() != 6 {
		t.Fatalf("next_replica_id %d, want 6", d.GetNextReplicaId())
	}
}

func replicasString(d *tesserapb.RangeDescriptor) string {
	var out []string
	for _, r := range d.GetReplicas() {
		typ := "V"
		if r.GetType() == tesserapb.ReplicaType_LEARNER {
			typ = "L"
		}
		out = append(out, fmt.Sprintf("%d:%d:%s", r.GetNodeId(), r.GetReplicaId(), typ))
	}
	return fmt.Sprint(out)[1 : len(fmt.Sprint(out))-1]
}

// moveCluster is n nodes, each an engine, a raft host on a loopback gRPC
// server and a Store; range 2 starts on nodes 1..3.
type moveCluster struct {
	t     *testing.T
	clock *counterClock
	mu    sync.Mutex
	addrs map[raftgroup.NodeID]string
	nodes map[raftgroup.NodeID]*moveNode
}

type moveNode struct {
	id     raftgroup.NodeID
	eng    *engine.Engine
	host   *raftgroup.Host
	store  *Store
	server *grpc.Server
}

func newMoveCluster(t *testing.T, n int, desc *tesserapb.RangeDescriptor) *moveCluster {
	c := &moveCluster{t: t, clock: &counterClock{}, addrs: map[raftgroup.NodeID]string{}, nodes: map[raftgroup.NodeID]*moveNode{}}
	c.clock.next.Store(int64(baseRev))
	for i := 1; i <= n; i++ {
		id := raftgroup.NodeID(i)
		var boot *tesserapb.RangeDescriptor
		if HasReplicaOn(desc, id) {
			boot = desc
		}
		c.start(id, boot)
	}
	return c
}

func (c *moveCluster) start(id raftgroup.NodeID, bootstrap *tesserapb.RangeDescriptor) {
	t := c.t
	dir := t.TempDir()
	ecfg := engine.DefaultConfig(filepath.Join(dir, "engine"))
	ecfg.Registerer = prometheus.NewRegistry()
	eng, err := engine.Open(ecfg)
	if err != nil {
		t.Fatal(err)
	}
	if bootstrap != nil {
		if err := BootstrapRange(eng, bootstrap); err != nil {
			t.Fatal(err)
		}
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	c.addrs[id] = lis.Addr().String()
	c.mu.Unlock()
	n := &moveNode{id: id, eng: eng}
	hcfg := raftgroup.DefaultConfig()
	hcfg.NodeID = id
	hcfg.Engine = eng
	hcfg.SnapshotDir = filepath.Join(dir, "snapshots")
	hcfg.TickInterval = 10 * time.Millisecond
	hcfg.Registerer = prometheus.NewRegistry()
	hcfg.Transport.Resolve = func(p raftgroup.NodeID) (string, error) {
		c.mu.Lock()
		defer c.mu.Unlock()
		if a, ok := c.addrs[p]; ok {
			return a, nil
		}
		return "", fmt.Errorf("unknown node %s", p)
	}
	hcfg.Transport.DialOptions = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	hcfg.Transport.ReconnectBackoffMin = 10 * time.Millisecond
	hcfg.Transport.ReconnectBackoffMax = 200 * time.Millisecond
	hcfg.NewReplica = func(g raftgroup.GroupID, self raftgroup.ReplicaID) (raftgroup.StateMachine, bool) {
		return n.store.NewReplica(g, self)
	}
	hcfg.Knobs = &raftgroup.TestingKnobs{OnStorageFailure: func(err error) { t.Errorf("storage failure on %s: %v", id, err) }}
	if n.host, err = raftgroup.NewHost(hcfg); err != nil {
		t.Fatal(err)
	}
	if n.store, err = NewStore(StoreConfig{Engine: eng, Host: n.host, Replica: Config{NodeID: id, Clock: c.clock}}); err != nil {
		t.Fatal(err)
	}
	if err := n.store.Start(); err != nil {
		t.Fatal(err)
	}
	n.server = grpc.NewServer()
	n.host.RegisterService(n.server)
	go func() { _ = n.server.Serve(lis) }()
	n.host.Start()
	c.mu.Lock()
	c.nodes[id] = n
	c.mu.Unlock()
	t.Cleanup(func() {
		n.server.Stop()
		_ = n.host.Close()
		n.store.Close()
		_ = n.eng.Close()
	})
}

func (c *moveCluster) node(id raftgroup.NodeID) *moveNode {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[id]
}

// leader waits for a replica of range id that leads it.
func (c *moveCluster) leader(ctx context.Context, id uint64) (*moveNode, *Replica) {
	c.t.Helper()
	for {
		for i := raftgroup.NodeID(1); c.node(i) != nil; i++ {
			if r := c.node(i).store.Replica(id); r != nil && r.IsLeader() {
				return c.node(i), r
			}
		}
		select {
		case <-ctx.Done():
			c.t.Fatalf("range %d: no leader", id)
		case <-time.After(5 * time.Millisecond): // polling with a deadline
		}
	}
}

// change applies one replica change through whichever replica leads.
func (c *moveCluster) change(ctx context.Context, id uint64, ch ReplicaChange) *tesserapb.RangeDescriptor {
	c.t.Helper()
	for {
		_, l := c.leader(ctx, id)
		d, err := l.ChangeReplicas(ctx, ch)
		if err == nil {
			return d
		}
		var re *RoutingError
		var nl *raftgroup.NotLeaderError
		if !(errors.As(err, &re) || errors.As(err, &nl)) || ctx.Err() != nil {
			c.t.Fatalf("change %+v: %v", ch, err)
		}
	}
}

// waitFor polls cond until it returns nil or the deadline passes.
func waitFor(t *testing.T, ctx context.Context, what string, cond func() error) {
	t.Helper()
	var err error
	for {
		if err = cond(); err == nil {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: %v", what, err)
		case <-time.After(10 * time.Millisecond): // polling with a deadline
		}
	}
}

// TestReplicaMove moves range 2's replica from node 2 to node 4 through
// the four conf changes and checks, after each, every replica's
// descriptor (replicas, generation) and raft peer map; then that the
// removed replica is destroyed with a tombstone, that node 4's replica
// holds the data written before and during the move, and that the three
// remaining replicas' hashes are equal.
func TestReplicaMove(t *testing.T) {
	reps, next := NewReplicas([]raftgroup.NodeID{1, 2, 3}, 1)
	desc := &tesserapb.RangeDescriptor{RangeId: 2, Replicas: reps, NextReplicaId: next, Generation: 1}
	c := newMoveCluster(t, 4, desc)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()

	write := func(k string) {
		t.Helper()
		for {
			_, l := c.leader(ctx, 2)
			_, _, err := l.Write(ctx, 0, putOp(k, "v-"+k), 0)
			if err == nil {
				return
			}
			if ctx.Err() != nil {
				t.Fatalf("write %s: %v", k, err)
			}
		}
	}
	for i := range 20 {
		write(fmt.Sprintf("a%02d", i))
	}
	// check waits until every replica in want applied generation gen and
	// its raft host maps want's voters and learners to their nodes.
	check := func(gen uint64, want string, voters, learners []raftgroup.NodeID) {
		t.Helper()
		slices.Sort(voters)
		slices.Sort(learners)
		waitFor(t, ctx, fmt.Sprintf("generation %d %s", gen, want), func() error {
			for _, n := range append(slices.Clone(voters), learners...) {
				r := c.node(n).store.Replica(2)
				if r == nil {
					return fmt.Errorf("n%d has no replica", n)
				}
				d := r.Descriptor()
				if d.GetGeneration() != gen || replicasString(d) != want {
					return fmt.Errorf("n%d: generation %d replicas %s", n, d.GetGeneration(), replicasString(d))
				}
				st, err := c.node(n).host.Status(2)
				if err != nil {
					return err
				}
				v, l := slices.Sorted(slices.Values(st.Voters)), slices.Sorted(slices.Values(st.Learners))
				if !slices.Equal(v, voters) || !slices.Equal(l, learners) {
					return fmt.Errorf("n%d: raft voters %v learners %v", n, v, l)
				}
			}
			return nil
		})
	}
	c.change(ctx, 2, ReplicaChange{AddLearner: 4})
	check(2, "1:1:V 2:2:V 3:3:V 4:4:L", []raftgroup.NodeID{1, 2, 3}, []raftgroup.NodeID{4})
	write("b00")
	// The leader must not be demoted: move leadership off node 2.
	if ln, _ := c.leader(ctx, 2); ln.id == 2 {
		if err := ln.host.TransferLeader(2, 1); err != nil {
			t.Fatal(err)
		}
		waitFor(t, ctx, "leadership off n2", func() error {
			if ln, _ := c.leader(ctx, 2); ln.id == 2 {
				return errors.New("n2 leads")
			}
			return nil
		})
	}
	c.change(ctx, 2, ReplicaChange{Promote: 4, Demote: 2})
	waitFor(t, ctx, "joint", func() error {
		ln, _ := c.leader(ctx, 2)
		if st, _ := ln.host.Status(2); !st.Joint {
			return errors.New("not joint")
		}
		return nil
	})
	if _, l := c.leader(ctx, 2); l != nil {
		if _, err := l.ChangeReplicas(ctx, ReplicaChange{AddLearner: 5}); !errors.Is(err, ErrChangeInProgress) {
			t.Fatalf("a change other than leaving the joint configuration: %v, want ErrChangeInProgress", err)
		}
	}
	write("c00")
	c.change(ctx, 2, ReplicaChange{LeaveJoint: true})
	check(4, "1:1:V 2:2:L 3:3:V 4:4:V", []raftgroup.NodeID{1, 3, 4}, []raftgroup.NodeID{2})
	c.change(ctx, 2, ReplicaChange{RemoveLearner: 2})
	check(5, "1:1:V 3:3:V 4:4:V", []raftgroup.NodeID{1, 3, 4}, nil)
	write("d00")

	// The removed replica learns of its removal by applying it or, when
	// the leader stopped talking to it first, by GC with the leader's
	// descriptor.
	_, l := c.leader(ctx, 2)
	n2 := c.node(2)
	if _, err := n2.store.GCReplica(2, l.Descriptor()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "n2's replica destroyed", func() error {
		if n2.store.Replica(2) != nil {
			return errors.New("n2 still lists the replica")
		}
		ts, err := n2.host.Tombstone(2)
		if err != nil {
			return err
		}
		if ts < 3 {
			return fmt.Errorf("tombstone %d, want >= 3 (above replica 2)", ts)
		}
		if d, err := ReadDescriptor(n2.eng, 2); err != nil || d != nil {
			return fmt.Errorf("descriptor still in n2's engine: %v %v", d, err)
		}
		return nil
	})

	// Node 4 serves the data written before and during the move, and the
	// three replicas' hashes agree at the same applied index.
	waitFor(t, ctx, "hashes equal", func() error {
		var first HashResult
		for i, n := range []raftgroup.NodeID{1, 3, 4} {
			h, err := c.node(n).store.Replica(2).Hash(ctx)
			if err != nil {
				return err
			}
			if i == 0 {
				first = h
				continue
			}
			if h.AppliedIndex != first.AppliedIndex || h.Hash != first.Hash {
				return fmt.Errorf("n%d hash %x@%d, n1 %x@%d", n, h.Hash, h.AppliedIndex, first.Hash, first.AppliedIndex)
			}
		}
		return nil
	})
	rev, err := c.clock.Timestamps(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	// Node 4 leads and serves a linearizable read of every key.
	if ln, _ := c.leader(ctx, 2); ln.id != 4 {
		if err := ln.host.TransferLeader(2, 4); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	waitFor(t, ctx, "n4 reads every key", func() error {
		r4 := c.node(4).store.Replica(2)
		if !r4.IsLeader() {
			return errors.New("n4 does not lead yet")
		}
		resp, _, err := r4.Read(ctx, 0, rangeOp("a", "\x00"), rev, false)
		if err != nil {
			return err
		}
		got = keysOf(resp.GetResponseRange().GetKvs())
		if len(got) != 23 {
			return fmt.Errorf("%d keys", len(got))
		}
		return nil
	})
}
