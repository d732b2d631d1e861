package integration_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"

	"go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/tesseradb/tessera/cmd/tessera/server"
	"github.com/tesseradb/tessera/proto/tesserapb"
	"github.com/tesseradb/tessera/router"
	"github.com/tesseradb/tessera/tests/testcluster"
)

// layoutString prints descriptors as "id[start,end)gGEN" in order.
func layoutString(ds []*tesserapb.RangeDescriptor) string {
	var b strings.Builder
	for _, d := range ds {
		fmt.Fprintf(&b, "%d[%s,%s)g%d ", d.GetRangeId(), d.GetStartKey(), d.GetEndKey(), d.GetGeneration())
	}
	return strings.TrimSpace(b.String())
}

const bootLayout = "2[,b)g1 3[b,d)g1 4[d,f)g1 5[f,)g1"

// TestRangeDirectory: the directory answers the bootstrap layout on every
// node, a node without a meta replica through the meta leader; a router
// cache with nothing in it covers a span from it; the Internal RPCs refuse
// bad input.
func TestRangeDirectory(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Nodes: 4, SplitKeys: splitKeys})
	c.WaitReady(t)
	for i := range 4 {
		dir := c.Node(i).Router().Directory()
		all, err := router.ScanAll(tctx(t), dir)
		must(t, fmt.Sprintf("scan on node %d", i+1), err)
		if got := layoutString(all); got != bootLayout {
			t.Fatalf("node %d: directory %q, want %q", i+1, got, bootLayout)
		}
		page, more, err := dir.Scan(tctx(t), []byte("c"), 2)
		must(t, "scan page", err)
		if got := layoutString(page); got != "3[b,d)g1 4[d,f)g1" || !more {
			t.Fatalf("node %d: page from c: %q more=%v", i+1, got, more)
		}
		for key, want := range map[string]uint64{"\x00": 2, "a": 2, "b": 3, "e\xff": 4, "zzz": 5} {
			d, err := dir.Lookup(tctx(t), []byte(key))
			must(t, "lookup", err)
			if d.GetRangeId() != want {
				t.Fatalf("node %d: lookup %q = range %d, want %d", i+1, key, d.GetRangeId(), want)
			}
		}
	}
	// A cache knowing nothing fills every gap from the directory (node 4
	// holds no meta replica: it forwards).
	cache := router.NewRangeCache(nil)
	cache.SetDirectory(c.Node(3).Router().Directory())
	ds, err := cache.Cover(tctx(t), []byte("a"), []byte{0})
	must(t, "cover", err)
	if got := layoutString(ds); got != bootLayout {
		t.Fatalf("cover from an empty cache: %q, want %q", got, bootLayout)
	}

	conn, err := grpc.NewClient(c.Node(0).PeerAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	must(t, "dial peer port", err)
	defer conn.Close()
	ic := tesserapb.NewInternalClient(conn)
	for name, call := range map[string]func(ctx context.Context) error{
		"scan limit over the page bound": func(ctx context.Context) error {
			_, err := ic.RangeScan(ctx, &tesserapb.RangeScanRequest{Limit: 1 << 20})
			return err
		},
		"lookup key over the request size": func(ctx context.Context) error {
			_, err := ic.RangeLookup(ctx, &tesserapb.RangeLookupRequest{Key: bytes.Repeat([]byte("k"), 2<<20)})
			return err
		},
		"report of the meta group": func(ctx context.Context) error {
			_, err := ic.RangeReport(ctx, &tesserapb.RangeReportRequest{Ranges: []*tesserapb.RangeDescriptor{{RangeId: 1, Generation: 9, Replicas: []*tesserapb.ReplicaDescriptor{{NodeId: 1, ReplicaId: 1}}}}})
			return err
		},
		"report with an empty span": func(ctx context.Context) error {
			_, err := ic.RangeReport(ctx, &tesserapb.RangeReportRequest{Ranges: []*tesserapb.RangeDescriptor{{RangeId: 3, StartKey: []byte("d"), EndKey: []byte("b"), Generation: 9, Replicas: []*tesserapb.ReplicaDescriptor{{NodeId: 1, ReplicaId: 1}}}}})
			return err
		},
		"empty report": func(ctx context.Context) error {
			_, err := ic.RangeReport(ctx, &tesserapb.RangeReportRequest{})
			return err
		},
	} {
		if err := call(tctx(t)); status.Code(err) != codes.InvalidArgument {
			t.Errorf("%s: %v, want InvalidArgument", name, err)
		}
	}
	// The refused inputs changed nothing.
	all, err := router.ScanAll(tctx(t), c.Node(0).Router().Directory())
	must(t, "scan", err)
	if got := layoutString(all); got != bootLayout {
		t.Fatalf("directory after bad input: %q, want %q", got, bootLayout)
	}
}

// staleRouter makes node i's router believe range 2 still spans the whole
// keyspace at generation 0, as a router that missed every split would:
// each of its requests reaches range 2, which refuses keys beyond "b" with
// its newer descriptor, and the router must re-split.
func staleRouter(t *testing.T, c *testcluster.Cluster, i int) {
	t.Helper()
	reps := c.Node(i).Replica(2).Descriptor().GetReplicas()
	c.Node(i).Router().Cache().Reset([]*tesserapb.RangeDescriptor{{RangeId: 2, Replicas: reps, Generation: 0}})
}

// TestRequestsResplitOverNewLayout: requests sent through a router whose
// cache predates the layout (one range where there are four) succeed:
// each part refused by a range is re-split over the ranges now holding it,
// a multi-range read stays at one revision, a single-range write goes to
// its range, and a txn whose keys now span ranges gets the cross-range
// error it gets from an up-to-date router.
func TestRequestsResplitOverNewLayout(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Nodes: 3, SplitKeys: splitKeys, Configure: func(cfg *server.Config) {
		// No reconciliation round refreshes the stale cache mid-test.
		cfg.DirectoryReconcile = router.ReconcileConfig{Interval: 1 << 40, Timeout: opTimeout}
	}})
	c.WaitReady(t)
	// Node 1 leads range 2, so the stale router's requests reach range 2
	// on its own replica (the Internal service refuses generation 0).
	c.TransferLeader(2, 0)
	cli := c.NodeClient(t, 0)
	var last int64
	for _, k := range rangeKeys {
		last = put(t, cli, k+"/1", "v")
	}
	resplits := func() float64 {
		return metricValue(t, c.Endpoint(0), `tessera_router_retries_total{reason="resplit"}`)
	}

	staleRouter(t, c, 0)
	before := resplits()
	resp, err := cli.Get(tctx(t), "", clientv3.WithFromKey())
	must(t, "get all through a stale router", err)
	wantKeys(t, "get all", resp.Kvs, "a/1", "c/1", "e/1", "g/1")
	if resp.Header.Revision < last {
		t.Fatalf("header revision %d, below the last write's %d", resp.Header.Revision, last)
	}
	if resplits() <= before {
		t.Fatal("the read was not re-split (the stale cache was refreshed before it?)")
	}

	staleRouter(t, c, 0)
	before = resplits()
	r2, err := cli.Get(tctx(t), "c", clientv3.WithRange("f"), clientv3.WithLimit(1), clientv3.WithRev(last))
	must(t, "historical limited range through a stale router", err)
	wantKeys(t, "limited range", r2.Kvs, "c/1")
	if !r2.More || r2.Count != 2 {
		t.Fatalf("limited range: more=%v count=%d, want more and 2", r2.More, r2.Count)
	}

	staleRouter(t, c, 0)
	_, err = cli.Put(tctx(t), "g/2", "v")
	must(t, "put through a stale router", err)
	staleRouter(t, c, 0)
	_, err = cli.Delete(tctx(t), "e/1")
	must(t, "delete through a stale router", err)
	staleRouter(t, c, 0)
	tr, err := cli.Txn(tctx(t)).If(clientv3.Compare(clientv3.Version("c/1"), "=", 1)).Then(clientv3.OpPut("c/2", "v")).Commit()
	must(t, "single-range txn through a stale router", err)
	if !tr.Succeeded {
		t.Fatal("txn compare failed")
	}
	staleRouter(t, c, 0)
	_, err = cli.Txn(tctx(t)).Then(clientv3.OpPut("a/3", "v"), clientv3.OpPut("g/3", "v")).Commit()
	wantCrossRange(t, "cross-range txn through a stale router", err)
	if resplits() <= before {
		t.Fatal("no write was re-split")
	}

	resp, err = c.NodeClient(t, 1).Get(tctx(t), "", clientv3.WithFromKey())
	must(t, "get all", err)
	wantKeys(t, "after the writes", resp.Kvs, "a/1", "c/1", "c/2", "g/1", "g/2")
	// (A compaction or lease revocation names no keys: only a generation
	// the range does not have makes it refuse, which generation 0, "any",
	// cannot show. Splits exercise that path.)
}
