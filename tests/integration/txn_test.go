package integration_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestTxnCompares checks every compare target with every result, true and
// false, on an existing and a missing key of each range, both as a
// read-only txn and as a writing one (whose executed branch must be the one
// that wrote): etcd's applyCompare, including "a value compare on a missing
// key is always false".
func TestTxnCompares(t *testing.T) {
	_, cli := newClusterClient(t)
	for _, p := range rangeKeys {
		k, missing := p+"/k", p+"/missing"
		r1 := put(t, cli, k, "v1")
		r2 := put(t, cli, k, "v2")
		type tc struct {
			cmp  clientv3.Cmp
			want bool
		}
		cases := []tc{
			{clientv3.Compare(clientv3.Value(k), "=", "v2"), true},
			{clientv3.Compare(clientv3.Value(k), "=", "v1"), false},
			{clientv3.Compare(clientv3.Value(k), "!=", "v1"), true},
			{clientv3.Compare(clientv3.Value(k), "!=", "v2"), false},
			{clientv3.Compare(clientv3.Value(k), ">", "v1"), true},
			{clientv3.Compare(clientv3.Value(k), ">", "v3"), false},
			{clientv3.Compare(clientv3.Value(k), "<", "v3"), true},
			{clientv3.Compare(clientv3.Value(k), "<", "v2"), false},
			{clientv3.Compare(clientv3.Version(k), "=", 2), true},
			{clientv3.Compare(clientv3.Version(k), "=", 1), false},
			{clientv3.Compare(clientv3.Version(k), "!=", 1), true},
			{clientv3.Compare(clientv3.Version(k), "!=", 2), false},
			{clientv3.Compare(clientv3.Version(k), ">", 1), true},
			{clientv3.Compare(clientv3.Version(k), ">", 2), false},
			{clientv3.Compare(clientv3.Version(k), "<", 3), true},
			{clientv3.Compare(clientv3.Version(k), "<", 2), false},
			{clientv3.Compare(clientv3.CreateRevision(k), "=", r1), true},
			{clientv3.Compare(clientv3.CreateRevision(k), "=", r2), false},
			{clientv3.Compare(clientv3.CreateRevision(k), "!=", r2), true},
			{clientv3.Compare(clientv3.CreateRevision(k), "!=", r1), false},
			{clientv3.Compare(clientv3.CreateRevision(k), ">", r1-1), true},
			{clientv3.Compare(clientv3.CreateRevision(k), ">", r1), false},
			{clientv3.Compare(clientv3.CreateRevision(k), "<", r1+1), true},
			{clientv3.Compare(clientv3.CreateRevision(k), "<", r1), false},
			{clientv3.Compare(clientv3.ModRevision(k), "=", r2), true},
			{clientv3.Compare(clientv3.ModRevision(k), "=", r1), false},
			{clientv3.Compare(clientv3.ModRevision(k), "!=", r1), true},
			{clientv3.Compare(clientv3.ModRevision(k), "!=", r2), false},
			{clientv3.Compare(clientv3.ModRevision(k), ">", r1), true},
			{clientv3.Compare(clientv3.ModRevision(k), ">", r2), false},
			{clientv3.Compare(clientv3.ModRevision(k), "<", r2+1), true},
			{clientv3.Compare(clientv3.ModRevision(k), "<", r2), false},
			{clientv3.Compare(clientv3.LeaseValue(k), "=", 0), true},
			{clientv3.Compare(clientv3.LeaseValue(k), ">", 0), false},
			{clientv3.Compare(clientv3.LeaseValue(k), "!=", 0), false},
			{clientv3.Compare(clientv3.Version(missing), "=", 0), true},
			{clientv3.Compare(clientv3.Version(missing), ">", 0), false},
			{clientv3.Compare(clientv3.CreateRevision(missing), "=", 0), true},
			{clientv3.Compare(clientv3.ModRevision(missing), "<", 1), true},
			{clientv3.Compare(clientv3.ModRevision(missing), ">", 0), false},
			{clientv3.Compare(clientv3.LeaseValue(missing), "=", 0), true},
			{clientv3.Compare(clientv3.Value(missing), "=", ""), false},
			{clientv3.Compare(clientv3.Value(missing), "!=", "x"), false},
			{clientv3.Compare(clientv3.Value(missing), "<", "x"), false},
		}
		for i, c := range cases {
			what := fmt.Sprintf("%s: compare %v", p, c.cmp)
			// Read-only: the executed branch shows in the responses.
			tr, err := cli.Txn(tctx(t)).If(c.cmp).Then(clientv3.OpGet(k)).Commit()
			if err != nil {
				t.Errorf("%s: %v", what, err)
				continue
			}
			if tr.Succeeded != c.want || len(tr.Responses) != map[bool]int{true: 1, false: 0}[c.want] {
				t.Errorf("%s: succeeded %v with %d responses, want %v", what, tr.Succeeded, len(tr.Responses), c.want)
			}
			// Writing: the branch's put lands.
			then, els := fmt.Sprintf("%s/then/%d", p, i), fmt.Sprintf("%s/else/%d", p, i)
			tr, err = cli.Txn(tctx(t)).If(c.cmp).Then(clientv3.OpPut(then, "x")).Else(clientv3.OpPut(els, "x")).Commit()
			if err != nil {
				t.Errorf("%s (writing): %v", what, err)
				continue
			}
			if tr.Succeeded != c.want {
				t.Errorf("%s (writing): succeeded %v, want %v", what, tr.Succeeded, c.want)
			}
			written := map[bool]string{true: then, false: els}[c.want]
			g, err := cli.Get(tctx(t), written)
			must(t, "get", err)
			if len(g.Kvs) != 1 || g.Kvs[0].ModRevision != tr.Header.Revision {
				t.Errorf("%s (writing): %s not written at %d: %s", what, written, tr.Header.Revision, fmtKVs(g.Kvs))
			}
		}
		// Several compares: all must hold.
		tr, err := cli.Txn(tctx(t)).If(cases[0].cmp, cases[8].cmp, cases[16].cmp).Commit()
		if err != nil || !tr.Succeeded {
			t.Errorf("%s: three true compares: %v, %v", p, tr, err)
		}
		tr, err = cli.Txn(tctx(t)).If(cases[0].cmp, cases[1].cmp, cases[16].cmp).Commit()
		if err != nil || tr.Succeeded {
			t.Errorf("%s: true, false, true compares: %v, %v", p, tr, err)
		}
	}
}

// TestTxnRangeCompare is etcd's TestV3TxnRangeCompare and TestTxnCompareRange
// inside one range: a compare over a span holds only if it holds for every
// key in it; an empty span's value compare fails. A compare whose span covers
// several ranges is refused (FailedPrecondition).
func TestTxnRangeCompare(t *testing.T) {
	_, cli := newClusterClient(t)
	var revs []int64
	for _, k := range []string{"c/a/2", "c/a/3", "c/a/4", "c/f/5"} {
		revs = append(revs, put(t, cli, k, "x"))
	}
	kv := rawKV(cli)
	tests := []struct {
		cmp  *pb.Compare
		want bool
	}{
		// >= c/a/ within the range: every create revision fits.
		{&pb.Compare{Key: []byte("c/a/"), RangeEnd: []byte("d"), Target: pb.Compare_CREATE, Result: pb.Compare_LESS, TargetUnion: &pb.Compare_CreateRevision{CreateRevision: revs[3] + 1}}, true},
		// >= c/a/ within the range: one create revision does not fit.
		{&pb.Compare{Key: []byte("c/a/"), RangeEnd: []byte("d"), Target: pb.Compare_CREATE, Result: pb.Compare_LESS, TargetUnion: &pb.Compare_CreateRevision{CreateRevision: revs[3]}}, false},
		// prefix c/a/: every create revision fits.
		{&pb.Compare{Key: []byte("c/a/"), RangeEnd: []byte("c/a0"), Target: pb.Compare_CREATE, Result: pb.Compare_LESS, TargetUnion: &pb.Compare_CreateRevision{CreateRevision: revs[3]}}, true},
		// prefix c/a/: one create revision does not fit.
		{&pb.Compare{Key: []byte("c/a/"), RangeEnd: []byte("c/a0"), Target: pb.Compare_CREATE, Result: pb.Compare_LESS, TargetUnion: &pb.Compare_CreateRevision{CreateRevision: revs[2]}}, false},
		// No key in the span: a value compare fails.
		{&pb.Compare{Key: []byte("c/b/"), RangeEnd: []byte("c/b0"), Target: pb.Compare_VALUE, Result: pb.Compare_EQUAL, TargetUnion: &pb.Compare_Value{Value: []byte("x")}}, false},
		// Every value is x.
		{&pb.Compare{Key: []byte("c/"), RangeEnd: []byte("c0"), Target: pb.Compare_VALUE, Result: pb.Compare_EQUAL, TargetUnion: &pb.Compare_Value{Value: []byte("x")}}, true},
		// No key is leased.
		{&pb.Compare{Key: []byte("c/a/"), RangeEnd: []byte("c/a0"), Target: pb.Compare_LEASE, Result: pb.Compare_GREATER, TargetUnion: &pb.Compare_Lease{Lease: 0}}, false},
		{&pb.Compare{Key: []byte("c/a/"), RangeEnd: []byte("c/a0"), Target: pb.Compare_LEASE, Result: pb.Compare_EQUAL, TargetUnion: &pb.Compare_Lease{Lease: 0}}, true},
		// Versions: all 1.
		{&pb.Compare{Key: []byte("c/"), RangeEnd: []byte("c0"), Target: pb.Compare_VERSION, Result: pb.Compare_EQUAL, TargetUnion: &pb.Compare_Version{Version: 1}}, true},
		{&pb.Compare{Key: []byte("c/"), RangeEnd: []byte("c0"), Target: pb.Compare_MOD, Result: pb.Compare_GREATER, TargetUnion: &pb.Compare_ModRevision{ModRevision: revs[0]}}, false},
	}
	for i, tt := range tests {
		tr, err := kv.Txn(tctx(t), &pb.TxnRequest{Compare: []*pb.Compare{tt.cmp}})
		if err != nil {
			t.Errorf("#%d: %v", i, err)
			continue
		}
		if tr.Succeeded != tt.want {
			t.Errorf("#%d: succeeded %v, want %v", i, tr.Succeeded, tt.want)
		}
	}

	// clientv3's WithPrefix on a compare (TestTxnCompareRange).
	foo := put(t, cli, "c/foo/", "bar")
	put(t, cli, "c/foo/a", "baz")
	tr, err := cli.Txn(tctx(t)).If(clientv3.Compare(clientv3.CreateRevision("c/foo/"), "=", foo).WithPrefix()).Commit()
	must(t, "txn", err)
	if tr.Succeeded {
		t.Error("prefix compare on create revision held for every key, but c/foo/a was created later")
	}

	// A compare over several ranges.
	_, err = kv.Txn(tctx(t), &pb.TxnRequest{Compare: []*pb.Compare{{Key: []byte("c/a/"), RangeEnd: []byte{0}, Target: pb.Compare_VERSION, Result: pb.Compare_GREATER}}})
	wantCrossRange(t, "compare from c/a/ to the end", err)
}

// TestTxnNestedPath is etcd's TestV3TxnNestedPath: ten nested txns, each
// taking the branch its compare chooses, on every range.
func TestTxnNestedPath(t *testing.T) {
	_, cli := newClusterClient(t)
	kv := rawKV(cli)
	rng := rand.New(rand.NewPCG(1, 2))
	for _, p := range rangeKeys {
		k := []byte(p + "/k")
		cmpTrue := &pb.Compare{Result: pb.Compare_EQUAL, Target: pb.Compare_VERSION, Key: k, TargetUnion: &pb.Compare_Version{Version: 0}}
		cmpFalse := &pb.Compare{Result: pb.Compare_EQUAL, Target: pb.Compare_VERSION, Key: k, TargetUnion: &pb.Compare_Version{Version: 1}}
		for range 4 {
			top := &pb.TxnRequest{}
			txn := top
			path := make([]bool, 10)
			for i := range path {
				next := &pb.TxnRequest{}
				op := &pb.RequestOp{Request: &pb.RequestOp_RequestTxn{RequestTxn: next}}
				path[i] = rng.IntN(2) == 0
				if path[i] {
					txn.Compare = append(txn.Compare, cmpTrue)
					txn.Success = append(txn.Success, op)
				} else {
					txn.Compare = append(txn.Compare, cmpFalse)
					txn.Failure = append(txn.Failure, op)
				}
				txn = next
			}
			resp, err := kv.Txn(tctx(t), top)
			must(t, "txn", err)
			cur := resp
			for i := range path {
				if cur.Succeeded != path[i] || len(cur.Responses) != 1 {
					t.Fatalf("%s: path %v, got %v", p, path, resp)
				}
				cur = cur.Responses[0].GetResponseTxn()
			}
		}
	}
}

// TestTxnNested is clientv3's TestTxnNested: a txn whose branch holds a put
// and a nested txn with another put applies both, at one revision.
func TestTxnNested(t *testing.T) {
	_, cli := newClusterClient(t)
	for _, p := range rangeKeys {
		foo, abc := p+"/foo", p+"/abc"
		tr, err := cli.Txn(tctx(t)).
			If(clientv3.Compare(clientv3.Version(foo), "=", 0)).
			Then(clientv3.OpPut(foo, "bar"), clientv3.OpTxn(nil, []clientv3.Op{clientv3.OpPut(abc, "123")}, nil)).
			Else(clientv3.OpPut(foo, "baz")).Commit()
		must(t, "txn", err)
		if !tr.Succeeded || len(tr.Responses) != 2 {
			t.Fatalf("%s: want 2 responses of the success branch, got %v", p, tr)
		}
		nested := tr.Responses[1].GetResponseTxn()
		if nested == nil || !nested.Succeeded || len(nested.Responses) != 1 || nested.Responses[0].GetResponsePut() == nil {
			t.Errorf("%s: nested response %v", p, nested)
		}
		for k, v := range map[string]string{foo: "bar", abc: "123"} {
			g, err := cli.Get(tctx(t), k)
			must(t, "get", err)
			if len(g.Kvs) != 1 || string(g.Kvs[0].Value) != v || g.Kvs[0].ModRevision != tr.Header.Revision {
				t.Errorf("%s: %s, want %s at the txn's revision %d", k, fmtKVs(g.Kvs), v, tr.Header.Revision)
			}
		}
		// Again: the else branch now.
		tr, err = cli.Txn(tctx(t)).
			If(clientv3.Compare(clientv3.Version(foo), "=", 0)).
			Then(clientv3.OpPut(foo, "bar"), clientv3.OpTxn(nil, []clientv3.Op{clientv3.OpPut(abc, "123")}, nil)).
			Else(clientv3.OpPut(foo, "baz")).Commit()
		must(t, "txn", err)
		if tr.Succeeded || len(tr.Responses) != 1 {
			t.Errorf("%s: second txn %v, want the else branch", p, tr)
		}
	}
}

// TestTxnReadOwnWrites checks that a txn's ops see the earlier ops' writes,
// at the txn's revision, while every compare (nested ones included) sees the
// state before the txn; and the per-op headers: the pre-txn revision before
// the first write, the txn's after it, nested txn headers empty (as etcd).
func TestTxnReadOwnWrites(t *testing.T) {
	_, cli := newClusterClient(t)
	for _, p := range rangeKeys {
		x, y := p+"/x", p+"/y"
		rx := put(t, cli, x, "old")
		ry := put(t, cli, y, "y")
		tr, err := cli.Txn(tctx(t)).Then(
			clientv3.OpGet(x),
			clientv3.OpPut(x, "new"),
			clientv3.OpGet(x),
			clientv3.OpDelete(y, clientv3.WithPrevKV()),
			clientv3.OpGet(y),
			clientv3.OpGet(p+"/", clientv3.WithPrefix(), clientv3.WithCountOnly()),
			// Nested compare: evaluated before the txn, so x is still "old".
			clientv3.OpTxn([]clientv3.Cmp{clientv3.Compare(clientv3.Value(x), "=", "old")}, []clientv3.Op{clientv3.OpGet(x)}, nil),
		).Commit()
		must(t, "txn", err)
		rev := tr.Header.Revision
		if rev <= ry {
			t.Fatalf("%s: txn revision %d <= last put %d", p, rev, ry)
		}
		rs := tr.Responses
		if len(rs) != 7 {
			t.Fatalf("%s: %d responses", p, len(rs))
		}
		before := rs[0].GetResponseRange()
		if len(before.Kvs) != 1 || string(before.Kvs[0].Value) != "old" || before.Header.Revision >= rev || before.Header.Revision < ry {
			t.Errorf("%s: get before the put: %v (txn at %d)", p, before, rev)
		}
		if h := rs[1].GetResponsePut().Header; h.Revision != rev {
			t.Errorf("%s: put header revision %d, want the txn's %d", p, h.Revision, rev)
		}
		after := rs[2].GetResponseRange()
		if len(after.Kvs) != 1 || string(after.Kvs[0].Value) != "new" || after.Kvs[0].ModRevision != rev ||
			after.Kvs[0].CreateRevision != rx || after.Kvs[0].Version != 2 || after.Header.Revision != rev {
			t.Errorf("%s: get after the put: %v (txn at %d)", p, after, rev)
		}
		del := rs[3].GetResponseDeleteRange()
		if del.Deleted != 1 || len(del.PrevKvs) != 1 || string(del.PrevKvs[0].Value) != "y" {
			t.Errorf("%s: delete in txn: %v", p, del)
		}
		if g := rs[4].GetResponseRange(); len(g.Kvs) != 0 || g.Count != 0 {
			t.Errorf("%s: get after the delete: %v", p, g)
		}
		if g := rs[5].GetResponseRange(); g.Count != 1 {
			t.Errorf("%s: count after put and delete = %d, want 1", p, g.Count)
		}
		nested := rs[6].GetResponseTxn()
		if nested == nil || !nested.Succeeded || len(nested.Responses) != 1 {
			t.Fatalf("%s: nested txn: %v, want its compare on the pre-txn value to hold", p, nested)
		}
		if nested.Header.GetRevision() != 0 {
			t.Errorf("%s: nested txn header %v, want empty as etcd", p, nested.Header)
		}
		if g := nested.Responses[0].GetResponseRange(); len(g.Kvs) != 1 || string(g.Kvs[0].Value) != "new" {
			t.Errorf("%s: get in nested txn after the put: %v", p, g)
		}
		// Outside the txn, the same.
		g, err := cli.Get(tctx(t), p+"/", clientv3.WithPrefix())
		must(t, "get", err)
		if len(g.Kvs) != 1 || string(g.Kvs[0].Value) != "new" || g.Kvs[0].ModRevision != rev {
			t.Errorf("%s: after the txn: %s", p, fmtKVs(g.Kvs))
		}
		// All ops of a txn share its revision: two puts, one mod revision.
		tr, err = cli.Txn(tctx(t)).Then(clientv3.OpPut(p+"/1", "a"), clientv3.OpPut(p+"/2", "b")).Commit()
		must(t, "txn", err)
		g, err = cli.Get(tctx(t), p+"/", clientv3.WithPrefix(), clientv3.WithMinModRev(tr.Header.Revision))
		must(t, "get", err)
		if len(g.Kvs) != 2 || g.Kvs[0].ModRevision != tr.Header.Revision || g.Kvs[1].ModRevision != tr.Header.Revision {
			t.Errorf("%s: two puts of one txn: %s, want both at %d", p, fmtKVs(g.Kvs), tr.Header.Revision)
		}
	}
}

// TestTxnRevision adapts etcd's TestV3TxnRevision: a read-only txn and a txn
// that changes nothing (a delete of a missing key) answer at or after the
// last write without writing; a txn with a put answers with a new, larger
// revision.
func TestTxnRevision(t *testing.T) {
	_, cli := newClusterClient(t)
	for _, p := range rangeKeys {
		k := p + "/abc"
		pr := put(t, cli, k, "def")
		tr, err := cli.Txn(tctx(t)).Then(clientv3.OpGet(k)).Commit()
		must(t, "read-only txn", err)
		if tr.Header.Revision < pr {
			t.Errorf("%s: read-only txn at %d < last write %d", p, tr.Header.Revision, pr)
		}
		tr, err = cli.Txn(tctx(t)).Then(clientv3.OpDelete(p + "/def")).Commit()
		must(t, "no-op delete txn", err)
		if tr.Header.Revision < pr {
			t.Errorf("%s: no-op txn at %d < last write %d", p, tr.Header.Revision, pr)
		}
		noop := tr.Header.Revision
		d, err := cli.Delete(tctx(t), p+"/def")
		must(t, "no-op delete", err)
		if d.Header.Revision < noop || d.Deleted != 0 {
			t.Errorf("%s: no-op delete %v, want at or after %d", p, d, noop)
		}
		tr, err = cli.Txn(tctx(t)).Then(clientv3.OpPut(k, "123")).Commit()
		must(t, "put txn", err)
		if tr.Header.Revision <= max(pr, noop) {
			t.Errorf("%s: put txn at %d, want above %d", p, tr.Header.Revision, max(pr, noop))
		}
		// Nothing but the put changed the key.
		g, err := cli.Get(tctx(t), k)
		must(t, "get", err)
		if len(g.Kvs) != 1 || g.Kvs[0].Version != 2 || g.Kvs[0].ModRevision != tr.Header.Revision {
			t.Errorf("%s: %s, want version 2 at %d", p, fmtKVs(g.Kvs), tr.Header.Revision)
		}
	}
	// An empty txn succeeds with no responses.
	tr, err := cli.Txn(tctx(t)).Commit()
	must(t, "empty txn", err)
	if !tr.Succeeded || len(tr.Responses) != 0 {
		t.Errorf("empty txn: %v", tr)
	}
}

// TestTxnCmpHeaderRev adapts etcd's TestV3TxnCmpHeaderRev: a put races with
// a read-only txn comparing the key's version; the txn succeeded (saw no
// put) exactly when its revision is below the put's.
func TestTxnCmpHeaderRev(t *testing.T) {
	c, _ := newClusterClient(t)
	for i := range 20 {
		p := rangeKeys[i%len(rangeKeys)]
		k := fmt.Sprintf("%s/race/%d", p, i)
		putCli, txnCli := c.NodeClient(t, i%3), c.NodeClient(t, (i+1)%3)
		type result struct {
			rev int64
			err error
		}
		ch := make(chan result, 1)
		go func() {
			r, err := putCli.Put(context.Background(), k, "v")
			if err != nil {
				ch <- result{err: err}
				return
			}
			ch <- result{rev: r.Header.Revision}
		}()
		tr, err := txnCli.Txn(tctx(t)).If(clientv3.Compare(clientv3.Version(k), "=", 0)).Then(clientv3.OpGet(k)).Commit()
		pr := <-ch
		must(t, "txn", err)
		must(t, "put", pr.err)
		switch {
		case tr.Succeeded && tr.Header.Revision >= pr.rev:
			t.Errorf("#%d: txn at %d saw no put, but the put is at %d", i, tr.Header.Revision, pr.rev)
		case !tr.Succeeded && tr.Header.Revision < pr.rev:
			t.Errorf("#%d: txn at %d saw the put at %d", i, tr.Header.Revision, pr.rev)
		}
	}
}

// TestTxnTooManyOps is etcd's TestV3TxnTooManyOps (129 compares, success
// ops, failure ops, or nested txns: ErrTooManyOps) plus clientv3's
// TestTxnError, with 128 of each allowed.
func TestTxnTooManyOps(t *testing.T) {
	_, cli := newClusterClient(t)
	kv := rawKV(cli)
	n := 0
	key := func() []byte {
		n++
		return fmt.Appendf(nil, "c/key-%d", n)
	}
	putOp := func() *pb.RequestOp {
		return &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: key(), Value: []byte("bar")}}}
	}
	adds := map[string]func(*pb.TxnRequest){
		"compares": func(txn *pb.TxnRequest) {
			txn.Compare = append(txn.Compare, &pb.Compare{Result: pb.Compare_GREATER, Target: pb.Compare_CREATE, Key: key()})
		},
		"success": func(txn *pb.TxnRequest) { txn.Success = append(txn.Success, putOp()) },
		"failure": func(txn *pb.TxnRequest) { txn.Failure = append(txn.Failure, putOp()) },
		"nested": func(txn *pb.TxnRequest) {
			txn.Success = append(txn.Success, &pb.RequestOp{Request: &pb.RequestOp_RequestTxn{RequestTxn: &pb.TxnRequest{Success: []*pb.RequestOp{putOp()}}}})
		},
	}
	for name, add := range adds {
		txn := &pb.TxnRequest{}
		for range 129 {
			add(txn)
		}
		_, err := kv.Txn(tctx(t), txn)
		wantErr(t, "129 "+name, err, rpctypes.ErrGRPCTooManyOps)
		// 128 is allowed, except for nested txns: 128 ops leave none to
		// the nested ones (etcd gives a nested txn the limit minus its
		// parent's largest count), so 64 of those.
		allowed := 128
		if name == "nested" {
			allowed = 64
		}
		txn = &pb.TxnRequest{}
		for range allowed {
			add(txn)
		}
		_, err = kv.Txn(tctx(t), txn)
		if err != nil {
			t.Errorf("%d %s: %v", allowed, name, err)
		}
	}
	// A nested txn may hold what its parent leaves: 100 puts and one nested
	// txn leave it 27 ops.
	nested := func(n int) *pb.TxnRequest {
		txn := &pb.TxnRequest{}
		for range 100 {
			txn.Success = append(txn.Success, putOp())
		}
		inner := &pb.TxnRequest{}
		for range n {
			inner.Success = append(inner.Success, putOp())
		}
		txn.Success = append(txn.Success, &pb.RequestOp{Request: &pb.RequestOp_RequestTxn{RequestTxn: inner}})
		return txn
	}
	_, err := kv.Txn(tctx(t), nested(28))
	wantErr(t, "nested txn over its share", err, rpctypes.ErrGRPCTooManyOps)
	_, err = kv.Txn(tctx(t), nested(27))
	if err != nil {
		t.Errorf("nested txn of its share: %v", err)
	}

	ops := make([]clientv3.Op, 138)
	for i := range ops {
		ops[i] = clientv3.OpPut(fmt.Sprintf("e/foo%d", i), "")
	}
	_, err = cli.Txn(tctx(t)).Then(ops...).Commit()
	wantErr(t, "clientv3 txn of 138 puts", err, rpctypes.ErrGRPCTooManyOps)
	g, err := cli.Get(tctx(t), "e/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	must(t, "get", err)
	if g.Count != 0 {
		t.Errorf("refused txn wrote %d keys", g.Count)
	}
}

// TestTxnDuplicateKeys is etcd's TestV3TxnDuplicateKeys (and clientv3's
// TestTxnError) inside one range: two writes of one key that could both run
// are ErrDuplicateKey; deletes that overlap each other, or writes in
// exclusive branches, are not.
func TestTxnDuplicateKeys(t *testing.T) {
	_, cli := newClusterClient(t)
	kv := rawKV(cli)
	putreq := &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte("cbc"), Value: []byte("def")}}}
	delKeyReq := &pb.RequestOp{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: &pb.DeleteRangeRequest{Key: []byte("cbc")}}}
	delInRangeReq := &pb.RequestOp{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: &pb.DeleteRangeRequest{Key: []byte("c"), RangeEnd: []byte("d")}}}
	delOutOfRangeReq := &pb.RequestOp{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: &pb.DeleteRangeRequest{Key: []byte("cbb"), RangeEnd: []byte("cbc")}}}
	txnOp := func(success ...*pb.RequestOp) *pb.RequestOp {
		return &pb.RequestOp{Request: &pb.RequestOp_RequestTxn{RequestTxn: &pb.TxnRequest{Success: success}}}
	}
	txnDelReq := txnOp(delInRangeReq)
	txnDelReqTwoSide := txnOp(delInRangeReq)
	txnDelReqTwoSide.GetRequestTxn().Failure = []*pb.RequestOp{delInRangeReq}
	txnPutReq := txnOp(putreq)
	txnPutReqTwoSide := txnOp(putreq)
	txnPutReqTwoSide.GetRequestTxn().Failure = []*pb.RequestOp{putreq}

	tests := []struct {
		ops  []*pb.RequestOp
		werr error
	}{
		{[]*pb.RequestOp{putreq, putreq}, rpctypes.ErrGRPCDuplicateKey},
		{[]*pb.RequestOp{putreq, delKeyReq}, rpctypes.ErrGRPCDuplicateKey},
		{[]*pb.RequestOp{putreq, delInRangeReq}, rpctypes.ErrGRPCDuplicateKey},
		{[]*pb.RequestOp{putreq, txnDelReq}, rpctypes.ErrGRPCDuplicateKey},
		{[]*pb.RequestOp{delInRangeReq, txnPutReq}, rpctypes.ErrGRPCDuplicateKey},
		{[]*pb.RequestOp{txnPutReqTwoSide, txnPutReqTwoSide}, rpctypes.ErrGRPCDuplicateKey},
		{[]*pb.RequestOp{delOutOfRangeReq, txnPutReqTwoSide}, nil},
		{[]*pb.RequestOp{txnDelReq, txnDelReqTwoSide}, nil},
		{[]*pb.RequestOp{delKeyReq, delInRangeReq, delKeyReq, delInRangeReq}, nil},
		{[]*pb.RequestOp{putreq, delOutOfRangeReq}, nil},
	}
	for i, tt := range tests {
		_, err := kv.Txn(tctx(t), &pb.TxnRequest{Success: tt.ops})
		if !errIs(err, tt.werr) {
			t.Errorf("#%d: err = %v, want %v", i, err, tt.werr)
		}
	}
	_, err := cli.Txn(tctx(t)).Then(clientv3.OpPut("e/foo", "bar1"), clientv3.OpPut("e/foo", "bar2")).Commit()
	wantErr(t, "clientv3 txn putting one key twice", err, rpctypes.ErrGRPCDuplicateKey)
	// Puts of one key in the two branches do not conflict.
	_, err = cli.Txn(tctx(t)).If(clientv3.Compare(clientv3.Version("e/foo"), "=", 0)).
		Then(clientv3.OpPut("e/foo", "then")).Else(clientv3.OpPut("e/foo", "else")).Commit()
	must(t, "txn putting one key in both branches", err)
}

// TestTxnCrossRange checks Tessera's documented limit: a txn whose compares
// and ops (in either branch, nested txns included) touch several ranges
// fails with FailedPrecondition naming them, and writes nothing.
func TestTxnCrossRange(t *testing.T) {
	_, cli := newClusterClient(t)
	put(t, cli, "a", "1")
	put(t, cli, "c", "1")
	cases := []struct {
		what string
		txn  clientv3.Txn
	}{
		{"compare on a, put on c", cli.Txn(tctx(t)).If(clientv3.Compare(clientv3.Version("a"), "=", 1)).Then(clientv3.OpPut("c", "2"))},
		{"puts on a and g", cli.Txn(tctx(t)).Then(clientv3.OpPut("a", "2"), clientv3.OpPut("g", "2"))},
		{"put on a, else put on e", cli.Txn(tctx(t)).Then(clientv3.OpPut("a", "2")).Else(clientv3.OpPut("e", "2"))},
		{"put on c, nested put on e", cli.Txn(tctx(t)).Then(clientv3.OpPut("c", "2"), clientv3.OpTxn(nil, []clientv3.Op{clientv3.OpPut("e", "2")}, nil))},
		{"put on c, get over a..z", cli.Txn(tctx(t)).Then(clientv3.OpPut("c", "2"), clientv3.OpGet("a", clientv3.WithRange("z")))},
		{"put on c, delete d..z", cli.Txn(tctx(t)).Then(clientv3.OpPut("c", "2"), clientv3.OpDelete("d", clientv3.WithRange("z")))},
		{"read-only: gets on a and g", cli.Txn(tctx(t)).Then(clientv3.OpGet("a"), clientv3.OpGet("g"))},
		{"read-only: get from key c", cli.Txn(tctx(t)).Then(clientv3.OpGet("c", clientv3.WithFromKey()))},
	}
	for _, tc := range cases {
		_, err := tc.txn.Commit()
		wantCrossRange(t, tc.what, err)
		if err != nil && !strings.Contains(err.Error(), "2 [") && !strings.Contains(err.Error(), "3 [") {
			t.Errorf("%s: error %q does not name the ranges", tc.what, err)
		}
	}
	g, err := cli.Get(tctx(t), "", clientv3.WithPrefix())
	must(t, "get", err)
	wantKeys(t, "after refused txns", g.Kvs, "a", "c")
	for _, kv := range g.Kvs {
		if string(kv.Value) != "1" {
			t.Errorf("refused txn changed %s", fmtKVs(g.Kvs))
		}
	}
	// Up to a split key is one range.
	_, err = cli.Txn(tctx(t)).Then(clientv3.OpPut("c", "3"), clientv3.OpGet("b", clientv3.WithRange("d"))).Commit()
	must(t, "txn inside [b, d)", err)
}
