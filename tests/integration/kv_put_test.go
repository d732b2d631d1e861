package integration_test

import (
	"strings"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestPutOverwrite puts a key on every range with prev_kv and overwrites it
// (etcd's TestV3PutOverwrite): the overwrite has a larger revision, returns
// the previous pair, and the key keeps its create revision with version 2.
func TestPutOverwrite(t *testing.T) {
	_, cli := newClusterClient(t)
	for _, p := range rangeKeys {
		k := p + "/overwrite"
		r1, err := cli.Put(tctx(t), k, "bar", clientv3.WithPrevKV())
		must(t, "put", err)
		if r1.PrevKv != nil {
			t.Errorf("%s: first put returned prev_kv %v", k, r1.PrevKv)
		}
		r2, err := cli.Put(tctx(t), k, "baz", clientv3.WithPrevKV())
		must(t, "overwrite", err)
		if r2.Header.Revision <= r1.Header.Revision {
			t.Errorf("%s: overwrite revision %d <= first put's %d", k, r2.Header.Revision, r1.Header.Revision)
		}
		if pkv := r2.PrevKv; pkv == nil || string(pkv.Value) != "bar" || pkv.ModRevision != r1.Header.Revision ||
			pkv.CreateRevision != r1.Header.Revision || pkv.Version != 1 {
			t.Errorf("%s: prev_kv = %v, want bar at %d version 1", k, pkv, r1.Header.Revision)
		}
		// Without prev_kv, no previous pair.
		r3, err := cli.Put(tctx(t), k, "qux")
		must(t, "put", err)
		if r3.PrevKv != nil {
			t.Errorf("%s: put without prev_kv returned %v", k, r3.PrevKv)
		}
		g, err := cli.Get(tctx(t), k)
		must(t, "get", err)
		wantKVs(t, k, g.Kvs, (&model{writes: []write{
			{key: k, value: "bar", rev: r1.Header.Revision},
			{key: k, value: "baz", rev: r2.Header.Revision},
			{key: k, value: "qux", rev: r3.Header.Revision},
		}}).at(r3.Header.Revision, k, k+"\x00"))
		if g.Header.Revision < r3.Header.Revision {
			t.Errorf("%s: read header revision %d < last write %d", k, g.Header.Revision, r3.Header.Revision)
		}
	}
}

// TestPutIgnoreValue follows etcd's TestV3PutIgnoreValue without leases:
// ignore_value needs an existing key (ErrKeyNotFound, also inside a Txn),
// rejects a value (ErrValueProvided), and keeps the value while making a new
// version.
func TestPutIgnoreValue(t *testing.T) {
	_, cli := newClusterClient(t)
	for _, p := range rangeKeys {
		k := p + "/ignore-value"
		_, err := cli.Put(tctx(t), k, "", clientv3.WithIgnoreValue())
		wantErr(t, "ignore_value on a missing key", err, rpctypes.ErrGRPCKeyNotFound)
		_, err = cli.Txn(tctx(t)).Then(clientv3.OpPut(k, "", clientv3.WithIgnoreValue())).Commit()
		wantErr(t, "txn ignore_value on a missing key", err, rpctypes.ErrGRPCKeyNotFound)

		r1 := put(t, cli, k, "bar")
		_, err = cli.Put(tctx(t), k, "baz", clientv3.WithIgnoreValue())
		wantErr(t, "ignore_value with a value", err, rpctypes.ErrGRPCValueProvided)

		r2, err := cli.Put(tctx(t), k, "", clientv3.WithIgnoreValue(), clientv3.WithPrevKV())
		must(t, "ignore_value put", err)
		if r2.PrevKv == nil || string(r2.PrevKv.Value) != "bar" {
			t.Errorf("%s: prev_kv %v, want bar", k, r2.PrevKv)
		}
		r3, err := cli.Txn(tctx(t)).Then(clientv3.OpPut(k, "", clientv3.WithIgnoreValue())).Commit()
		must(t, "txn ignore_value put", err)
		g, err := cli.Get(tctx(t), k)
		must(t, "get", err)
		if len(g.Kvs) != 1 {
			t.Fatalf("%s: %d kvs", k, len(g.Kvs))
		}
		kv := g.Kvs[0]
		if string(kv.Value) != "bar" || kv.Version != 3 || kv.CreateRevision != r1 || kv.ModRevision != r3.Header.Revision {
			t.Errorf("%s: got %s, want bar version 3 created at %d modified at %d", k, fmtKVs(g.Kvs), r1, r3.Header.Revision)
		}
	}
}

// TestPutIgnoreLease follows etcd's TestV3PutIgnoreLease without granting
// leases: ignore_lease needs an existing key, rejects a lease
// (ErrLeaseProvided), and replaces the value keeping the key's (zero) lease.
func TestPutIgnoreLease(t *testing.T) {
	_, cli := newClusterClient(t)
	for _, p := range rangeKeys {
		k := p + "/ignore-lease"
		_, err := cli.Put(tctx(t), k, "bar", clientv3.WithIgnoreLease())
		wantErr(t, "ignore_lease on a missing key", err, rpctypes.ErrGRPCKeyNotFound)
		_, err = cli.Txn(tctx(t)).Then(clientv3.OpPut(k, "bar", clientv3.WithIgnoreLease())).Commit()
		wantErr(t, "txn ignore_lease on a missing key", err, rpctypes.ErrGRPCKeyNotFound)

		put(t, cli, k, "bar")
		_, err = rawKV(cli).Put(tctx(t), &pb.PutRequest{Key: []byte(k), Value: []byte("x"), Lease: 7, IgnoreLease: true})
		wantErr(t, "ignore_lease with a lease", err, rpctypes.ErrGRPCLeaseProvided)

		_, err = cli.Txn(tctx(t)).Then(clientv3.OpPut(k, "bar1", clientv3.WithIgnoreLease())).Commit()
		must(t, "txn ignore_lease put", err)
		g, err := cli.Get(tctx(t), k)
		must(t, "get", err)
		if len(g.Kvs) != 1 || string(g.Kvs[0].Value) != "bar1" || g.Kvs[0].Lease != 0 || g.Kvs[0].Version != 2 {
			t.Errorf("%s: got %s, want bar1 version 2 without lease", k, fmtKVs(g.Kvs))
		}
	}
}

// TestPutMissingLease is etcd's TestV3PutMissingLease: leases are not
// implemented, so every lease is unknown and a put naming one on the executed
// path fails with ErrLeaseNotFound, storing nothing; a txn whose executed
// branch does not name it succeeds.
func TestPutMissingLease(t *testing.T) {
	_, cli := newClusterClient(t)
	const lease = clientv3.LeaseID(123456)
	for _, p := range rangeKeys {
		k := p + "/lease"
		_, err := cli.Put(tctx(t), k, "v", clientv3.WithLease(lease))
		wantErr(t, "put with an unknown lease", err, rpctypes.ErrGRPCLeaseNotFound)

		_, err = cli.Txn(tctx(t)).Then(clientv3.OpPut(k, "v", clientv3.WithLease(lease))).Commit()
		wantErr(t, "txn success put with an unknown lease", err, rpctypes.ErrGRPCLeaseNotFound)

		_, err = cli.Txn(tctx(t)).
			If(clientv3.Compare(clientv3.CreateRevision(p+"/other"), ">", 0)).
			Else(clientv3.OpPut(k, "v", clientv3.WithLease(lease))).Commit()
		wantErr(t, "txn failure put with an unknown lease", err, rpctypes.ErrGRPCLeaseNotFound)

		tr, err := cli.Txn(tctx(t)).
			Then(clientv3.OpGet(p + "/other")).
			Else(clientv3.OpPut(k, "v", clientv3.WithLease(lease))).Commit()
		if err != nil || !tr.Succeeded {
			t.Errorf("txn not executing the leased put: %v, %v", tr, err)
		}

		// An unknown lease on an existing key: still refused.
		put(t, cli, k+"/exists", "v")
		_, err = cli.Put(tctx(t), k+"/exists", "w", clientv3.WithLease(lease))
		wantErr(t, "put of an existing key with an unknown lease", err, rpctypes.ErrGRPCLeaseNotFound)

		g, err := cli.Get(tctx(t), k, clientv3.WithPrefix())
		must(t, "get", err)
		if len(g.Kvs) != 1 || string(g.Kvs[0].Value) != "v" || g.Kvs[0].Version != 1 {
			t.Errorf("%s: leased puts stored something: %s", k, fmtKVs(g.Kvs))
		}
	}
}

// TestEmptyKey checks etcd's ErrEmptyKey for every request kind.
func TestEmptyKey(t *testing.T) {
	_, cli := newClusterClient(t)
	kv := rawKV(cli)
	_, err := cli.Put(tctx(t), "", "bar")
	wantErr(t, "put", err, rpctypes.ErrGRPCEmptyKey)
	_, err = kv.Range(tctx(t), &pb.RangeRequest{})
	wantErr(t, "range", err, rpctypes.ErrGRPCEmptyKey)
	_, err = kv.Range(tctx(t), &pb.RangeRequest{RangeEnd: []byte("z")})
	wantErr(t, "range with range_end", err, rpctypes.ErrGRPCEmptyKey)
	_, err = kv.DeleteRange(tctx(t), &pb.DeleteRangeRequest{})
	wantErr(t, "delete", err, rpctypes.ErrGRPCEmptyKey)
	_, err = cli.Txn(tctx(t)).Then(clientv3.OpPut("", "bar")).Commit()
	wantErr(t, "txn put", err, rpctypes.ErrGRPCEmptyKey)
	_, err = kv.Txn(tctx(t), &pb.TxnRequest{Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestRange{RequestRange: &pb.RangeRequest{}}}}})
	wantErr(t, "txn range", err, rpctypes.ErrGRPCEmptyKey)
	_, err = kv.Txn(tctx(t), &pb.TxnRequest{Compare: []*pb.Compare{{Target: pb.Compare_VERSION}}})
	wantErr(t, "txn compare", err, rpctypes.ErrGRPCEmptyKey)
}

// TestRequestTooLarge checks etcd's 1.5 MiB request limit (TestV3TooLargeRequest,
// TestKVPutError): larger puts and txns fail with ErrRequestTooLarge; a put
// just under it succeeds and reads back. As in etcd, a request above the
// limit plus 512 KiB of gRPC allowance is refused by gRPC itself
// (ResourceExhausted; etcd's TestV3TooLargeRequest accepts any error).
func TestRequestTooLarge(t *testing.T) {
	_, cli := newClusterClient(t)
	const maxReq = 3 * 1024 * 512
	_, err := cli.Put(tctx(t), "a/large", strings.Repeat("a", 2*1024*1024))
	if status.Code(err) != codes.ResourceExhausted {
		t.Errorf("2 MiB put: err = %v, want gRPC's ResourceExhausted as from etcd", err)
	}
	_, err = cli.Put(tctx(t), "c/large", strings.Repeat("a", maxReq+100))
	wantErr(t, "1.5 MiB+100 put", err, rpctypes.ErrGRPCRequestTooLarge)
	_, err = cli.Txn(tctx(t)).Then(clientv3.OpPut("e/large", strings.Repeat("a", maxReq+100))).Commit()
	wantErr(t, "1.5 MiB+100 txn", err, rpctypes.ErrGRPCRequestTooLarge)
	_, err = cli.Txn(tctx(t)).Then(
		clientv3.OpPut("g/large1", strings.Repeat("a", maxReq/2)),
		clientv3.OpPut("g/large2", strings.Repeat("a", maxReq/2)),
	).Commit()
	wantErr(t, "txn of two puts of half the limit", err, rpctypes.ErrGRPCRequestTooLarge)

	v := strings.Repeat("v", maxReq-1024)
	rev := put(t, cli, "g/large", v)
	g, err := cli.Get(tctx(t), "g/large")
	must(t, "get", err)
	if len(g.Kvs) != 1 || string(g.Kvs[0].Value) != v || g.Kvs[0].ModRevision != rev {
		t.Errorf("large value did not read back (%d kvs)", len(g.Kvs))
	}
	// Nothing of the refused requests was stored.
	g, err = cli.Get(tctx(t), "\x00", clientv3.WithFromKey(), clientv3.WithKeysOnly())
	must(t, "get all", err)
	wantKeys(t, "all keys", g.Kvs, "g/large")
}
