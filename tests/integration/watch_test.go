package integration_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tesseradb/tessera/cmd/tessera/server"
	"github.com/tesseradb/tessera/tests/testcluster"
)

// The watch tests follow the behaviours etcd's tests/integration
// v3_watch_test.go and clientv3 watch_test.go check, on a cluster whose
// keyspace is four ranges: watches that span ranges get one revision order.

// ev is an expected event.
type ev struct {
	typ mvccpb.Event_EventType
	key string
	val string
	rev int64
}

func (e ev) String() string {
	return fmt.Sprintf("%s %s=%q@%d", e.typ, e.key, e.val, e.rev)
}

func evOf(e *mvccpb.Event) ev {
	return ev{typ: e.Type, key: string(e.Kv.Key), val: string(e.Kv.Value), rev: e.Kv.ModRevision}
}

// collect reads n events from a watch channel (failing on errors, cancels
// or a timeout), checking that each response's events share no revision
// with another response.
func collect(t *testing.T, wch clientv3.WatchChan, n int) []ev {
	t.Helper()
	var out []ev
	seenRev := map[int64]bool{}
	deadline := time.After(opTimeout)
	for len(out) < n {
		select {
		case wr, ok := <-wch:
			if !ok {
				t.Fatalf("watch channel closed after %d of %d events: %v", len(out), n, out)
			}
			if err := wr.Err(); err != nil {
				t.Fatalf("watch error after %d events: %v", len(out), err)
			}
			if wr.IsProgressNotify() {
				continue
			}
			revs := map[int64]bool{}
			for _, e := range wr.Events {
				revs[e.Kv.ModRevision] = true
				out = append(out, evOf(e))
			}
			for r := range revs {
				if seenRev[r] {
					t.Errorf("events of revision %d split over responses", r)
				}
				seenRev[r] = true
			}
		case <-deadline:
			t.Fatalf("timed out after %d of %d events: %v", len(out), n, out)
		}
	}
	return out
}

// noMoreEvents checks that a watch delivers nothing more while a marker
// write on another key (watched by marker) comes through.
func noMoreEvents(t *testing.T, cli *clientv3.Client, wch clientv3.WatchChan) {
	t.Helper()
	select {
	case wr, ok := <-wch:
		if ok && len(wr.Events) > 0 {
			t.Fatalf("unexpected events: %v", wr.Events)
		}
	case <-time.After(200 * time.Millisecond):
	}
}

func wantEvents(t *testing.T, what string, got, want []ev) {
	t.Helper()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("%s:\n got  %v\n want %v", what, got, want)
	}
}

// TestWatchSingleKeyRangeAndPrefix: a watch on one key, on a key range and
// on a prefix sees exactly the writes in its span, in revision order, also
// when the span crosses ranges (etcd's TestV3WatchFromCurrentRevision).
func TestWatchSingleKeyRangeAndPrefix(t *testing.T) {
	_, cli := newClusterClient(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	one := cli.Watch(ctx, "c/1")
	rng := cli.Watch(ctx, "a/5", clientv3.WithRange("e/5"))
	all := cli.Watch(ctx, "", clientv3.WithPrefix())
	pfx := cli.Watch(ctx, "g/", clientv3.WithPrefix())

	var wantAll, wantOne, wantRng, wantPfx []ev
	for i := 0; i < 3; i++ {
		for _, p := range rangeKeys {
			for _, k := range []string{p + "/1", p + "/7"} {
				v := fmt.Sprintf("v%d", i)
				e := ev{mvccpb.PUT, k, v, put(t, cli, k, v)}
				wantAll = append(wantAll, e)
				if k == "c/1" {
					wantOne = append(wantOne, e)
				}
				if k >= "a/5" && k < "e/5" {
					wantRng = append(wantRng, e)
				}
				if strings.HasPrefix(k, "g/") {
					wantPfx = append(wantPfx, e)
				}
			}
		}
	}
	dr, err := cli.Delete(tctx(t), "c/", clientv3.WithPrefix())
	must(t, "delete", err)
	for _, k := range []string{"c/1", "c/7"} {
		e := ev{mvccpb.DELETE, k, "", dr.Header.Revision}
		wantAll = append(wantAll, e)
		wantRng = append(wantRng, e)
	}
	wantOne = append(wantOne, ev{mvccpb.DELETE, "c/1", "", dr.Header.Revision})

	wantEvents(t, "watch of every key", collect(t, all, len(wantAll)), wantAll)
	wantEvents(t, "watch of c/1", collect(t, one, len(wantOne)), wantOne)
	wantEvents(t, "watch of [a/5, e/5)", collect(t, rng, len(wantRng)), wantRng)
	wantEvents(t, "watch of prefix g/", collect(t, pfx, len(wantPfx)), wantPfx)
	noMoreEvents(t, cli, one)
}

// TestWatchFromPastRevision: a watch that starts at an old revision gets the
// history from there across ranges in revision order, then live events
// (etcd's TestV3WatchFromPastRevision, clientv3's TestWatchResumeInitRev).
func TestWatchFromPastRevision(t *testing.T) {
	_, cli := newClusterClient(t)
	var hist []ev
	for i := 0; i < 4; i++ {
		for _, p := range []string{"g", "a", "e", "c"} {
			k := p + "/k"
			v := fmt.Sprint(i)
			hist = append(hist, ev{mvccpb.PUT, k, v, put(t, cli, k, v)})
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	from := hist[5].rev
	wch := cli.Watch(ctx, "", clientv3.WithPrefix(), clientv3.WithRev(from))
	got := collect(t, wch, len(hist)-5)
	wantEvents(t, "history from a past revision", got, hist[5:])
	live := ev{mvccpb.PUT, "e/live", "x", put(t, cli, "e/live", "x")}
	wantEvents(t, "live after history", collect(t, wch, 1), []ev{live})
}

// TestWatchTxnOneResponse: all events of one revision (a Txn) arrive in one
// response, in the order of the txn's ops (etcd's TestV3WatchMultipleEventsTxn).
func TestWatchTxnOneResponse(t *testing.T) {
	_, cli := newClusterClient(t)
	put(t, cli, "e/2", "old")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wch := cli.Watch(ctx, "e/", clientv3.WithPrefix(), clientv3.WithPrevKV())
	tr, err := cli.Txn(tctx(t)).Then(
		clientv3.OpPut("e/1", "x"), clientv3.OpDelete("e/2"), clientv3.OpPut("e/3", "y"),
	).Commit()
	must(t, "txn", err)
	rev := tr.Header.Revision
	select {
	case wr := <-wch:
		must(t, "watch", wr.Err())
		var got []ev
		for _, e := range wr.Events {
			got = append(got, evOf(e))
		}
		wantEvents(t, "txn events in one response", got, []ev{
			{mvccpb.PUT, "e/1", "x", rev}, {mvccpb.DELETE, "e/2", "", rev}, {mvccpb.PUT, "e/3", "y", rev},
		})
		if len(wr.Events) == 3 {
			if p := wr.Events[1].PrevKv; p == nil || string(p.Value) != "old" {
				t.Errorf("delete event's prev_kv = %v, want old", p)
			}
			if wr.Events[0].PrevKv != nil {
				t.Errorf("put of a new key has prev_kv %v", wr.Events[0].PrevKv)
			}
		}
	case <-time.After(opTimeout):
		t.Fatal("no txn events")
	}
}

// TestWatchCancel: after a cancel the watcher gets nothing more; other
// watchers of the stream go on (etcd's TestV3WatchCancelSynced).
func TestWatchCancel(t *testing.T) {
	_, cli := newClusterClient(t)
	stream, err := pb.NewWatchClient(cli.ActiveConnection()).Watch(tctx(t))
	must(t, "open stream", err)
	create := func(key string, id int64) *pb.WatchResponse {
		t.Helper()
		must(t, "create", stream.Send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{
			CreateRequest: &pb.WatchCreateRequest{Key: []byte(key), WatchId: id}}}))
		r, err := stream.Recv()
		must(t, "created", err)
		return r
	}
	a := create("a/x", 0)
	b := create("g/x", 0)
	if !a.Created || !b.Created || a.WatchId != 0 || b.WatchId != 1 {
		t.Fatalf("created responses: %v / %v (want ids 0 and 1)", a, b)
	}
	// A client-chosen id, and the same id again.
	c := create("e/x", 7)
	if !c.Created || c.WatchId != 7 || c.Canceled {
		t.Fatalf("client-chosen id: %v", c)
	}
	dup := create("e/y", 7)
	if !dup.Created || !dup.Canceled || dup.CancelReason != "mvcc: duplicate watch ID provided on the WatchStream" {
		t.Fatalf("duplicate id: %v", dup)
	}
	must(t, "cancel", stream.Send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CancelRequest{
		CancelRequest: &pb.WatchCancelRequest{WatchId: 0}}}))
	r, err := stream.Recv()
	must(t, "canceled", err)
	if !r.Canceled || r.WatchId != 0 {
		t.Fatalf("cancel response: %v", r)
	}
	put(t, cli, "a/x", "1")
	rev := put(t, cli, "g/x", "1")
	r, err = stream.Recv()
	must(t, "event", err)
	if r.WatchId != 1 || len(r.Events) != 1 || r.Events[0].Kv.ModRevision != rev {
		t.Fatalf("after cancel: %v, want only watch 1's event at %d", r, rev)
	}
}

// TestWatchInvalidRange: key >= range_end is refused as etcd refuses it.
func TestWatchInvalidRange(t *testing.T) {
	_, cli := newClusterClient(t)
	stream, err := pb.NewWatchClient(cli.ActiveConnection()).Watch(tctx(t))
	must(t, "open stream", err)
	must(t, "create", stream.Send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{
		CreateRequest: &pb.WatchCreateRequest{Key: []byte("b"), RangeEnd: []byte("a")}}}))
	r, err := stream.Recv()
	must(t, "response", err)
	if !r.Created || !r.Canceled || r.WatchId != -1 || r.CancelReason != "mvcc: watcher range is empty" {
		t.Fatalf("invalid range: %v", r)
	}
}

// TestWatchFilters: NOPUT and NODELETE drop the events they name (etcd's
// TestWatchWithFilter).
func TestWatchFilters(t *testing.T) {
	_, cli := newClusterClient(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	noPut := cli.Watch(ctx, "c/f", clientv3.WithFilterPut())
	noDel := cli.Watch(ctx, "c/f", clientv3.WithFilterDelete())
	pr := put(t, cli, "c/f", "v")
	dr, err := cli.Delete(tctx(t), "c/f")
	must(t, "delete", err)
	wantEvents(t, "NOPUT", collect(t, noPut, 1), []ev{{mvccpb.DELETE, "c/f", "", dr.Header.Revision}})
	wantEvents(t, "NODELETE", collect(t, noDel, 1), []ev{{mvccpb.PUT, "c/f", "v", pr}})
}

// TestWatchCompacted: a watch starting below the compaction revision is
// canceled with compact_revision (clientv3: ErrCompacted), as in etcd's
// TestWatchCompactRevision.
func TestWatchCompacted(t *testing.T) {
	_, cli := newClusterClient(t)
	first := put(t, cli, "a/c", "1")
	put(t, cli, "e/c", "2")
	last := put(t, cli, "a/c", "3")
	_, err := cli.Compact(tctx(t), last)
	must(t, "compact", err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wch := cli.Watch(ctx, "", clientv3.WithPrefix(), clientv3.WithRev(first))
	select {
	case wr, ok := <-wch:
		if !ok {
			t.Fatal("channel closed without a response")
		}
		if wr.CompactRevision != last || !errIs(wr.Err(), rpctypes.ErrCompacted) {
			t.Fatalf("compacted watch: compact_revision %d err %v, want %d and %v", wr.CompactRevision, wr.Err(), last, rpctypes.ErrCompacted)
		}
	case <-time.After(opTimeout):
		t.Fatal("no compaction response")
	}
	// At the compaction revision itself the history is still there.
	wch = cli.Watch(ctx, "a/", clientv3.WithPrefix(), clientv3.WithRev(last))
	wantEvents(t, "watch from the compaction revision", collect(t, wch, 1), []ev{{mvccpb.PUT, "a/c", "3", last}})
}

// TestWatchRequestProgress: a progress request is answered with a revision
// at least that of every write acknowledged before it, after the events up
// to it (etcd's TestV3WatchProgressOnMemberRestart / RequestProgress).
func TestWatchRequestProgress(t *testing.T) {
	_, cli := newClusterClient(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wch := cli.Watch(ctx, "", clientv3.WithPrefix())
	var last int64
	for _, p := range rangeKeys {
		last = put(t, cli, p+"/p", "v")
	}
	must(t, "request progress", cli.RequestProgress(tctx(t)))
	events := 0
	for {
		select {
		case wr := <-wch:
			must(t, "watch", wr.Err())
			if wr.IsProgressNotify() {
				if events != len(rangeKeys) {
					t.Fatalf("progress at %d after %d of %d events", wr.Header.Revision, events, len(rangeKeys))
				}
				if wr.Header.Revision < last {
					t.Fatalf("progress revision %d below the last write %d", wr.Header.Revision, last)
				}
				return
			}
			events += len(wr.Events)
		case <-time.After(opTimeout):
			t.Fatal("no progress notification")
		}
	}
}

// TestWatchHistorySurvivesRestart: the history a watch catches up from (the
// ranges' change logs) survives a restart of every node, with prev_kv.
func TestWatchHistorySurvivesRestart(t *testing.T) {
	c, cli := newClusterClient(t)
	var hist []ev
	for i := 0; i < 3; i++ {
		for _, p := range rangeKeys {
			k, v := p+"/r", fmt.Sprint(i)
			hist = append(hist, ev{mvccpb.PUT, k, v, put(t, cli, k, v)})
		}
	}
	for i := 0; i < c.Size(); i++ {
		c.Stop(i)
	}
	for i := 0; i < c.Size(); i++ {
		c.Restart(i)
	}
	c.WaitReady(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wch := c.NodeClient(t, 1).Watch(ctx, "", clientv3.WithPrefix(), clientv3.WithRev(hist[0].rev), clientv3.WithPrevKV())
	var got []ev
	var prevs []string
	deadline := time.After(opTimeout)
	for len(got) < len(hist) {
		select {
		case wr := <-wch:
			must(t, "watch", wr.Err())
			for _, e := range wr.Events {
				got = append(got, evOf(e))
				p := ""
				if e.PrevKv != nil {
					p = string(e.PrevKv.Value)
				}
				prevs = append(prevs, p)
			}
		case <-deadline:
			t.Fatalf("after restart: %d of %d events: %v", len(got), len(hist), got)
		}
	}
	wantEvents(t, "history after a restart of every node", got, hist)
	for i := range hist {
		want := ""
		if i >= len(rangeKeys) {
			want = hist[i-len(rangeKeys)].val
		}
		if prevs[i] != want {
			t.Errorf("event %v: prev_kv %q, want %q", hist[i], prevs[i], want)
		}
	}
}

// TestWatchHistoryMovesWithSnapshot: a replica that caught up by snapshot
// (its log was truncated while it was down) holds the change log too: as
// the range's leader it serves a watch from a revision before the snapshot.
func TestWatchHistoryMovesWithSnapshot(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Nodes: 3, SplitKeys: splitKeys, Configure: func(cfg *server.Config) {
		cfg.RaftLogTruncateThreshold = 16
	}})
	c.WaitReady(t)
	cli := c.Client(t)
	const rangeOfC = 3 // ["b", "d")
	c.TransferLeader(rangeOfC, 0)
	c.Stop(2)
	var hist []ev
	for i := 0; i < 60; i++ {
		k, v := fmt.Sprintf("c/s%d", i%7), fmt.Sprint(i)
		hist = append(hist, ev{mvccpb.PUT, k, v, put(t, cli, k, v)})
	}
	c.Restart(2)
	c.WaitReady(t)
	// Node 2 has every write only once it applied the snapshot and the
	// entries after it; leading the range proves it is caught up.
	c.TransferLeader(rangeOfC, 2)
	if l := c.Leader(rangeOfC); l != 2 {
		t.Fatalf("range %d led by node index %d, want 2", rangeOfC, l)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wch := c.NodeClient(t, 2).Watch(ctx, "c/", clientv3.WithPrefix(), clientv3.WithRev(hist[0].rev))
	wantEvents(t, "history served by a replica that caught up by snapshot", collect(t, wch, len(hist)), hist)
	if n := metricValue(t, c.Endpoint(2), "tessera_raft_snapshots_applied_total"); n < 1 {
		t.Errorf("node 2 applied %v snapshots: it did not catch up by snapshot, the test did not test it", n)
	}
}

// TestWatchSurvivesCompaction: a compaction at the current revision does not
// cancel live watches, also on ranges that had no writes for a while (etcd
// only cancels watchers that need history below the compaction revision).
func TestWatchSurvivesCompaction(t *testing.T) {
	_, cli := newClusterClient(t)
	for _, p := range rangeKeys {
		put(t, cli, p+"/old", "x")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wch := cli.Watch(ctx, "", clientv3.WithPrefix())
	// Only range "a" is written; the others stay idle.
	var want []ev
	for i := 0; i < 3; i++ {
		want = append(want, ev{mvccpb.PUT, "a/new", fmt.Sprint(i), put(t, cli, "a/new", fmt.Sprint(i))})
	}
	_, err := cli.Compact(tctx(t), want[len(want)-1].rev)
	must(t, "compact", err)
	for _, p := range rangeKeys {
		want = append(want, ev{mvccpb.PUT, p + "/after", "y", put(t, cli, p+"/after", "y")})
	}
	wantEvents(t, "events across a compaction", collect(t, wch, len(want)), want)
}
