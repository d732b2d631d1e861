package integration_test

import (
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestCompact follows etcd's TestKVCompact, TestKVCompactError,
// TestV3TxnInvalidRange and TestKVGetStreamCompactedError across four
// ranges: after a compaction at R, reads below R fail with ErrCompacted on
// every range (single and fanned-out reads, reads inside txns), reads at and
// above R work, compacting at or below R again fails with ErrCompacted, a
// compaction in the future fails with ErrFutureRev, and current data
// survives, for linearizable and serializable reads on every node.
func TestCompact(t *testing.T) {
	c, cli := newClusterClient(t)
	m := &model{}
	for round := range 3 {
		for _, p := range rangeKeys {
			v := p + string(rune('0'+round))
			m.put(p, v, put(t, cli, p, v))
		}
	}
	w := m.writes
	last := w[len(w)-1].rev
	compactAt := w[5].rev // the second round's "c"
	kv := rawKV(cli)

	_, err := cli.Compact(tctx(t), last+1<<40)
	wantErr(t, "compact in the future", err, rpctypes.ErrGRPCFutureRev)

	_, err = cli.Compact(tctx(t), compactAt)
	must(t, "compact", err)

	for _, r := range []int64{w[0].rev, w[4].rev, compactAt - 1} {
		_, err = cli.Get(tctx(t), "c", clientv3.WithRev(r))
		wantErr(t, "get below the compaction", err, rpctypes.ErrGRPCCompacted)
		_, err = cli.Get(tctx(t), "a", clientv3.WithRev(r)) // a range whose keys changed before R only
		wantErr(t, "get of another range below the compaction", err, rpctypes.ErrGRPCCompacted)
		_, err = cli.Get(tctx(t), "", clientv3.WithPrefix(), clientv3.WithRev(r))
		wantErr(t, "get over ranges below the compaction", err, rpctypes.ErrGRPCCompacted)
		_, err = cli.Get(tctx(t), "", clientv3.WithPrefix(), clientv3.WithRev(r), clientv3.WithCountOnly())
		wantErr(t, "count over ranges below the compaction", err, rpctypes.ErrGRPCCompacted)
		_, err = cli.Txn(tctx(t)).Then(clientv3.OpGet("e", clientv3.WithRev(r))).Commit()
		wantErr(t, "read-only txn below the compaction", err, rpctypes.ErrGRPCCompacted)
		_, err = cli.Txn(tctx(t)).Then(clientv3.OpPut("e", "x"), clientv3.OpGet("e", clientv3.WithRev(r))).Commit()
		wantErr(t, "txn below the compaction", err, rpctypes.ErrGRPCCompacted)
	}
	for _, r := range []int64{compactAt, compactAt + 1, w[6].rev, last} {
		g, err := kv.Range(tctx(t), &pb.RangeRequest{Key: []byte("\x00"), RangeEnd: []byte("\x00"), Revision: r})
		if err != nil {
			t.Errorf("get at %d (compacted at %d): %v", r, compactAt, err)
			continue
		}
		wantKVs(t, "get at or above the compaction", g.Kvs, m.at(r, "", ""))
	}
	// The failed txns wrote nothing.
	g, err := cli.Get(tctx(t), "e")
	must(t, "get", err)
	wantKVs(t, "e after failed txns", g.Kvs, m.at(last, "e", "e\x00"))

	// A compaction at or below the compacted revision is refused once newer
	// writes exist (etcd 3.7 lets a repeat at its head revision succeed; no
	// Tessera revision is the head after a later write).
	for _, r := range []int64{compactAt, compactAt - 1, w[0].rev} {
		_, err = cli.Compact(tctx(t), r)
		wantErr(t, "compact again at or below the compaction", err, rpctypes.ErrGRPCCompacted)
	}

	// Compacting at the current revision keeps the current data
	// (TestV3CompactCurrentRev), on every node, both read kinds.
	g, err = cli.Get(tctx(t), "a")
	must(t, "get", err)
	_, err = cli.Compact(tctx(t), g.Header.Revision)
	must(t, "compact at the current revision", err)
	for node := range 3 {
		nc := c.NodeClient(t, node)
		g, err := nc.Get(tctx(t), "", clientv3.WithPrefix())
		must(t, "linearizable get after compaction", err)
		wantKVs(t, "linearizable get after compaction", g.Kvs, m.at(last, "", ""))
		g, err = nc.Get(tctx(t), "", clientv3.WithPrefix(), clientv3.WithSerializable())
		must(t, "serializable get after compaction", err)
		if len(g.Kvs) != len(rangeKeys) {
			t.Errorf("serializable get on node %d after compaction: %s", node, fmtKVs(g.Kvs))
		}
	}
	// The current revision is the last write's (the failed txns wrote
	// nothing): as in etcd, a read at the compaction revision is served and
	// one below it is refused.
	if g.Header.Revision != last {
		t.Errorf("current revision %d after the last write at %d and failed txns", g.Header.Revision, last)
	}
	if _, err = cli.Get(tctx(t), "a", clientv3.WithRev(last)); err != nil {
		t.Errorf("get at the second compaction's revision: %v", err)
	}
	_, err = cli.Get(tctx(t), "a", clientv3.WithRev(w[len(w)-2].rev))
	wantErr(t, "get below the second compaction", err, rpctypes.ErrGRPCCompacted)
	// Writes continue after compactions, and keep their history.
	r := put(t, cli, "g", "after")
	if r <= last {
		t.Errorf("put after compaction at %d <= earlier write %d", r, last)
	}
	g, err = cli.Get(tctx(t), "g")
	must(t, "get", err)
	if len(g.Kvs) != 1 || string(g.Kvs[0].Value) != "after" || g.Kvs[0].Version != 4 || g.Kvs[0].CreateRevision != w[3].rev {
		t.Errorf("g after compaction: %s, want version 4 created at %d", fmtKVs(g.Kvs), w[3].rev)
	}
}

// TestCompactDeleted compacts past a delete: the deleted key is gone at
// every revision from the compaction on, and a key put again afterwards
// starts over at version 1.
func TestCompactDeleted(t *testing.T) {
	_, cli := newClusterClient(t)
	put(t, cli, "c/1", "v")
	put(t, cli, "c/1", "w")
	d, err := cli.Delete(tctx(t), "c/1")
	must(t, "delete", err)
	r := put(t, cli, "e/1", "v")
	_, err = cli.Compact(tctx(t), r)
	must(t, "compact", err)
	g, err := cli.Get(tctx(t), "c/1", clientv3.WithRev(r))
	must(t, "get", err)
	if len(g.Kvs) != 0 {
		t.Errorf("deleted key at the compaction revision: %s", fmtKVs(g.Kvs))
	}
	_, err = cli.Get(tctx(t), "c/1", clientv3.WithRev(d.Header.Revision))
	if d.Header.Revision < r {
		wantErr(t, "get at the delete, below the compaction", err, rpctypes.ErrGRPCCompacted)
	}
	r2 := put(t, cli, "c/1", "again")
	g, err = cli.Get(tctx(t), "c/1")
	must(t, "get", err)
	if len(g.Kvs) != 1 || g.Kvs[0].Version != 1 || g.Kvs[0].CreateRevision != r2 {
		t.Errorf("key put again after compaction: %s, want version 1 created at %d", fmtKVs(g.Kvs), r2)
	}
}
