package integration_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tesseradb/tessera/cmd/tessera/server"
	"github.com/tesseradb/tessera/tests/testcluster"
)

// TestCurrentRevisionIsTheLatestWrite checks, with clientv3 on a three-node
// four-range cluster, what Kubernetes' storage layer relies on: the revision
// a read reports is the revision of the cluster's latest write (in any
// range, also one the read does not cover, written through another node),
// reads with no write between them report the same revision, a list reports
// its newest object's revision, and a revision above the latest write is
// the future.
func TestCurrentRevisionIsTheLatestWrite(t *testing.T) {
	c := newCluster(t)
	clis := []*clientv3.Client{c.NodeClient(t, 0), c.NodeClient(t, 1), c.NodeClient(t, 2)}

	// After creating one object and nothing else, the current revision (a
	// read of any key, through any node) is the object's revision.
	pr, err := clis[0].Put(tctx(t), "c/pods/one", "1")
	must(t, "create", err)
	created := pr.Header.Revision
	for i, cli := range clis {
		for _, k := range rangeKeys { // one read per range: three of them do not hold the object
			gr, err := cli.Get(tctx(t), k)
			must(t, "get", err)
			if gr.Header.Revision != created {
				t.Fatalf("node %d: get %q after one create at %d: header revision %d", i, k, created, gr.Header.Revision)
			}
		}
		gr, err := cli.Get(tctx(t), "c/pods/one")
		must(t, "get object", err)
		if len(gr.Kvs) != 1 || gr.Kvs[0].ModRevision != gr.Header.Revision {
			t.Fatalf("node %d: object %v, header revision %d: want its mod revision", i, gr.Kvs, gr.Header.Revision)
		}
	}

	// Two reads with no write between them report the same revision.
	a, err := clis[1].Get(tctx(t), "a", clientv3.WithPrefix())
	must(t, "first read", err)
	b, err := clis[2].Get(tctx(t), "g", clientv3.WithPrefix())
	must(t, "second read", err)
	if a.Header.Revision != b.Header.Revision {
		t.Fatalf("two reads with no write between: revisions %d and %d", a.Header.Revision, b.Header.Revision)
	}

	// Reads with no write anywhere since the node's last read ask no other
	// range; after a write in another range, one read asks that range only
	// (the TSO names it), not every range.
	probes := func(reason string) float64 {
		return metricValue(t, c.Endpoint(1), `tessera_router_latest_write_probes_total{reason="`+reason+`"}`)
	}
	writerAsks, roundAsks := probes("writer"), probes("unknown")
	for range 5 {
		gr, err := clis[1].Get(tctx(t), "a")
		must(t, "get", err)
		if gr.Header.Revision != created {
			t.Fatalf("get with no write: revision %d, want %d", gr.Header.Revision, created)
		}
	}
	if w, u := probes("writer"), probes("unknown"); w != writerAsks || u != roundAsks {
		t.Fatalf("5 reads with no write asked other ranges: writer %v -> %v, unknown %v -> %v", writerAsks, w, roundAsks, u)
	}
	again := put(t, clis[0], "c/pods/one", "2")
	gr, err := clis[1].Get(tctx(t), "a")
	must(t, "get after a write elsewhere", err)
	if gr.Header.Revision != again {
		t.Fatalf("get of range 2 after a write in range 3 at %d: revision %d", again, gr.Header.Revision)
	}
	if w, u := probes("writer"), probes("unknown"); w != writerAsks+1 || u != roundAsks {
		t.Fatalf("a read after one write elsewhere: writer asks %v -> %v (want +1), unknown %v -> %v (want +0)", writerAsks, w, roundAsks, u)
	}

	// A list over every range reports the revision of the latest write,
	// which is its newest object's.
	var last int64
	for i, k := range []string{"a/x", "g/x", "e/x", "c/x"} {
		last = put(t, clis[i%3], k, fmt.Sprint(i))
	}
	list, err := clis[1].Get(tctx(t), "", clientv3.WithFromKey())
	must(t, "list", err)
	var newest int64
	for _, kv := range list.Kvs {
		newest = max(newest, kv.ModRevision)
	}
	if list.Header.Revision != last || newest != last {
		t.Fatalf("list after the last write at %d: header revision %d, newest object at %d", last, list.Header.Revision, newest)
	}

	// So does Status (etcdctl endpoint status), on every node.
	for i, cli := range clis {
		st, err := cli.Status(tctx(t), c.Endpoint(i))
		must(t, "status", err)
		if st.Header.Revision != last {
			t.Fatalf("node %d: status after the last write at %d: header revision %d", i, last, st.Header.Revision)
		}
	}

	// A read-only txn and an empty txn report it too.
	tr, err := clis[2].Txn(tctx(t)).If(clientv3.Compare(clientv3.Version("a/x"), ">", 0)).Then(clientv3.OpGet("a/x")).Commit()
	must(t, "read-only txn", err)
	if tr.Header.Revision != last || tr.Responses[0].GetResponseRange().GetHeader().GetRevision() != last {
		t.Fatalf("read-only txn after the last write at %d: header revision %d, nested %d", last, tr.Header.Revision, tr.Responses[0].GetResponseRange().GetHeader().GetRevision())
	}
	er, err := clis[0].Txn(tctx(t)).Commit()
	must(t, "empty txn", err)
	if er.Header.Revision != last {
		t.Fatalf("empty txn after the last write at %d: header revision %d", last, er.Header.Revision)
	}

	// A txn whose compare fails into reads, and a delete of nothing, write
	// nothing: the current revision stays (as etcd's).
	ft, err := clis[0].Txn(tctx(t)).If(clientv3.Compare(clientv3.Version("a/x"), "=", 0)).Then(clientv3.OpPut("a/x", "no")).Else(clientv3.OpGet("a/x")).Commit()
	must(t, "failed txn", err)
	dr, err := clis[1].Delete(tctx(t), "e/none")
	must(t, "delete of nothing", err)
	if ft.Header.Revision != last || dr.Header.Revision != last {
		t.Fatalf("a failed txn and a delete of nothing answer at %d and %d, want the current revision %d", ft.Header.Revision, dr.Header.Revision, last)
	}
	gr, err = clis[2].Get(tctx(t), "a/x")
	must(t, "get after writes of nothing", err)
	if gr.Header.Revision != last {
		t.Fatalf("after a failed txn and a delete of nothing: header revision %d, want the last write's %d", gr.Header.Revision, last)
	}

	// An exact read at the current revision is served; above it (current+1,
	// current+2, as Kubernetes' ResourceVersionMatch=Exact test asks) is the
	// future, on every range and through every node. So is a compaction.
	if _, err := clis[0].Get(tctx(t), "a/x", clientv3.WithRev(last)); err != nil {
		t.Fatalf("get at the current revision %d: %v", last, err)
	}
	for i, cli := range clis {
		for _, k := range rangeKeys {
			for _, d := range []int64{1, 2} {
				_, err := cli.Get(tctx(t), k, clientv3.WithRev(last+d))
				wantErr(t, fmt.Sprintf("node %d: get %q at current+%d", i, k, d), err, rpctypes.ErrFutureRev)
			}
		}
		_, err := cli.Get(tctx(t), "", clientv3.WithFromKey(), clientv3.WithRev(last+2))
		wantErr(t, fmt.Sprintf("node %d: list at current+2", i), err, rpctypes.ErrFutureRev)
	}
	_, err = clis[0].Compact(tctx(t), last+1)
	wantErr(t, "compact at current+1", err, rpctypes.ErrFutureRev)
}

// TestWatchRevisionsAreTheLatestWrite: what Kubernetes' watch-list reads
// from a watch. A list reports revision L; a watch from L+1 is created with
// L in its header, and the bookmark that ends the initial events (a
// progress response after RequestProgress) carries L while nothing was
// written, also when the latest write is in a range the watch does not
// cover. After a write, progress carries that write's revision, and so does
// the event.
func TestWatchRevisionsAreTheLatestWrite(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Nodes: 3, SplitKeys: splitKeys, Configure: func(cfg *server.Config) {
		cfg.WatchProgressNotifyInterval = 200 * time.Millisecond
	}})
	c.WaitReady(t)
	writer, reader := c.NodeClient(t, 0), c.NodeClient(t, 1)
	put(t, writer, "g/pods/one", "1")
	last := put(t, writer, "a/elsewhere", "1") // outside the watched prefix

	list, err := reader.Get(tctx(t), "g/pods/", clientv3.WithPrefix())
	must(t, "list", err)
	if list.Header.Revision != last {
		t.Fatalf("list: revision %d, want the latest write's %d", list.Header.Revision, last)
	}
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	wch := reader.Watch(ctx, "g/pods/", clientv3.WithPrefix(), clientv3.WithRev(list.Header.Revision+1), clientv3.WithCreatedNotify())
	created := <-wch
	if !created.Created || created.Header.Revision != last {
		t.Fatalf("watch created: %+v (revision %d), want created at the latest write's %d", created, created.Header.Revision, last)
	}
	must(t, "request progress", reader.RequestProgress(ctx))
	wantProgress := func(what string, want int64) {
		t.Helper()
		for wr := range wch {
			must(t, what, wr.Err())
			if len(wr.Events) > 0 {
				t.Fatalf("%s: unexpected events %v", what, wr.Events)
			}
			if wr.IsProgressNotify() {
				if wr.Header.Revision != want {
					t.Fatalf("%s: progress at %d, want %d", what, wr.Header.Revision, want)
				}
				return
			}
		}
		t.Fatalf("%s: watch ended", what)
	}
	wantProgress("bookmark after the list", last)

	// A watcher created without a start revision names the latest write.
	w2 := reader.Watch(ctx, "c/", clientv3.WithPrefix(), clientv3.WithCreatedNotify(), clientv3.WithProgressNotify())
	if cr := <-w2; !cr.Created || cr.Header.Revision != last {
		t.Fatalf("watch without a start revision: created at %d, want %d", cr.Header.Revision, last)
	}
	// Its periodic progress notifications name it too, while nothing is
	// written.
	for wr := range w2 {
		must(t, "progress notification", wr.Err())
		if wr.IsProgressNotify() {
			if wr.Header.Revision != last {
				t.Fatalf("progress notification at %d, want the latest write's %d", wr.Header.Revision, last)
			}
			break
		}
	}

	next := put(t, writer, "g/pods/two", "2")
	wr := <-wch
	if len(wr.Events) != 1 || wr.Events[0].Kv.ModRevision != next || wr.Header.Revision != next {
		t.Fatalf("event of the write at %d: %+v (header %d)", next, wr.Events, wr.Header.Revision)
	}
	must(t, "request progress", reader.RequestProgress(ctx))
	wantProgress("progress after a write", next)
}
