package integration_test

import (
	"context"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/tesseradb/tessera/cmd/tessera/server"
	"github.com/tesseradb/tessera/engine"
	"github.com/tesseradb/tessera/proto/tesserapb"
	"github.com/tesseradb/tessera/shard"
	"github.com/tesseradb/tessera/tests/testcluster"
)

// TestRevokedLeaseRecordsForgotten: a revoke leaves a record of the lease
// on every replica of every range; once the lookup validity (3 s here) has
// passed, the next writes drop it everywhere. A put carrying the revoked
// grant as a slow router looked it up before the revoke fails while the
// record is there (lease not found) and after it is gone (lookup expired),
// and leaves no key.
func TestRevokedLeaseRecordsForgotten(t *testing.T) {
	const validity = 3 * time.Second
	c := testcluster.Start(t, testcluster.Options{Nodes: 3, SplitKeys: splitKeys, Configure: func(cfg *server.Config) {
		cfg.LeaseLookupValidity = validity
	}})
	c.WaitReady(t)
	cli := c.Client(t)
	g, err := cli.Grant(tctx(t), 60)
	must(t, "grant", err)
	for _, p := range rangeKeys {
		_, err := cli.Put(tctx(t), p+"/gc", "v", clientv3.WithLease(g.ID))
		must(t, "put with the lease", err)
	}
	stale := lookupLease(t, c, int64(g.ID))
	_, err = cli.Revoke(tctx(t), g.ID)
	must(t, "revoke", err)

	records := func() (n int) {
		for i := range c.Size() {
			for _, id := range dataRanges {
				it, err := c.Node(i).Engine().NewIter(engine.LocalGroupKindSpan(id, engine.KindRevokedLease))
				must(t, "iterate", err)
				for ok := it.First(); ok; ok = it.Next() {
					n++
				}
				it.Close()
			}
		}
		return n
	}
	want := c.Size() * len(dataRanges)
	waitFor(t, "a revocation record on every replica", func() bool { return records() == want })

	stalePut := func() error {
		id := dataRanges[1]
		rep := c.Node(c.Leader(id)).Replica(id)
		op := &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte("c/stale"), Value: []byte("v"), Lease: int64(g.ID)}}}
		_, _, err := rep.WriteLeased(tctx(t), rep.Descriptor().GetGeneration(), op, shard.LeaseRefs{Attach: []*tesserapb.LeaseRef{stale}})
		return err
	}
	if err := stalePut(); !errIs(err, rpctypes.ErrGRPCLeaseNotFound) {
		t.Fatalf("stale put while the record is kept: %v, want lease not found", err)
	}
	// Writes after the validity drop the records.
	deadline := time.Now().Add(validity + opTimeout)
	for n := records(); n > 0; n = records() {
		if time.Now().After(deadline) {
			t.Fatalf("%d revocation records left %v after the revoke", n, validity+opTimeout)
		}
		for _, p := range rangeKeys {
			_, err := cli.Put(tctx(t), p+"/tick", "v")
			must(t, "plain put", err)
		}
		time.Sleep(100 * time.Millisecond) // poll interval: TSO time must pass the validity
	}
	if err := stalePut(); !shard.IsLeaseLookupExpired(err) {
		t.Fatalf("stale put after the records went: %v, want lease lookup expired", err)
	}
	if _, err := cli.Put(tctx(t), "c/fresh", "v", clientv3.WithLease(g.ID)); !errIs(err, rpctypes.ErrGRPCLeaseNotFound) {
		t.Fatalf("put naming the revoked lease: %v, want lease not found", err)
	}
	resp, err := cli.Get(tctx(t), "", clientv3.WithFromKey(), clientv3.WithKeysOnly())
	must(t, "get", err)
	for _, kv := range resp.Kvs {
		if kv.Lease != 0 {
			t.Errorf("key %q still attached to lease %x", kv.Key, kv.Lease)
		}
	}
}

// lookupLease asks the nodes' Internal service (peer port) for a lease's
// incarnation, as a router does before a write.
func lookupLease(t *testing.T, c *testcluster.Cluster, id int64) *tesserapb.LeaseRef {
	t.Helper()
	var ref *tesserapb.LeaseRef
	waitFor(t, "the meta leader's lookup", func() bool {
		for i := range c.Size() {
			conn, err := grpc.NewClient(c.Node(i).PeerAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
			must(t, "dial peer port", err)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			resp, err := tesserapb.NewInternalClient(conn).LeaseLookup(ctx, &tesserapb.LeaseLookupRequest{Ids: []int64{id}})
			cancel()
			conn.Close()
			if err == nil && resp.GetRoutingError() == nil && len(resp.GetLeases()) == 1 {
				ref = resp.GetLeases()[0]
				return true
			}
		}
		return false
	})
	if ref.GetValidUntil() == 0 {
		t.Fatalf("lookup of lease %x carries no validity: %v", id, ref)
	}
	return ref
}
