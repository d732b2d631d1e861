package system_test

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/tesseradb/tessera/placement"
	"github.com/tesseradb/tessera/proto/tesserapb"
	"github.com/tesseradb/tessera/shard"
)

// TestSplitMergeCrashProcesses SIGKILLs real processes at each step of a
// split and of a merge (the crash points of shard/crash_knobs.go, enabled
// through shard.CrashPointEnv on every node), restarts every node without
// the knob, and checks that:
//   - every node and the range directory agree on one layout that tiles
//     the keyspace (the split or merge either happened or did not);
//   - every write acknowledged before the crash reads back, and every
//     range takes writes again;
//   - tessctl check finds every range's replicas hash-equal.
//
// A crash after a merge's freeze leaves the right range frozen: the left
// neighbour's leader runs the merge again (--range-merge-recover-after).
func TestSplitMergeCrashProcesses(t *testing.T) {
	for _, tc := range []struct {
		point string
		merge bool
	}{
		{point: shard.CrashSplitAfterPropose},
		{point: shard.CrashSplitAfterApply},
		{point: shard.CrashSplitBeforeDirectory},
		{point: shard.CrashMergeAfterFreeze, merge: true},
		{point: shard.CrashMergeAfterApply, merge: true},
		{point: shard.CrashMergeBeforeDirectory, merge: true},
	} {
		t.Run(tc.point, func(t *testing.T) {
			t.Setenv(shard.CrashPointEnv, tc.point)
			// A range left frozen by a dead merge initiator is merged
			// again after 2 s (the default is 30 s).
			cfg := clusterConfig{nodes: 3, prepare: func(n *node) {
				n.args = append(n.args, "--range-merge-recover-after", "2s", "--range-split-check-interval", "500ms")
			}}
			if tc.merge {
				cfg.splitKeys = []string{"m"}
			}
			c := newCluster(t, cfg)
			cli := c.client()
			acked := map[string]string{}
			put := func(k, v string) {
				t.Helper()
				ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
				defer cancel()
				if _, err := cli.Put(ctx, k, v); err != nil {
					t.Fatalf("put %s: %v", k, err)
				}
				acked[k] = v
			}
			for i := range 40 {
				put(fmt.Sprintf("a/%03d", i), "before")
				put(fmt.Sprintf("z/%03d", i), "before")
			}
			eps := strings.Join(c.endpoints(), ",")
			var args []string
			if tc.merge {
				first := dataRanges(t, c.nodes[0])[0]
				args = []string{"--endpoints", eps, "--command-timeout", "10s", "range", "merge", strconv.FormatUint(first.GetRangeId(), 10)}
			} else {
				args = []string{"--endpoints", eps, "--command-timeout", "10s", "range", "split", "m"}
			}
			out, err := tessctl(t, args...)
			t.Logf("tessctl %s: %v\n%s", strings.Join(args[2:], " "), err, out)

			// At least one node reaches the point and kills itself; the
			// others are killed now (a crash of the whole cluster).
			waitFor(t, time.Minute, "a node to reach crash point "+tc.point, func() error {
				for _, n := range c.nodes {
					if b, _ := os.ReadFile(n.logPath); bytes.Contains(b, []byte("crash point "+tc.point+" reached")) {
						return nil
					}
				}
				return fmt.Errorf("no node reached it")
			})
			c.killAll()
			for _, n := range c.nodes {
				n.Forget()
			}
			if err := os.Setenv(shard.CrashPointEnv, ""); err != nil {
				t.Fatal(err)
			}
			c.startAll()

			layout := awaitConsistentLayout(t, c)
			t.Logf("layout after restart: %s", layoutString(layout))
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			resp, err := cli.Get(ctx, "", clientv3.WithFromKey())
			if err != nil {
				t.Fatalf("read everything: %v", err)
			}
			got := map[string]string{}
			for _, kv := range resp.Kvs {
				got[string(kv.Key)] = string(kv.Value)
			}
			for k, v := range acked {
				if got[k] != v {
					t.Errorf("acknowledged %s=%s reads %q after the crash", k, v, got[k])
				}
			}
			// Every range takes writes (none is left frozen).
			for _, d := range layout {
				put(string(d.GetStartKey())+"after", "after")
			}
			put("m/after", "after")
			if out, err := tessctl(t, "--endpoints", eps, "--command-timeout", "60s", "check"); err != nil {
				t.Fatalf("tessctl check: %v\n%s", err, out)
			}
		})
	}
}

// awaitConsistentLayout waits until every node's data ranges and the
// range directory list the same descriptors (id, span, generation) tiling
// the keyspace, and returns them.
func awaitConsistentLayout(t *testing.T, c *cluster) []*tesserapb.RangeDescriptor {
	t.Helper()
	var layout []*tesserapb.RangeDescriptor
	waitFor(t, time.Minute, "one layout on every node and in the directory", func() error {
		var want string
		for i, n := range c.nodes {
			resp, err := n.ranges()
			if err != nil {
				return err
			}
			var ds []*tesserapb.RangeDescriptor
			for _, r := range resp.GetRanges() {
				if !r.GetIsMeta() {
					ds = append(ds, r.GetRangeDescriptor())
				}
			}
			sortDescs(ds)
			if err := tiles(ds); err != nil {
				return fmt.Errorf("%s: %w", n.name, err)
			}
			s := layoutString(ds)
			if i == 0 {
				want, layout = s, ds
			} else if s != want {
				return fmt.Errorf("%s holds %s, %s holds %s", c.nodes[0].name, want, n.name, s)
			}
		}
		dir, err := directoryScan(c)
		if err != nil {
			return err
		}
		if s := layoutString(dir); s != want {
			return fmt.Errorf("the directory holds %s, the nodes %s", s, want)
		}
		return nil
	})
	return layout
}

func sortDescs(ds []*tesserapb.RangeDescriptor) {
	for i := 1; i < len(ds); i++ {
		for j := i; j > 0 && bytes.Compare(ds[j].GetStartKey(), ds[j-1].GetStartKey()) < 0; j-- {
			ds[j], ds[j-1] = ds[j-1], ds[j]
		}
	}
}

// tiles checks that sorted descriptors cover the keyspace without holes
// or overlaps.
func tiles(ds []*tesserapb.RangeDescriptor) error {
	if len(ds) == 0 {
		return fmt.Errorf("no data ranges")
	}
	if len(ds[0].GetStartKey()) != 0 || len(ds[len(ds)-1].GetEndKey()) != 0 {
		return fmt.Errorf("layout %s does not cover the keyspace", layoutString(ds))
	}
	for i := 1; i < len(ds); i++ {
		if !bytes.Equal(ds[i-1].GetEndKey(), ds[i].GetStartKey()) {
			return fmt.Errorf("layout %s has a hole or an overlap", layoutString(ds))
		}
	}
	return nil
}

func layoutString(ds []*tesserapb.RangeDescriptor) string {
	var b strings.Builder
	for _, d := range ds {
		fmt.Fprintf(&b, "r%d[%q,%q)g%d ", d.GetRangeId(), d.GetStartKey(), d.GetEndKey(), d.GetGeneration())
	}
	return strings.TrimSpace(b.String())
}

// directoryScan reads the range directory's data ranges from whichever
// node answers (the meta group's leader).
func directoryScan(c *cluster) ([]*tesserapb.RangeDescriptor, error) {
	var lastErr error
	for _, n := range c.nodes {
		u, err := url.Parse(n.peerURL)
		if err != nil {
			return nil, err
		}
		conn, err := grpc.NewClient(u.Host, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return nil, err
		}
		ds, err := func() ([]*tesserapb.RangeDescriptor, error) {
			defer conn.Close()
			var out []*tesserapb.RangeDescriptor
			var start []byte
			for {
				ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
				resp, err := tesserapb.NewInternalClient(conn).RangeScan(ctx, &tesserapb.RangeScanRequest{StartKey: start})
				cancel()
				if err != nil {
					return nil, err
				}
				if re := resp.GetRoutingError(); re != nil {
					return nil, fmt.Errorf("%s: %s", re.GetCode(), re.GetMessage())
				}
				for _, d := range resp.GetRanges() {
					if d.GetRangeId() != placement.MetaRangeID {
						out = append(out, d)
					}
				}
				if !resp.GetMore() {
					return out, nil
				}
				start = resp.GetNextKey()
			}
		}()
		if err == nil {
			sortDescs(ds)
			return ds, nil
		}
		lastErr = fmt.Errorf("%s: %w", n.name, err)
	}
	return nil, lastErr
}
