package placement

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	"github.com/tesseradb/tessera/engine"
	"github.com/tesseradb/tessera/proto/tesserapb"
	"github.com/tesseradb/tessera/raftgroup"
)

// metaNode is a one-node meta group on a real engine and raft host.
type metaNode struct {
	eng  *engine.Engine
	host *raftgroup.Host
	meta *Meta
	srv  *grpc.Server
}

func startMeta(t testing.TB, dir string, now func() time.Time, bootstrap bool) *metaNode {
	t.Helper()
	ecfg := engine.DefaultConfig(filepath.Join(dir, "engine"))
	ecfg.Registerer = prometheus.NewRegistry()
	eng, err := engine.Open(ecfg)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := raftgroup.DefaultConfig()
	cfg.NodeID = 1
	cfg.Engine = eng
	cfg.SnapshotDir = filepath.Join(dir, "snap")
	cfg.TickInterval = 10 * time.Millisecond
	cfg.Transport.Resolve = func(raftgroup.NodeID) (string, error) { return lis.Addr().String(), nil }
	host, err := raftgroup.NewHost(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if bootstrap {
		layout, err := InitialLayout([]*tesserapb.NodeDescriptor{{NodeId: 1, Name: "n1", PeerUrl: "http://" + lis.Addr().String()}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := WriteMetaInitialState(eng, layout); err != nil {
			t.Fatal(err)
		}
		if err := host.Bootstrap(MetaRangeID, []raftgroup.ReplicaID{1}); err != nil {
			t.Fatal(err)
		}
	}
	meta, err := NewMeta(1, eng, host, TSOConfig{Window: 2 * time.Second, Now: now}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := host.CreateGroup(MetaRangeID, 1, []raftgroup.Peer{{Replica: 1, Node: 1}}, meta); err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	host.RegisterService(srv)
	go func() { _ = srv.Serve(lis) }()
	host.Start()
	return &metaNode{eng: eng, host: host, meta: meta, srv: srv}
}

func (n *metaNode) stop(t testing.TB) {
	n.srv.Stop()
	n.meta.Close()
	if err := n.host.Close(); err != nil {
		t.Error(err)
	}
	if err := n.eng.Close(); err != nil {
		t.Error(err)
	}
}

// allocate waits until the TSO serves, then returns n timestamps.
func allocate(t *testing.T, tso *TSO, n int) engine.Revision {
	t.Helper()
	first, err := tryAllocate(tso, n)
	if err != nil {
		t.Fatal(err)
	}
	return first
}

// tryAllocate is allocate for goroutines (which must not call t.Fatal).
func tryAllocate(tso *TSO, n int) (engine.Revision, error) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		first, err := tso.Allocate(ctx, n)
		cancel()
		if err == nil {
			return first, nil
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("TSO never served: %w", err)
		}
		time.Sleep(5 * time.Millisecond) // poll interval while the group elects itself
	}
}

// fakeClock is a settable clock.
type fakeClock struct{ ms atomic.Int64 }

func (c *fakeClock) now() time.Time { return time.UnixMilli(c.ms.Load()) }

func TestTSOStrictlyIncreasingAcrossRestartWithClockGoingBack(t *testing.T) {
	dir := t.TempDir()
	clk := &fakeClock{}
	clk.ms.Store(1_000_000)
	n := startMeta(t, dir, clk.now, true)

	var last engine.Revision
	for i := 0; i < 200; i++ {
		ts := allocate(t, n.meta.TSO(), 1+i%5)
		if ts <= last {
			t.Fatalf("timestamp %d after %d", ts, last)
		}
		last = ts + engine.Revision(i%5)
		if i%50 == 0 {
			clk.ms.Add(700) // cross into windows the TSO must raise first
		}
	}
	// Concurrent allocations never overlap.
	var mu sync.Mutex
	seen := map[engine.Revision]bool{}
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				first, err := tryAllocate(n.meta.TSO(), 3)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				for k := engine.Revision(0); k < 3; k++ {
					if seen[first+k] {
						t.Errorf("timestamp %d handed out twice", first+k)
					}
					seen[first+k] = true
					last = max(last, first+k)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	n.stop(t)

	// A new leader term with the clock set back by a minute: timestamps
	// must still be above everything handed out before.
	clk.ms.Add(-60_000)
	n = startMeta(t, dir, clk.now, false)
	defer n.stop(t)
	if ts := allocate(t, n.meta.TSO(), 1); ts <= last {
		t.Fatalf("after restart: timestamp %d not above %d", ts, last)
	}
}

func TestTSORefusesWhenNotLeader(t *testing.T) {
	tso := newTSO(DefaultTSOConfig(), nil)
	if _, err := tso.Allocate(context.Background(), 1); err == nil {
		t.Fatal("a TSO that never led served a timestamp")
	}
	if _, err := tso.Allocate(context.Background(), 1<<LogicalBits); err == nil {
		t.Fatal("an oversized request was served")
	}
}
