package integration_test

import (
	"bytes"
	"fmt"
	"slices"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
)

// rangeData is the data set of the Range tests: two keys on each of the four
// ranges, created in an order unlike key order, each with a different number
// of versions and a final value whose order is unlike both, so that every
// sort target gives a different, tie-free order.
var rangeData = struct {
	createOrder []string
	versions    map[string]int
	final       map[string]string
}{
	createOrder: []string{"g", "a", "e/1", "c", "g/1", "a/1", "e", "c/1"},
	versions:    map[string]int{"a": 3, "a/1": 8, "c": 5, "c/1": 1, "e": 7, "e/1": 2, "g": 4, "g/1": 6},
	final:       map[string]string{"a": "m", "a/1": "d", "c": "x", "c/1": "b", "e": "q", "e/1": "h", "g": "a", "g/1": "t"},
}

// writeRangeData writes rangeData through cli and returns the model of it.
// Intermediate versions of key k have the value "k#n".
func writeRangeData(t *testing.T, cli *clientv3.Client) *model {
	t.Helper()
	m := &model{}
	value := func(k string, n int) string {
		if n == rangeData.versions[k] {
			return rangeData.final[k]
		}
		return fmt.Sprintf("%s#%d", k, n)
	}
	for _, k := range rangeData.createOrder {
		m.put(k, value(k, 1), put(t, cli, k, value(k, 1)))
	}
	for n := 2; n <= 8; n++ {
		for _, k := range rangeData.createOrder {
			if rangeData.versions[k] >= n {
				m.put(k, value(k, n), put(t, cli, k, value(k, n)))
			}
		}
	}
	return m
}

// span returns the keys [from, to) that req names in the model's terms
// (to "" for no end; ok false for an empty span).
func span(req *pb.RangeRequest) (from, to string, ok bool) {
	k, e := string(req.Key), string(req.RangeEnd)
	switch {
	case e == "":
		return k, k + "\x00", true
	case e == "\x00":
		return k, "", true
	case e <= k:
		return "", "", false
	}
	return k, e, true
}

// etcdRange is etcd's Range (server/etcdserver/txn/range.go, v3.5+) on the
// model's state at rev: count over the span before the revision filters; the
// first limit+1 keys only when neither a sort order nor a filter is given;
// filters; sort (ascending when the order is NONE and the target is not KEY);
// truncation to limit, with more.
func etcdRange(m *model, rev int64, r *pb.RangeRequest) *pb.RangeResponse {
	if r.Revision > 0 {
		rev = r.Revision
	}
	from, to, ok := span(r)
	var kvs []*mvccpb.KeyValue
	if ok {
		kvs = m.at(rev, from, to)
	}
	resp := &pb.RangeResponse{Count: int64(len(kvs))}
	if r.CountOnly {
		return resp
	}
	limit := r.Limit
	if r.SortOrder != pb.RangeRequest_NONE || r.MinModRevision != 0 || r.MaxModRevision != 0 ||
		r.MinCreateRevision != 0 || r.MaxCreateRevision != 0 {
		limit = 0
	}
	if limit > 0 && int64(len(kvs)) > limit+1 {
		kvs = kvs[:limit+1]
	}
	kvs = slices.DeleteFunc(kvs, func(kv *mvccpb.KeyValue) bool {
		return (r.MaxModRevision != 0 && kv.ModRevision > r.MaxModRevision) ||
			(r.MinModRevision != 0 && kv.ModRevision < r.MinModRevision) ||
			(r.MaxCreateRevision != 0 && kv.CreateRevision > r.MaxCreateRevision) ||
			(r.MinCreateRevision != 0 && kv.CreateRevision < r.MinCreateRevision)
	})
	order := r.SortOrder
	if r.SortTarget != pb.RangeRequest_KEY && order == pb.RangeRequest_NONE {
		order = pb.RangeRequest_ASCEND
	}
	if order != pb.RangeRequest_NONE {
		cmp := func(a, b *mvccpb.KeyValue) int {
			switch r.SortTarget {
			case pb.RangeRequest_VERSION:
				return int(a.Version - b.Version)
			case pb.RangeRequest_CREATE:
				return cmpInt(a.CreateRevision, b.CreateRevision)
			case pb.RangeRequest_MOD:
				return cmpInt(a.ModRevision, b.ModRevision)
			case pb.RangeRequest_VALUE:
				return bytes.Compare(a.Value, b.Value)
			}
			return bytes.Compare(a.Key, b.Key)
		}
		if order == pb.RangeRequest_DESCEND {
			asc := cmp
			cmp = func(a, b *mvccpb.KeyValue) int { return asc(b, a) }
		}
		// rangeData has no ties, so a stable sort gives etcd's order.
		slices.SortStableFunc(kvs, cmp)
	}
	if r.Limit > 0 && int64(len(kvs)) > r.Limit {
		kvs = kvs[:r.Limit]
		resp.More = true
	}
	if r.KeysOnly {
		for i, kv := range kvs {
			c := proto.Clone(kv).(*mvccpb.KeyValue)
			c.Value = nil
			kvs[i] = c
		}
	}
	resp.Kvs = kvs
	return resp
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// checkRange sends req and compares the answer with etcdRange's.
func checkRange(t *testing.T, kv pb.KVClient, m *model, lastWrite int64, req *pb.RangeRequest) {
	t.Helper()
	what := prototext.MarshalOptions{}.Format(req)
	resp, err := kv.Range(tctx(t), req)
	if err != nil {
		t.Errorf("range {%s}: %v", what, err)
		return
	}
	want := etcdRange(m, lastWrite, req)
	wantKVs(t, "range {"+what+"}", resp.Kvs, want.Kvs)
	if resp.More != want.More || resp.Count != want.Count {
		t.Errorf("range {%s}: more %v count %d, want more %v count %d", what, resp.More, resp.Count, want.More, want.Count)
	}
	if resp.Header.GetRevision() < lastWrite || resp.Header.GetRevision() < req.Revision {
		t.Errorf("range {%s}: header revision %d below the last write %d or the requested revision", what, resp.Header.GetRevision(), lastWrite)
	}
}

// rangeSpans are the spans the Range tests read: whole keyspace, several
// ranges, exactly one range, inside one range, single keys, empty spans.
var rangeSpans = []struct {
	key, end string
	sorts    bool // also check every sort, limit and filter on it
}{
	{"a", "z", true},          // every key, ranges 2-5
	{"\x00", "\x00", true},    // every key, from-key form
	{"a/", "e0", true},        // a/1 .. e/1: ranges 2-4, starting inside 2
	{"c", "\x00", true},       // from-key c: ranges 3-5
	{"d", "f", true},          // exactly range 4
	{"b", "d", false},         // exactly range 3
	{"c", "c0", false},        // prefix c inside range 3
	{"c/1", "", false},        // a single key
	{"c/2", "", false},        // a missing key
	{"c", "c", false},         // [c, c): empty
	{"e", "c", false},         // inverted: empty
	{"h", "z", false},         // no key, in range 5
	{"\x00", "b", false},      // exactly range 2
	{"f", "\x00", false},      // exactly range 5, from-key form
	{"a/1", "g/1\x00", false}, // from a/1 to g/1 inclusive
	{"e/1", "e/1\x00", false}, // one key as a span
}

// TestRangeOptions checks Range with every option on spans over one and
// several ranges against etcd's algorithm applied to what was written:
// sort by every target in every order, limit with more and count, revision
// filters, keys_only, count_only (etcd's TestV3RangeRequest, TestKVRange,
// TestKVGetKeysOnlyWithCountOnly).
func TestRangeOptions(t *testing.T) {
	c, cli := newClusterClient(t)
	m := writeRangeData(t, cli)
	last := m.writes[len(m.writes)-1].rev
	// Filter bounds: revisions of writes early, in the middle and late, and
	// instants between writes.
	w := m.writes
	revs := []int64{w[3].rev, w[10].rev, w[17].rev, w[25].rev, w[30].rev, w[12].rev + 1, w[20].rev - 1}
	targets := []pb.RangeRequest_SortTarget{pb.RangeRequest_KEY, pb.RangeRequest_VERSION, pb.RangeRequest_CREATE, pb.RangeRequest_MOD, pb.RangeRequest_VALUE}
	orders := []pb.RangeRequest_SortOrder{pb.RangeRequest_NONE, pb.RangeRequest_ASCEND, pb.RangeRequest_DESCEND}

	for node := range 3 {
		kv := rawKV(c.NodeClient(t, node))
		for _, s := range rangeSpans {
			base := pb.RangeRequest{Key: []byte(s.key), RangeEnd: []byte(s.end)}
			var reqs []*pb.RangeRequest
			add := func(f func(r *pb.RangeRequest)) {
				r := proto.Clone(&base).(*pb.RangeRequest)
				f(r)
				reqs = append(reqs, r)
			}
			add(func(r *pb.RangeRequest) {})
			add(func(r *pb.RangeRequest) { r.KeysOnly = true })
			add(func(r *pb.RangeRequest) { r.CountOnly = true })
			add(func(r *pb.RangeRequest) { r.CountOnly, r.KeysOnly = true, true })
			add(func(r *pb.RangeRequest) { r.CountOnly, r.Limit = true, 1 })
			for _, limit := range []int64{1, 2, 3, 7, 8, 9, -1} {
				add(func(r *pb.RangeRequest) { r.Limit = limit })
			}
			if s.sorts && node == 0 {
				for _, tg := range targets {
					for _, o := range orders {
						for _, limit := range []int64{0, 1, 3, 100} {
							add(func(r *pb.RangeRequest) { r.SortTarget, r.SortOrder, r.Limit = tg, o, limit })
							add(func(r *pb.RangeRequest) { r.SortTarget, r.SortOrder, r.Limit, r.KeysOnly = tg, o, limit, true })
						}
					}
				}
				for _, rv := range revs {
					add(func(r *pb.RangeRequest) { r.MinModRevision = rv })
					add(func(r *pb.RangeRequest) { r.MaxModRevision = rv })
					add(func(r *pb.RangeRequest) { r.MinCreateRevision = rv })
					add(func(r *pb.RangeRequest) { r.MaxCreateRevision = rv })
					add(func(r *pb.RangeRequest) { r.MinModRevision, r.Limit = rv, 2 })
					add(func(r *pb.RangeRequest) { r.MaxCreateRevision, r.Limit, r.CountOnly = rv, 2, true })
					add(func(r *pb.RangeRequest) {
						r.MinCreateRevision, r.SortTarget, r.SortOrder, r.Limit = rv, pb.RangeRequest_VALUE, pb.RangeRequest_DESCEND, 2
					})
					add(func(r *pb.RangeRequest) {
						r.MaxModRevision, r.SortTarget, r.Limit = rv, pb.RangeRequest_MOD, 3
					})
				}
				add(func(r *pb.RangeRequest) { r.MinModRevision, r.MaxModRevision = revs[1], revs[3] })
				add(func(r *pb.RangeRequest) { r.MinCreateRevision, r.MaxCreateRevision = w[1].rev, w[6].rev })
				add(func(r *pb.RangeRequest) { r.MinModRevision, r.MaxModRevision = revs[3], revs[1] })
			}
			for _, r := range reqs {
				checkRange(t, kv, m, last, r)
			}
		}
	}
}

// TestRangeRevision reads at the revision of every write and between writes
// (etcd's TestV3RangeRequest "revision", on Tessera's instants: a read at any
// R between two writes shows the state after the earlier one), with and
// without options, over every range at once.
func TestRangeRevision(t *testing.T) {
	_, cli := newClusterClient(t)
	m := writeRangeData(t, cli)
	kv := rawKV(cli)
	last := m.writes[len(m.writes)-1].rev
	first := m.writes[0].rev
	checkRange(t, kv, m, last, &pb.RangeRequest{Key: []byte("\x00"), RangeEnd: []byte("\x00"), Revision: first - 1})
	for i, w := range m.writes {
		revs := []int64{w.rev}
		if i+1 < len(m.writes) && m.writes[i+1].rev > w.rev+1 {
			revs = append(revs, w.rev+1, (w.rev+m.writes[i+1].rev)/2, m.writes[i+1].rev-1)
		}
		for _, rv := range revs {
			checkRange(t, kv, m, last, &pb.RangeRequest{Key: []byte("\x00"), RangeEnd: []byte("\x00"), Revision: rv})
			checkRange(t, kv, m, last, &pb.RangeRequest{Key: []byte("a/"), RangeEnd: []byte("e0"), Revision: rv, Limit: 2})
			checkRange(t, kv, m, last, &pb.RangeRequest{Key: []byte("c"), Revision: rv})
			checkRange(t, kv, m, last, &pb.RangeRequest{Key: []byte("a"), RangeEnd: []byte("z"), Revision: rv, CountOnly: true})
		}
	}
	// A few sorted historical reads.
	mid := m.writes[len(m.writes)/2].rev
	for _, tg := range []pb.RangeRequest_SortTarget{pb.RangeRequest_VERSION, pb.RangeRequest_MOD, pb.RangeRequest_VALUE} {
		checkRange(t, kv, m, last, &pb.RangeRequest{Key: []byte("a"), RangeEnd: []byte("z"), Revision: mid, SortTarget: tg, SortOrder: pb.RangeRequest_DESCEND, Limit: 3})
	}

	// The current revision is valid; one far ahead is ErrFutureRev, on one
	// range and across ranges, and inside a txn.
	g, err := cli.Get(tctx(t), "a")
	must(t, "get", err)
	now := g.Header.Revision
	checkRange(t, kv, m, last, &pb.RangeRequest{Key: []byte("a"), RangeEnd: []byte("z"), Revision: now})
	future := now + 1<<40 // about 70 minutes ahead
	_, err = cli.Get(tctx(t), "a", clientv3.WithRev(future))
	wantErr(t, "get at a future revision", err, rpctypes.ErrGRPCFutureRev)
	_, err = cli.Get(tctx(t), "a", clientv3.WithRange("z"), clientv3.WithRev(future))
	wantErr(t, "get over ranges at a future revision", err, rpctypes.ErrGRPCFutureRev)
	_, err = cli.Txn(tctx(t)).Then(clientv3.OpGet("c", clientv3.WithRev(future))).Commit()
	wantErr(t, "read-only txn at a future revision", err, rpctypes.ErrGRPCFutureRev)
	_, err = cli.Txn(tctx(t)).Then(clientv3.OpPut("c", "x"), clientv3.OpGet("c", clientv3.WithRev(future))).Commit()
	wantErr(t, "txn at a future revision", err, rpctypes.ErrGRPCFutureRev)
	g, err = cli.Get(tctx(t), "c")
	must(t, "get", err)
	wantKVs(t, "c after failed txns", g.Kvs, m.at(last, "c", "c\x00"))
}

// TestRangeClientOptions reads through clientv3's options (prefix, from-key,
// range, limit, sort, keys-only, count-only, revision filters, revision,
// serializable) to check that what etcd's client sends is understood.
func TestRangeClientOptions(t *testing.T) {
	c, cli := newClusterClient(t)
	m := writeRangeData(t, cli)
	last := m.writes[len(m.writes)-1].rev
	all := m.at(last, "", "")
	get := func(what, key string, opts ...clientv3.OpOption) *clientv3.GetResponse {
		t.Helper()
		resp, err := cli.Get(tctx(t), key, opts...)
		must(t, what, err)
		return resp
	}
	wantKVs(t, "prefix c", get("prefix", "c", clientv3.WithPrefix()).Kvs, m.at(last, "c", "d"))
	wantKVs(t, "prefix \"\"", get("prefix", "", clientv3.WithPrefix()).Kvs, all)
	wantKVs(t, "from-key \"\"", get("from-key", "", clientv3.WithFromKey()).Kvs, all)
	wantKVs(t, "from-key c/1", get("from-key", "c/1", clientv3.WithFromKey()).Kvs, m.at(last, "c/1", ""))
	wantKVs(t, "range a/1..e", get("range", "a/1", clientv3.WithRange("e")).Kvs, m.at(last, "a/1", "e"))

	r := get("limit", "", clientv3.WithPrefix(), clientv3.WithLimit(3))
	wantKVs(t, "limit 3", r.Kvs, all[:3])
	if !r.More || r.Count != int64(len(all)) {
		t.Errorf("limit 3: more %v count %d, want true %d", r.More, r.Count, len(all))
	}
	r = get("sort", "", clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortDescend), clientv3.WithLimit(3))
	wantKeys(t, "sort by key descending, limit 3", r.Kvs, "g/1", "g", "e/1")
	r = get("sort", "", clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByVersion, clientv3.SortDescend))
	wantKeys(t, "sort by version descending", r.Kvs, "a/1", "e", "g/1", "c", "g", "a", "e/1", "c/1")
	r = get("sort", "", clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortAscend))
	wantKeys(t, "sort by create ascending", r.Kvs, rangeData.createOrder...)
	r = get("sort", "", clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByModRevision, clientv3.SortAscend))
	wantKeys(t, "sort by mod ascending", r.Kvs, "c/1", "e/1", "a", "g", "c", "g/1", "e", "a/1")
	r = get("sort", "", clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByValue, clientv3.SortAscend))
	wantKeys(t, "sort by value ascending", r.Kvs, "g", "c/1", "a/1", "e/1", "a", "e", "g/1", "c")
	r = get("first create", "", clientv3.WithFirstCreate()...)
	wantKeys(t, "first create", r.Kvs, "g")
	r = get("last create", "", clientv3.WithLastCreate()...)
	wantKeys(t, "last create", r.Kvs, "c/1")
	r = get("first key", "", clientv3.WithFirstKey()...)
	wantKeys(t, "first key", r.Kvs, "a")
	r = get("last key", "", clientv3.WithLastKey()...)
	wantKeys(t, "last key", r.Kvs, "g/1")
	r = get("last rev", "", clientv3.WithLastRev()...)
	wantKeys(t, "last rev", r.Kvs, "a/1")

	r = get("keys only", "", clientv3.WithPrefix(), clientv3.WithKeysOnly())
	for _, kv := range r.Kvs {
		if len(kv.Value) != 0 || kv.Version == 0 || kv.ModRevision == 0 {
			t.Errorf("keys only: %s", fmtKVs(r.Kvs))
			break
		}
	}
	r = get("count only", "", clientv3.WithPrefix(), clientv3.WithCountOnly(), clientv3.WithKeysOnly())
	if len(r.Kvs) != 0 || r.Count != int64(len(all)) || r.More {
		t.Errorf("count only: %d kvs, count %d, more %v; want 0, %d, false", len(r.Kvs), r.Count, r.More, len(all))
	}
	mid := m.writes[20].rev
	r = get("min mod", "", clientv3.WithPrefix(), clientv3.WithMinModRev(mid))
	wantKeys(t, "min mod revision", r.Kvs, "a/1", "c", "e", "g", "g/1")
	r = get("max mod", "", clientv3.WithPrefix(), clientv3.WithMaxModRev(mid))
	wantKeys(t, "max mod revision", r.Kvs, "a", "c/1", "e/1")
	r = get("min create", "", clientv3.WithPrefix(), clientv3.WithMinCreateRev(m.writes[4].rev))
	wantKeys(t, "min create revision", r.Kvs, "a/1", "c/1", "e", "g/1")
	r = get("max create", "", clientv3.WithPrefix(), clientv3.WithMaxCreateRev(m.writes[4].rev))
	wantKeys(t, "max create revision", r.Kvs, "a", "c", "e/1", "g", "g/1")
	r = get("rev", "", clientv3.WithPrefix(), clientv3.WithRev(m.writes[5].rev))
	wantKVs(t, "at the 6th write", r.Kvs, m.at(m.writes[5].rev, "", ""))

	// Serializable reads may lag, but every node catches up.
	for node := range 3 {
		nc := c.NodeClient(t, node)
		deadline := time.Now().Add(opTimeout)
		for {
			r, err := nc.Get(tctx(t), "", clientv3.WithPrefix(), clientv3.WithSerializable())
			must(t, "serializable get", err)
			if len(r.Kvs) == len(all) && r.Kvs[len(all)-1].ModRevision == all[len(all)-1].ModRevision && proto.Equal(r.Kvs[0], all[0]) {
				wantKVs(t, fmt.Sprintf("serializable on node %d", node), r.Kvs, all)
				if r.Header.Revision < last {
					t.Errorf("serializable read on node %d: header revision %d < last write %d", node, r.Header.Revision, last)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("serializable read on node %d never caught up: %s", node, fmtKVs(r.Kvs))
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// TestRangeInvalidSort checks etcd's ErrInvalidSortOption for unknown sort
// orders and targets.
func TestRangeInvalidSort(t *testing.T) {
	_, cli := newClusterClient(t)
	kv := rawKV(cli)
	_, err := kv.Range(tctx(t), &pb.RangeRequest{Key: []byte("a"), SortOrder: 7})
	wantErr(t, "sort order 7", err, rpctypes.ErrGRPCInvalidSortOption)
	_, err = kv.Range(tctx(t), &pb.RangeRequest{Key: []byte("a"), RangeEnd: []byte("z"), SortTarget: 9})
	wantErr(t, "sort target 9", err, rpctypes.ErrGRPCInvalidSortOption)
}

// TestGetStream reads with clientv3's GetStream (etcd 3.7's RangeStream)
// across ranges: the same answer as Get, and ErrCompacted as a typed error.
func TestGetStream(t *testing.T) {
	_, cli := newClusterClient(t)
	m := writeRangeData(t, cli)
	last := m.writes[len(m.writes)-1].rev
	st, err := cli.GetStream(tctx(t), "", clientv3.WithPrefix(), clientv3.WithLimit(5), clientv3.WithSort(clientv3.SortByValue, clientv3.SortDescend))
	must(t, "get stream", err)
	resp, err := clientv3.GetStreamToGetResponse(st)
	must(t, "get stream", err)
	want := etcdRange(m, last, &pb.RangeRequest{Key: []byte("\x00"), RangeEnd: []byte("\x00"), Limit: 5, SortTarget: pb.RangeRequest_VALUE, SortOrder: pb.RangeRequest_DESCEND})
	wantKVs(t, "get stream", resp.Kvs, want.Kvs)
	if resp.Count != want.Count || resp.More != want.More {
		t.Errorf("get stream: count %d more %v, want %d %v", resp.Count, resp.More, want.Count, want.More)
	}

	_, err = cli.Compact(tctx(t), m.writes[10].rev)
	must(t, "compact", err)
	st, err = cli.GetStream(tctx(t), "", clientv3.WithPrefix(), clientv3.WithRev(m.writes[5].rev))
	must(t, "get stream", err)
	_, err = clientv3.GetStreamToGetResponse(st)
	wantErr(t, "get stream below the compaction", err, rpctypes.ErrGRPCCompacted)
}
