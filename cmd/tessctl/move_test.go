package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestRangeMove: on 4 nodes (3 replicas per range), `tessctl range move`
// moves a range's replica from its leader's node to the node without one
// while clients write; the clients see no error but an election's
// deadline; afterwards the range lists the new node and not the old, the
// old node destroyed its replica, the three replicas' hashes are equal and
// every acknowledged write is readable. A refused move exits non-zero with
// the server's reason.
func TestRangeMove(t *testing.T) {
	tc := startCluster(t, 4, []string{"m"})
	cli, err := clientv3.New(clientv3.Config{Endpoints: tc.endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()

	var r2 rangeInfo
	eventually(t, 30*time.Second, func() error {
		out, stderr, code := tc.tessctl(t, "ranges", "-w", "json")
		if code != 0 {
			return fmt.Errorf("ranges: exit status %d: %s", code, stderr)
		}
		for _, r := range decodeRanges(t, out) {
			if r.ID == 2 {
				r2 = r
			}
		}
		if r2.Leader == 0 {
			return errors.New("range 2 has no leader yet")
		}
		return nil
	})
	from := r2.Leader
	var to uint64
	for n := uint64(1); n <= 4; n++ {
		if !slices.Contains(r2.nodes(), n) {
			to = n
		}
	}
	if to == 0 {
		t.Fatalf("range 2 on every node: %v", r2.nodes())
	}

	// Writers on range 2's keys ("a"...) during the move.
	var (
		stop   atomic.Bool
		wg     sync.WaitGroup
		mu     sync.Mutex
		acked  []string
		errs   []error
		writes atomic.Int64
	)
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				k := fmt.Sprintf("a/%d/%04d", w, i)
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				_, err := cli.Put(ctx, k, "v")
				cancel()
				mu.Lock()
				if err == nil {
					acked = append(acked, k)
					writes.Add(1)
				} else {
					errs = append(errs, err)
				}
				mu.Unlock()
			}
		}()
	}
	eventually(t, 30*time.Second, func() error {
		if writes.Load() < 20 {
			return errors.New("writers not going yet")
		}
		return nil
	})

	out, stderr, code := tc.tessctl(t, "range", "move", "2", "--from", fmt.Sprint(from), "--to", fmt.Sprint(to), "-w", "json")
	if code != 0 {
		t.Fatalf("range move: exit %d: %s", code, stderr)
	}
	t.Logf("progress:\n%s", stderr)
	before := writes.Load()
	eventually(t, 30*time.Second, func() error {
		if writes.Load() < before+20 {
			return errors.New("writes after the move not acknowledged yet")
		}
		return nil
	})
	stop.Store(true)
	wg.Wait()
	for _, err := range errs {
		if status.Code(err) != codes.DeadlineExceeded && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, rpctypes.ErrTimeoutDueToLeaderFail) {
			t.Errorf("a client saw %v during the move", err)
		}
	}
	moved := decodeRange(t, out)
	if slices.Contains(moved.nodes(), from) || !slices.Contains(moved.nodes(), to) || len(moved.nodes()) != 3 {
		t.Fatalf("after the move range 2 is on %v; want %d in and %d out", moved.nodes(), to, from)
	}
	for _, r := range moved.Replicas {
		if r.Type != "voter" {
			t.Fatalf("replica %+v is not a voter after the move", r)
		}
	}
	if moved.Generation < r2.Generation+4 {
		t.Fatalf("generation %d after the move, want at least %d (four changes)", moved.Generation, r2.Generation+4)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	eventually(t, 30*time.Second, func() error {
		if tc.Node(int(from-1)).Replica(2) != nil {
			return fmt.Errorf("node %d still holds its replica of range 2", from)
		}
		var hashes []string
		for _, n := range moved.nodes() {
			rep := tc.Node(int(n - 1)).Replica(2)
			if rep == nil {
				return fmt.Errorf("node %d has no replica", n)
			}
			h, err := rep.Hash(ctx)
			if err != nil {
				return err
			}
			hashes = append(hashes, fmt.Sprintf("%x@%d", h.Hash, h.AppliedIndex))
		}
		if len(slices.Compact(slices.Clone(hashes))) != 1 {
			return fmt.Errorf("hashes %v", hashes)
		}
		return nil
	})
	resp, err := cli.Get(ctx, "a/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, kv := range resp.Kvs {
		got[string(kv.Key)] = true
	}
	for _, k := range acked {
		if !got[k] {
			t.Fatalf("acknowledged write %s lost", k)
		}
	}

	// Refusals: a node without a replica, and a target that has one.
	_, stderr, code = tc.tessctl(t, "range", "move", "2", "--from", fmt.Sprint(from), "--to", fmt.Sprint(to))
	if code == 0 || !strings.Contains(stderr, "holds no replica") {
		t.Fatalf("moving from a node without a replica: exit %d: %s", code, stderr)
	}

	// And back: the old node is tombstoned below a new replica id, so it
	// hosts the range again as a new replica (table output).
	var oldID uint64
	for _, r := range r2.Replicas {
		if r.Node == from {
			oldID = r.Replica
		}
	}
	out, stderr, code = tc.tessctl(t, "range", "move", "2", "--from", fmt.Sprint(to), "--to", fmt.Sprint(from))
	if code != 0 || !strings.Contains(out, fmt.Sprintf("moved range 2 from node %d to node %d", to, from)) {
		t.Fatalf("moving back: exit %d: %s%s", code, out, stderr)
	}
	t.Logf("move back:\n%s%s", stderr, out)
	eventually(t, 30*time.Second, func() error {
		rep := tc.Node(int(from - 1)).Replica(2)
		if rep == nil {
			return fmt.Errorf("node %d has no replica of range 2 again", from)
		}
		for _, r := range rep.Descriptor().GetReplicas() {
			if r.GetNodeId() == from && r.GetReplicaId() <= oldID {
				return fmt.Errorf("node %d's new replica id %d, want above %d", from, r.GetReplicaId(), oldID)
			}
		}
		return nil
	})
}

func decodeRange(t *testing.T, out string) rangeInfo {
	t.Helper()
	var r rangeInfo
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("range move -w json: %v in %q", err, out)
	}
	return r
}
