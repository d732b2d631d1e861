package shard

import (
	"context"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/tesseradb/tessera/engine"
	"github.com/tesseradb/tessera/proto/tesserapb"
	"github.com/tesseradb/tessera/raftgroup"
)

// counterClock hands out increasing timestamps (a single node's TSO).
type counterClock struct{ next atomic.Int64 }

func (c *counterClock) Timestamps(_ context.Context, n int) (engine.Revision, error) {
	return engine.Revision(c.next.Add(int64(n)<<18) - int64(n-1)<<18), nil
}

// storeNode is one node: an engine in dir, a raft host and a Store.
type storeNode struct {
	eng   *engine.Engine
	host  *raftgroup.Host
	store *Store
}

func startStoreNode(t *testing.T, dir string, clock Clock, knobs *StoreKnobs, bootstrap *tesserapb.RangeDescriptor) *storeNode {
	t.Helper()
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
	hcfg := raftgroup.DefaultConfig()
	hcfg.NodeID = 1
	hcfg.Engine = eng
	hcfg.SnapshotDir = filepath.Join(dir, "snapshots")
	hcfg.TickInterval = 10 * time.Millisecond
	hcfg.Registerer = prometheus.NewRegistry()
	hcfg.Transport.Resolve = func(raftgroup.NodeID) (string, error) { return "127.0.0.1:1", nil }
	host, err := raftgroup.NewHost(hcfg)
	if err != nil {
		t.Fatal(err)
	}
	st, err := NewStore(StoreConfig{Engine: eng, Host: host, Replica: Config{NodeID: 1, Clock: clock}, Knobs: knobs})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Start(); err != nil {
		t.Fatal(err)
	}
	host.Start()
	n := &storeNode{eng: eng, host: host, store: st}
	t.Cleanup(n.stop)
	return n
}

func (n *storeNode) stop() {
	if n.eng == nil {
		return
	}
	_ = n.host.Close()
	n.store.Close()
	_ = n.eng.Close()
	n.eng = nil
}

// leader waits until the node's replica of id leads its range.
func (n *storeNode) leader(t *testing.T, id uint64) *Replica {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if r := n.store.Replica(id); r != nil && r.IsLeader() {
			return r
		}
		time.Sleep(5 * time.Millisecond) // polling with a deadline
	}
	t.Fatalf("range %d: no leader (replica %v)", id, n.store.Replica(id) != nil)
	return nil
}

func rangeIDs(reps []*Replica) []uint64 {
	var out []uint64
	for _, r := range reps {
		out = append(out, r.Descriptor().GetRangeId())
	}
	return out
}

// TestStoreSplitAndRestart: a Store opens the ranges it finds in the
// engine; a split opens the right half, which elects itself and serves the
// right's keys (the left refuses them); after a restart the Store finds
// both halves from their descriptors alone. With the post-commit step
// skipped (a crash between the split's commit and the right's creation),
// the restart still finds the right half.
func TestStoreSplitAndRestart(t *testing.T) {
	for _, crash := range []bool{false, true} {
		t.Run(map[bool]string{false: "clean", true: "crash-before-open"}[crash], func(t *testing.T) {
			dir := t.TempDir()
			clock := &counterClock{}
			clock.next.Store(int64(baseRev))
			reps, next := NewReplicas([]raftgroup.NodeID{1}, 1)
			desc := &tesserapb.RangeDescriptor{RangeId: 2, Replicas: reps, NextReplicaId: next, Generation: 1}
			var knobs *StoreKnobs
			if crash {
				knobs = &StoreKnobs{SkipSplitOpen: func(SplitResult) bool { return true }}
			}
			n := startStoreNode(t, dir, clock, knobs, desc)
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()
			left := n.leader(t, 2)
			for _, k := range []string{"a", "m", "z"} {
				if _, _, err := left.Write(ctx, 0, putOp(k, "1"), 0); err != nil {
					t.Fatal(err)
				}
			}
			res, err := left.Split(ctx, 1, []byte("m"), 3, TriggerAdmin)
			if err != nil {
				t.Fatal(err)
			}
			if string(res.Left.GetEndKey()) != "m" || string(res.Right.GetStartKey()) != "m" || res.Right.GetGeneration() != 2 {
				t.Fatalf("split result %v", res)
			}
			if _, _, err := left.Write(ctx, 0, putOp("q", "1"), 0); err == nil {
				t.Fatal("the left accepted a key of the right")
			}
			if crash {
				if n.store.Replica(3) != nil {
					t.Fatal("the right was opened although the knob skipped it")
				}
			} else {
				right := n.leader(t, 3)
				if _, _, err := right.Write(ctx, 0, putOp("q", "2"), 0); err != nil {
					t.Fatal(err)
				}
			}
			n.stop()

			n = startStoreNode(t, dir, clock, nil, nil)
			if got := rangeIDs(n.store.Replicas()); !slices.Equal(got, []uint64{2, 3}) {
				t.Fatalf("after restart: ranges %v, want [2 3]", got)
			}
			right := n.leader(t, 3)
			rev, err := clock.Timestamps(ctx, 1)
			if err != nil {
				t.Fatal(err)
			}
			resp, _, err := right.Read(ctx, 0, rangeOp("m", "\x00"), rev, false)
			if err != nil {
				t.Fatal(err)
			}
			want := []string{"m", "z"}
			if !crash {
				want = []string{"m", "q", "z"}
			}
			if got := keysOf(resp.GetResponseRange().GetKvs()); !slices.Equal(got, want) {
				t.Fatalf("right half after restart holds %q, want %q", got, want)
			}
			if _, _, err := right.Write(ctx, 0, &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte("r"), Value: []byte("v")}}}, 0); err != nil {
				t.Fatal(err)
			}
		})
	}
}
