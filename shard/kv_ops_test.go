package shard

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/protobuf/proto"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tesseradb/tessera/engine"
)

// baseRev is a TSO-like revision: revisions in these tests are neither small
// nor consecutive, as in Tessera.
const baseRev engine.Revision = 1763740000000 << 18

func openEngine(t testing.TB) *engine.Engine {
	t.Helper()
	cfg := engine.DefaultConfig(t.TempDir())
	cfg.CacheBytes = 8 << 20
	cfg.MemTableBytes = 4 << 20
	cfg.Registerer = prometheus.NewRegistry()
	e, err := engine.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := e.Close(); err != nil {
			t.Error(err)
		}
	})
	return e
}

// kvStore drives the functions under test the way a shard does: each write
// gets a fresh revision and is applied in its own batch, committed only on
// success; reads use a snapshot at the last revision.
type kvStore struct {
	t          testing.TB
	e          *engine.Engine
	rev        engine.Revision // last assigned revision
	compactRev engine.Revision
	leases     map[int64]bool
}

func newKVStore(t testing.TB) *kvStore {
	return &kvStore{t: t, e: openEngine(t), rev: baseRev, leases: map[int64]bool{}}
}

// next assigns the next revision; gaps of varying size, as from a TSO.
func (s *kvStore) next() engine.Revision {
	s.rev += 1<<18 + engine.Revision(s.rev%7)
	return s.rev
}

// write applies fn in a batch at a new revision and commits it unless fn
// fails, in which case it checks that fn left the batch empty.
func (s *kvStore) write(fn func(b *engine.Batch, rev engine.Revision) error) (engine.Revision, error) {
	s.t.Helper()
	b := s.e.NewBatch()
	defer b.Close()
	rev := s.next()
	if err := fn(b, rev); err != nil {
		if !b.Empty() {
			s.t.Fatalf("failed op (%v) left %d writes in the batch", err, b.Count())
		}
		return rev, err
	}
	if err := b.Commit(false); err != nil {
		s.t.Fatal(err)
	}
	return rev, nil
}

func (s *kvStore) put(req *pb.PutRequest) (*pb.PutResponse, engine.Revision, error) {
	s.t.Helper()
	var resp *pb.PutResponse
	rev, err := s.write(func(b *engine.Batch, rev engine.Revision) (err error) {
		resp, err = ApplyPut(b, req, rev)
		return err
	})
	return resp, rev, err
}

func (s *kvStore) mustPut(key, val string) engine.Revision {
	s.t.Helper()
	_, rev, err := s.put(&pb.PutRequest{Key: []byte(key), Value: []byte(val)})
	if err != nil {
		s.t.Fatal(err)
	}
	return rev
}

func (s *kvStore) del(req *pb.DeleteRangeRequest) (*pb.DeleteRangeResponse, engine.Revision, error) {
	s.t.Helper()
	var resp *pb.DeleteRangeResponse
	rev, err := s.write(func(b *engine.Batch, rev engine.Revision) (err error) {
		resp, err = ApplyDeleteRange(b, req, rev)
		return err
	})
	return resp, rev, err
}

func (s *kvStore) txn(req *pb.TxnRequest) (*pb.TxnResponse, engine.Revision, error) {
	s.t.Helper()
	var resp *pb.TxnResponse
	env := TxnEnv{CompactRev: s.compactRev, LeaseExists: func(id int64) bool { return s.leases[id] }}
	rev, err := s.write(func(b *engine.Batch, rev engine.Revision) (err error) {
		resp, err = ApplyTxnEnv(b, req, rev, env)
		return err
	})
	return resp, rev, err
}

func (s *kvStore) get(req *pb.RangeRequest) (*pb.RangeResponse, error) {
	s.t.Helper()
	if err := CheckReadRevision(engine.Revision(req.GetRevision()), s.rev, s.compactRev); err != nil {
		return nil, err
	}
	snap := s.e.NewSnapshot()
	defer snap.Close()
	return Range(snap, req, s.rev)
}

func (s *kvStore) mustGet(req *pb.RangeRequest) *pb.RangeResponse {
	s.t.Helper()
	resp, err := s.get(req)
	if err != nil {
		s.t.Fatal(err)
	}
	return resp
}

func (s *kvStore) compact(rev engine.Revision) {
	s.t.Helper()
	if err := CheckCompactRevision(rev, s.rev, s.compactRev); err != nil {
		s.t.Fatal(err)
	}
	s.compactRev = rev
	if _, err := s.e.MVCCCompact(nil, nil, rev, 0); err != nil {
		s.t.Fatal(err)
	}
}

func keysOf(kvs []*mvccpb.KeyValue) []string {
	out := []string{}
	for _, kv := range kvs {
		out = append(out, string(kv.Key))
	}
	return out
}

func kv(key, val string, create, mod engine.Revision, ver, lease int64) *mvccpb.KeyValue {
	return &mvccpb.KeyValue{Key: []byte(key), Value: []byte(val), CreateRevision: int64(create), ModRevision: int64(mod), Version: ver, Lease: lease}
}

func putOp(k, v string) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte(k), Value: []byte(v)}}}
}

func putReqOp(p *pb.PutRequest) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: p}}
}

func delOp(k, end string) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: &pb.DeleteRangeRequest{Key: []byte(k), RangeEnd: []byte(end)}}}
}

func rangeOp(k, end string) *pb.RequestOp {
	return rangeReqOp(&pb.RangeRequest{Key: []byte(k), RangeEnd: []byte(end)})
}

func rangeReqOp(r *pb.RangeRequest) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_RequestRange{RequestRange: r}}
}

func txnOp(t *pb.TxnRequest) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_RequestTxn{RequestTxn: t}}
}

func cmpVersion(k string, r pb.Compare_CompareResult, v int64) *pb.Compare {
	return &pb.Compare{Key: []byte(k), Target: pb.Compare_VERSION, Result: r, TargetUnion: &pb.Compare_Version{Version: v}}
}

func isErr(err, want error) bool {
	if want == nil || err == nil {
		return err == want
	}
	return errors.Is(err, want) || rpctypes.ErrorDesc(err) == rpctypes.ErrorDesc(want)
}

func requireProtoEqual(t testing.TB, what string, got, want proto.Message) {
	t.Helper()
	if !proto.Equal(got, want) {
		t.Fatalf("%s:\n got: %v\nwant: %v", what, got, want)
	}
}

func TestPutOverwrite(t *testing.T) {
	s := newKVStore(t)
	r1, rev1, err := s.put(&pb.PutRequest{Key: []byte("foo"), Value: []byte("bar"), PrevKv: true})
	if err != nil {
		t.Fatal(err)
	}
	if r1.PrevKv != nil || r1.Header == nil {
		t.Fatalf("first put: %v", r1)
	}
	r2, rev2, err := s.put(&pb.PutRequest{Key: []byte("foo"), Value: []byte("baz"), PrevKv: true})
	if err != nil {
		t.Fatal(err)
	}
	requireProtoEqual(t, "prev kv", r2.PrevKv, kv("foo", "bar", rev1, rev1, 1, 0))
	got := s.mustGet(&pb.RangeRequest{Key: []byte("foo")})
	requireProtoEqual(t, "range", got, &pb.RangeResponse{Header: &pb.ResponseHeader{}, Count: 1,
		Kvs: []*mvccpb.KeyValue{kv("foo", "baz", rev1, rev2, 2, 0)}})

	// Without prev_kv no previous pair comes back.
	r3, _, err := s.put(&pb.PutRequest{Key: []byte("foo"), Value: []byte("qux")})
	if err != nil || r3.PrevKv != nil {
		t.Fatalf("put without prev_kv: %v %v", r3, err)
	}
}

func TestPutAfterDeleteStartsNewGeneration(t *testing.T) {
	s := newKVStore(t)
	s.mustPut("k", "a")
	s.mustPut("k", "b")
	if _, _, err := s.del(&pb.DeleteRangeRequest{Key: []byte("k")}); err != nil {
		t.Fatal(err)
	}
	rev := s.mustPut("k", "c")
	got := s.mustGet(&pb.RangeRequest{Key: []byte("k")})
	requireProtoEqual(t, "after recreate", got.Kvs[0], kv("k", "c", rev, rev, 1, 0))
}

func TestPutLeaseStored(t *testing.T) {
	s := newKVStore(t)
	rev := s.mustPut("k", "v")
	if _, _, err := s.put(&pb.PutRequest{Key: []byte("k"), Value: []byte("w"), Lease: 77}); err != nil {
		t.Fatal(err)
	}
	got := s.mustGet(&pb.RangeRequest{Key: []byte("k")})
	requireProtoEqual(t, "leased", got.Kvs[0], kv("k", "w", rev, s.rev, 2, 77))
	// A plain put detaches the lease.
	s.mustPut("k", "x")
	if got := s.mustGet(&pb.RangeRequest{Key: []byte("k")}); got.Kvs[0].Lease != 0 {
		t.Fatalf("lease kept: %v", got)
	}
}

// TestPutIgnoreValue follows etcd's TestV3PutIgnoreValue.
func TestPutIgnoreValue(t *testing.T) {
	s := newKVStore(t)
	const lease = 0x1234
	s.leases[lease] = true
	steps := []struct {
		name    string
		do      func() error
		wantErr error
		wLease  int64
	}{
		{"put on missing key", func() error {
			_, _, err := s.put(&pb.PutRequest{Key: []byte("foo"), IgnoreValue: true})
			return err
		}, rpctypes.ErrGRPCKeyNotFound, 0},
		{"txn put on missing key", func() error {
			_, _, err := s.txn(&pb.TxnRequest{Success: []*pb.RequestOp{putReqOp(&pb.PutRequest{Key: []byte("foo"), IgnoreValue: true})}})
			return err
		}, rpctypes.ErrGRPCKeyNotFound, 0},
		{"put", func() error {
			_, _, err := s.put(&pb.PutRequest{Key: []byte("foo"), Value: []byte("bar")})
			return err
		}, nil, 0},
		{"txn put ignore_value attaching a lease", func() error {
			_, _, err := s.txn(&pb.TxnRequest{Success: []*pb.RequestOp{putReqOp(&pb.PutRequest{Key: []byte("foo"), IgnoreValue: true, Lease: lease})}})
			return err
		}, nil, lease},
		{"value with ignore_value", func() error {
			_, _, err := s.put(&pb.PutRequest{Key: []byte("foo"), Value: []byte("x"), IgnoreValue: true})
			return err
		}, rpctypes.ErrGRPCValueProvided, 0},
		{"ignore_value detaches the lease", func() error {
			resp, _, err := s.put(&pb.PutRequest{Key: []byte("foo"), IgnoreValue: true})
			if err == nil && resp.PrevKv != nil {
				return fmt.Errorf("unexpected prev kv %v", resp.PrevKv)
			}
			return err
		}, nil, 0},
	}
	for _, st := range steps {
		err := st.do()
		if !isErr(err, st.wantErr) {
			t.Fatalf("%s: err %v, want %v", st.name, err, st.wantErr)
		}
		if st.wantErr != nil {
			continue
		}
		got := s.mustGet(&pb.RangeRequest{Key: []byte("foo")})
		if len(got.Kvs) != 1 || string(got.Kvs[0].Value) != "bar" || got.Kvs[0].Lease != st.wLease {
			t.Fatalf("%s: got %v, want value bar lease %d", st.name, got.Kvs, st.wLease)
		}
	}
}

// TestPutIgnoreLease follows etcd's TestV3PutIgnoreLease.
func TestPutIgnoreLease(t *testing.T) {
	s := newKVStore(t)
	const lease = 0x4321
	s.leases[lease] = true
	steps := []struct {
		name    string
		req     *pb.PutRequest
		inTxn   bool
		wantErr error
		wLease  int64
		wValue  string
	}{
		{name: "put on missing key", req: &pb.PutRequest{Key: []byte("zoo"), Value: []byte("bar"), IgnoreLease: true}, wantErr: rpctypes.ErrGRPCKeyNotFound},
		{name: "txn put on missing key", req: &pb.PutRequest{Key: []byte("zoo"), Value: []byte("bar"), IgnoreLease: true}, inTxn: true, wantErr: rpctypes.ErrGRPCKeyNotFound},
		{name: "put with lease", req: &pb.PutRequest{Key: []byte("zoo"), Value: []byte("bar"), Lease: lease}, wLease: lease, wValue: "bar"},
		{name: "txn put keeps lease", req: &pb.PutRequest{Key: []byte("zoo"), Value: []byte("bar1"), IgnoreLease: true}, inTxn: true, wLease: lease, wValue: "bar1"},
		{name: "lease with ignore_lease", req: &pb.PutRequest{Key: []byte("zoo"), Value: []byte("bar"), Lease: lease, IgnoreLease: true}, wantErr: rpctypes.ErrGRPCLeaseProvided},
		{name: "plain put detaches", req: &pb.PutRequest{Key: []byte("zoo"), Value: []byte("bar")}, wValue: "bar"},
	}
	for _, st := range steps {
		var err error
		if st.inTxn {
			_, _, err = s.txn(&pb.TxnRequest{Success: []*pb.RequestOp{putReqOp(st.req)}})
		} else {
			_, _, err = s.put(st.req)
		}
		if !isErr(err, st.wantErr) {
			t.Fatalf("%s: err %v, want %v", st.name, err, st.wantErr)
		}
		if st.wantErr != nil {
			continue
		}
		got := s.mustGet(&pb.RangeRequest{Key: []byte("zoo")})
		if len(got.Kvs) != 1 || string(got.Kvs[0].Value) != st.wValue || got.Kvs[0].Lease != st.wLease {
			t.Fatalf("%s: got %v, want value %s lease %d", st.name, got.Kvs, st.wValue, st.wLease)
		}
	}
}

func TestWriteValidation(t *testing.T) {
	s := newKVStore(t)
	if _, _, err := s.put(&pb.PutRequest{Value: []byte("v")}); !isErr(err, rpctypes.ErrGRPCEmptyKey) {
		t.Fatalf("put empty key: %v", err)
	}
	if _, _, err := s.del(&pb.DeleteRangeRequest{}); !isErr(err, rpctypes.ErrGRPCEmptyKey) {
		t.Fatalf("delete empty key: %v", err)
	}
	if _, err := s.get(&pb.RangeRequest{Key: []byte("a"), SortTarget: 9}); !isErr(err, rpctypes.ErrGRPCInvalidSortOption) {
		t.Fatalf("range bad sort: %v", err)
	}
	b := s.e.NewBatch()
	defer b.Close()
	if _, err := ApplyPut(b, &pb.PutRequest{Key: []byte("a")}, 0); err == nil {
		t.Fatal("put at revision 0 accepted")
	}
}

// TestDeleteRange follows etcd's TestV3DeleteRange, plus range_end "\x00".
func TestDeleteRange(t *testing.T) {
	tests := []struct {
		name       string
		keys       []string
		begin, end string
		prevKV     bool
		want       []string
		deleted    int64
	}{
		{"delete middle", []string{"foo", "foo/abc", "fop"}, "foo/", "fop", false, []string{"foo", "fop"}, 1},
		{"no delete", []string{"foo", "foo/abc", "fop"}, "foo/", "foo/", false, []string{"foo", "foo/abc", "fop"}, 0},
		{"delete first", []string{"foo", "foo/abc", "fop"}, "fo", "fop", false, []string{"fop"}, 2},
		{"delete tail", []string{"foo", "foo/abc", "fop"}, "foo/", "fos", false, []string{"foo"}, 2},
		{"delete exact", []string{"foo", "foo/abc", "fop"}, "foo/abc", "", false, []string{"foo", "fop"}, 1},
		{"delete none [x,x)", []string{"foo"}, "foo", "foo", false, []string{"foo"}, 0},
		{"delete none [y,x)", []string{"foo", "fop"}, "fop", "foo", false, []string{"foo", "fop"}, 0},
		{"delete middle with prev_kv", []string{"foo", "foo/abc", "fop"}, "foo/", "fop", true, []string{"foo", "fop"}, 1},
		{"delete >= key", []string{"foo", "foo/abc", "fop"}, "foo/", "\x00", true, []string{"foo"}, 2},
		{"delete all", []string{"foo", "foo/abc", "fop"}, "\x00", "\x00", true, []string{}, 3},
		{"delete missing", []string{"foo"}, "bar", "", true, []string{"foo"}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newKVStore(t)
			puts := map[string]engine.Revision{}
			for _, k := range tt.keys {
				puts[k] = s.mustPut(k, "v-"+k)
			}
			resp, _, err := s.del(&pb.DeleteRangeRequest{Key: []byte(tt.begin), RangeEnd: []byte(tt.end), PrevKv: tt.prevKV})
			if err != nil {
				t.Fatal(err)
			}
			if resp.Deleted != tt.deleted {
				t.Fatalf("deleted %d, want %d", resp.Deleted, tt.deleted)
			}
			if tt.prevKV {
				if int64(len(resp.PrevKvs)) != resp.Deleted {
					t.Fatalf("%d prev kvs for %d deleted", len(resp.PrevKvs), resp.Deleted)
				}
				for _, p := range resp.PrevKvs {
					k := string(p.Key)
					requireProtoEqual(t, "prev kv", p, kv(k, "v-"+k, puts[k], puts[k], 1, 0))
				}
			} else if len(resp.PrevKvs) != 0 {
				t.Fatalf("prev kvs without prev_kv: %v", resp.PrevKvs)
			}
			got := s.mustGet(&pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0xff}})
			if !slices.Equal(keysOf(got.Kvs), tt.want) {
				t.Fatalf("keys %v, want %v", keysOf(got.Kvs), tt.want)
			}
		})
	}
}

// TestDeleteNothingWritesNothing: a delete that finds no key is not a write
// (etcd does not advance the revision for it).
func TestDeleteNothingWritesNothing(t *testing.T) {
	e := openEngine(t)
	b := e.NewBatch()
	defer b.Close()
	resp, err := ApplyDeleteRange(b, &pb.DeleteRangeRequest{Key: []byte("a"), RangeEnd: []byte("z")}, baseRev)
	if err != nil || resp.Deleted != 0 || !b.Empty() {
		t.Fatalf("resp %v err %v, batch empty %v", resp, err, b.Empty())
	}
}

// TestRangeRequest follows etcd's TestV3RangeRequest.
func TestRangeRequest(t *testing.T) {
	type rq = pb.RangeRequest
	tests := []struct {
		name    string
		putKeys []string
		// reqs may use revision indexes: revIdx[i] >= 0 replaces Revision
		// (and filters marked below) with the revision of the i-th put.
		reqs   func(revs []engine.Revision) []*rq
		want   [][]string
		more   []bool
		counts []int64
	}{
		{
			"single key", []string{"foo", "bar"},
			func([]engine.Revision) []*rq {
				return []*rq{{Key: []byte("foo")}, {Key: []byte("baz")}}
			},
			[][]string{{"foo"}, {}}, []bool{false, false}, []int64{1, 0},
		},
		{
			"multi-key", []string{"a", "b", "c", "d", "e"},
			func([]engine.Revision) []*rq {
				return []*rq{
					{Key: []byte("a"), RangeEnd: []byte("z")},
					{Key: []byte("b"), RangeEnd: []byte("d")},
					{Key: []byte("f"), RangeEnd: []byte("z")},
					{Key: []byte("c"), RangeEnd: []byte("c")},
					{Key: []byte("d"), RangeEnd: []byte("b")},
					{Key: []byte{0}, RangeEnd: []byte{0}},
					{Key: []byte("c"), RangeEnd: []byte{0}},
				}
			},
			[][]string{{"a", "b", "c", "d", "e"}, {"b", "c"}, {}, {}, {}, {"a", "b", "c", "d", "e"}, {"c", "d", "e"}},
			[]bool{false, false, false, false, false, false, false}, []int64{5, 2, 0, 0, 0, 5, 3},
		},
		{
			"revision", []string{"a", "b", "c", "d", "e"},
			func(revs []engine.Revision) []*rq {
				return []*rq{
					{Key: []byte("a"), RangeEnd: []byte("z"), Revision: 0},
					{Key: []byte("a"), RangeEnd: []byte("z"), Revision: int64(revs[0] - 1)},
					{Key: []byte("a"), RangeEnd: []byte("z"), Revision: int64(revs[0])},
					{Key: []byte("a"), RangeEnd: []byte("z"), Revision: int64(revs[1])},
					{Key: []byte("a"), RangeEnd: []byte("z"), Revision: int64(revs[2] - 1)},
					{Key: []byte("a"), RangeEnd: []byte("z"), Revision: -1},
				}
			},
			[][]string{{"a", "b", "c", "d", "e"}, {}, {"a"}, {"a", "b"}, {"a", "b"}, {"a", "b", "c", "d", "e"}},
			[]bool{false, false, false, false, false, false}, []int64{5, 0, 1, 2, 2, 5},
		},
		{
			"limit", []string{"a", "b", "c"},
			func([]engine.Revision) []*rq {
				return []*rq{
					{Key: []byte("a"), RangeEnd: []byte("z"), Limit: 1},
					{Key: []byte("a"), RangeEnd: []byte("z"), Limit: 2},
					{Key: []byte("a"), RangeEnd: []byte("z"), Limit: 3},
					{Key: []byte("a"), RangeEnd: []byte("z"), Limit: 4},
					{Key: []byte("a"), RangeEnd: []byte("z"), Limit: -1},
					{Key: []byte("a"), RangeEnd: []byte("z"), Limit: 1 << 62},
					{Key: []byte("a"), RangeEnd: []byte("z"), Limit: 1<<63 - 1},
				}
			},
			[][]string{{"a"}, {"a", "b"}, {"a", "b", "c"}, {"a", "b", "c"}, {"a", "b", "c"}, {"a", "b", "c"}, {"a", "b", "c"}},
			[]bool{true, true, false, false, false, false, false}, []int64{3, 3, 3, 3, 3, 3, 3},
		},
		{
			"sort", []string{"b", "a", "c", "d", "c"},
			func([]engine.Revision) []*rq {
				return []*rq{
					{Key: []byte("a"), RangeEnd: []byte("z"), Limit: 1, SortOrder: pb.RangeRequest_ASCEND, SortTarget: pb.RangeRequest_KEY},
					{Key: []byte("a"), RangeEnd: []byte("z"), Limit: 1, SortOrder: pb.RangeRequest_DESCEND, SortTarget: pb.RangeRequest_KEY},
					{Key: []byte("a"), RangeEnd: []byte("z"), Limit: 1, SortOrder: pb.RangeRequest_ASCEND, SortTarget: pb.RangeRequest_CREATE},
					{Key: []byte("a"), RangeEnd: []byte("z"), Limit: 1, SortOrder: pb.RangeRequest_DESCEND, SortTarget: pb.RangeRequest_MOD},
					{Key: []byte("z"), RangeEnd: []byte("z"), Limit: 1, SortOrder: pb.RangeRequest_DESCEND, SortTarget: pb.RangeRequest_CREATE},
					{Key: []byte("a"), RangeEnd: []byte("z"), Limit: 10, SortOrder: pb.RangeRequest_NONE, SortTarget: pb.RangeRequest_CREATE},
					{Key: []byte("a"), RangeEnd: []byte("z"), SortOrder: pb.RangeRequest_DESCEND, SortTarget: pb.RangeRequest_VERSION},
				}
			},
			[][]string{{"a"}, {"d"}, {"b"}, {"c"}, {}, {"b", "a", "c", "d"}, {"c", "a", "b", "d"}},
			[]bool{true, true, true, true, false, false, false}, []int64{4, 4, 4, 4, 0, 4, 4},
		},
		{
			// etcd sorts only the first limit+1 keys when sort_order is NONE.
			"sort none with limit", []string{"d", "c", "b", "a"},
			func([]engine.Revision) []*rq {
				return []*rq{
					{Key: []byte("a"), RangeEnd: []byte("z"), Limit: 2, SortTarget: pb.RangeRequest_CREATE},
					{Key: []byte("a"), RangeEnd: []byte("z"), Limit: 2, SortOrder: pb.RangeRequest_ASCEND, SortTarget: pb.RangeRequest_CREATE},
					{Key: []byte("a"), RangeEnd: []byte("z"), Limit: 3, SortTarget: pb.RangeRequest_MOD},
				}
			},
			[][]string{{"c", "b"}, {"d", "c"}, {"d", "c", "b"}},
			[]bool{true, true, true}, []int64{4, 4, 4},
		},
		{
			"min/max mod rev", []string{"rev2", "rev3", "rev4", "rev5", "rev6"},
			func(r []engine.Revision) []*rq {
				return []*rq{
					{Key: []byte{0}, RangeEnd: []byte{0}, MinModRevision: int64(r[1])},
					{Key: []byte{0}, RangeEnd: []byte{0}, MaxModRevision: int64(r[1])},
					{Key: []byte{0}, RangeEnd: []byte{0}, MinModRevision: int64(r[1]), MaxModRevision: int64(r[3])},
					{Key: []byte{0}, RangeEnd: []byte{0}, MaxModRevision: int64(r[4] + 100)},
					{Key: []byte{0}, RangeEnd: []byte{0}, MinModRevision: int64(r[1]), Limit: 2},
					{Key: []byte{0}, RangeEnd: []byte{0}, MinModRevision: int64(r[1]), Limit: 4},
					{Key: []byte{0}, RangeEnd: []byte{0}, MaxModRevision: -1},
				}
			},
			[][]string{{"rev3", "rev4", "rev5", "rev6"}, {"rev2", "rev3"}, {"rev3", "rev4", "rev5"}, {"rev2", "rev3", "rev4", "rev5", "rev6"}, {"rev3", "rev4"}, {"rev3", "rev4", "rev5", "rev6"}, {}},
			[]bool{false, false, false, false, true, false, false}, []int64{5, 5, 5, 5, 5, 5, 5},
		},
		{
			"min/max create rev", []string{"rev2", "rev3", "rev2", "rev2", "rev6", "rev3"},
			func(r []engine.Revision) []*rq {
				return []*rq{
					{Key: []byte{0}, RangeEnd: []byte{0}, MinCreateRevision: int64(r[1])},
					{Key: []byte{0}, RangeEnd: []byte{0}, MaxCreateRevision: int64(r[1])},
					{Key: []byte{0}, RangeEnd: []byte{0}, MinCreateRevision: int64(r[1]), MaxCreateRevision: int64(r[3])},
					{Key: []byte{0}, RangeEnd: []byte{0}, MaxCreateRevision: int64(r[5] + 100)},
				}
			},
			[][]string{{"rev3", "rev6"}, {"rev2", "rev3"}, {"rev3"}, {"rev2", "rev3", "rev6"}},
			[]bool{false, false, false, false}, []int64{3, 3, 3, 3},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newKVStore(t)
			var revs []engine.Revision
			for _, k := range tt.putKeys {
				revs = append(revs, s.mustPut(k, "bar"))
			}
			for j, req := range tt.reqs(revs) {
				resp, err := s.get(req)
				if err != nil {
					t.Fatalf("#%d: %v", j, err)
				}
				if got := keysOf(resp.Kvs); !slices.Equal(got, tt.want[j]) {
					t.Errorf("#%d: keys %v, want %v", j, got, tt.want[j])
				}
				if resp.More != tt.more[j] {
					t.Errorf("#%d: more %v, want %v", j, resp.More, tt.more[j])
				}
				if resp.Count != tt.counts[j] {
					t.Errorf("#%d: count %d, want %d", j, resp.Count, tt.counts[j])
				}
				if resp.Header == nil || resp.Header.Revision != 0 {
					t.Errorf("#%d: header %v, want empty", j, resp.Header)
				}
			}
		})
	}
}

func TestRangeKeysOnlyCountOnly(t *testing.T) {
	s := newKVStore(t)
	for _, k := range []string{"a", "b", "c"} {
		s.mustPut(k, "value-"+k)
	}
	got := s.mustGet(&pb.RangeRequest{Key: []byte("a"), RangeEnd: []byte("z"), KeysOnly: true, Limit: 2})
	if len(got.Kvs) != 2 || got.Kvs[0].Value != nil || got.Kvs[1].Value != nil || !got.More || got.Count != 3 || got.Kvs[1].Version != 1 {
		t.Fatalf("keys only: %v", got)
	}
	// keys_only still sorts by the values.
	got = s.mustGet(&pb.RangeRequest{Key: []byte("a"), RangeEnd: []byte("z"), KeysOnly: true,
		SortOrder: pb.RangeRequest_DESCEND, SortTarget: pb.RangeRequest_VALUE})
	if !slices.Equal(keysOf(got.Kvs), []string{"c", "b", "a"}) || got.Kvs[0].Value != nil {
		t.Fatalf("keys only by value: %v", got)
	}
	// etcd 3.7 answers keys_only from its index: no lease either, except
	// when sorting by value (it reads the full key-values then).
	if _, _, err := s.put(&pb.PutRequest{Key: []byte("b"), Value: []byte("value-b"), Lease: 7}); err != nil {
		t.Fatal(err)
	}
	got = s.mustGet(&pb.RangeRequest{Key: []byte("b"), KeysOnly: true})
	if len(got.Kvs) != 1 || got.Kvs[0].Lease != 0 || got.Kvs[0].Value != nil {
		t.Fatalf("keys only with a lease: %v", got)
	}
	got = s.mustGet(&pb.RangeRequest{Key: []byte("b"), KeysOnly: true, SortTarget: pb.RangeRequest_VALUE})
	if len(got.Kvs) != 1 || got.Kvs[0].Lease != 7 || got.Kvs[0].Value != nil {
		t.Fatalf("keys only sorted by value, with a lease: %v", got)
	}
	got = s.mustGet(&pb.RangeRequest{Key: []byte("b")})
	if len(got.Kvs) != 1 || got.Kvs[0].Lease != 7 {
		t.Fatalf("full read with a lease: %v", got)
	}
	// count_only ignores limit, filters and sort: no kvs, no more.
	got = s.mustGet(&pb.RangeRequest{Key: []byte("a"), RangeEnd: []byte("z"), CountOnly: true, Limit: 1, MinModRevision: 1 << 62})
	requireProtoEqual(t, "count only", got, &pb.RangeResponse{Header: &pb.ResponseHeader{}, Count: 3})
	got = s.mustGet(&pb.RangeRequest{Key: []byte("b"), CountOnly: true})
	requireProtoEqual(t, "count only single", got, &pb.RangeResponse{Header: &pb.ResponseHeader{}, Count: 1})
}

func TestRangeRevisionErrors(t *testing.T) {
	s := newKVStore(t)
	r1 := s.mustPut("foo", "a")
	r2 := s.mustPut("foo", "b")
	s.mustPut("foo", "c")
	snap := s.e.NewSnapshot()
	defer snap.Close()
	if _, err := Range(snap, &pb.RangeRequest{Key: []byte("foo"), Revision: int64(s.rev + 1)}, s.rev); !isErr(err, rpctypes.ErrGRPCFutureRev) {
		t.Fatalf("future: %v", err)
	}
	s.compact(r2)
	if _, err := s.get(&pb.RangeRequest{Key: []byte("foo"), Revision: int64(r1)}); !isErr(err, rpctypes.ErrGRPCCompacted) {
		t.Fatalf("compacted: %v", err)
	}
	got := s.mustGet(&pb.RangeRequest{Key: []byte("foo"), Revision: int64(r2)})
	if string(got.Kvs[0].Value) != "b" {
		t.Fatalf("at compaction revision: %v", got)
	}
}

// TestTxnCompare covers each compare target and result, etcd's rules for
// missing keys and mismatched target unions.
func TestTxnCompare(t *testing.T) {
	s := newKVStore(t)
	s.leases[5] = true
	r1 := s.mustPut("a", "1")
	s.mustPut("a", "2")
	if _, _, err := s.put(&pb.PutRequest{Key: []byte("b"), Value: []byte("x"), Lease: 5}); err != nil {
		t.Fatal(err)
	}
	rb := s.rev
	s.mustPut("c", "")
	v := func(k string, r pb.Compare_CompareResult, val string) *pb.Compare {
		return &pb.Compare{Key: []byte(k), Target: pb.Compare_VALUE, Result: r, TargetUnion: &pb.Compare_Value{Value: []byte(val)}}
	}
	cr := func(k string, r pb.Compare_CompareResult, rev engine.Revision) *pb.Compare {
		return &pb.Compare{Key: []byte(k), Target: pb.Compare_CREATE, Result: r, TargetUnion: &pb.Compare_CreateRevision{CreateRevision: int64(rev)}}
	}
	md := func(k string, r pb.Compare_CompareResult, rev engine.Revision) *pb.Compare {
		return &pb.Compare{Key: []byte(k), Target: pb.Compare_MOD, Result: r, TargetUnion: &pb.Compare_ModRevision{ModRevision: int64(rev)}}
	}
	ls := func(k string, r pb.Compare_CompareResult, l int64) *pb.Compare {
		return &pb.Compare{Key: []byte(k), Target: pb.Compare_LEASE, Result: r, TargetUnion: &pb.Compare_Lease{Lease: l}}
	}
	tests := []struct {
		name string
		cmp  *pb.Compare
		want bool
	}{
		{"value equal", v("a", pb.Compare_EQUAL, "2"), true},
		{"value not equal", v("a", pb.Compare_NOT_EQUAL, "1"), true},
		{"value greater", v("a", pb.Compare_GREATER, "10"), true},
		{"value less", v("a", pb.Compare_LESS, "2"), false},
		{"empty value equal", v("c", pb.Compare_EQUAL, ""), true},
		{"missing key value equal empty", v("zz", pb.Compare_EQUAL, ""), false},
		{"missing key value not equal", v("zz", pb.Compare_NOT_EQUAL, "x"), false},
		{"version", cmpVersion("a", pb.Compare_EQUAL, 2), true},
		{"version greater", cmpVersion("a", pb.Compare_GREATER, 1), true},
		{"missing key version 0", cmpVersion("zz", pb.Compare_EQUAL, 0), true},
		{"missing key version less", cmpVersion("zz", pb.Compare_LESS, 1), true},
		{"create", cr("a", pb.Compare_EQUAL, r1), true},
		{"create less", cr("a", pb.Compare_LESS, r1), false},
		{"missing key create 0", cr("zz", pb.Compare_EQUAL, 0), true},
		{"mod", md("b", pb.Compare_EQUAL, rb), true},
		{"mod not equal", md("a", pb.Compare_NOT_EQUAL, r1), true},
		{"mod less", md("a", pb.Compare_LESS, rb), true},
		{"lease", ls("b", pb.Compare_EQUAL, 5), true},
		{"lease none", ls("a", pb.Compare_EQUAL, 0), true},
		{"lease greater", ls("b", pb.Compare_GREATER, 0), true},
		{"mismatched union compares with 0", &pb.Compare{Key: []byte("a"), Target: pb.Compare_MOD, Result: pb.Compare_GREATER, TargetUnion: &pb.Compare_Value{Value: []byte("zzz")}}, true},
		{"no union compares with nil", &pb.Compare{Key: []byte("a"), Target: pb.Compare_VALUE, Result: pb.Compare_GREATER}, true},
		{"unknown result is true", &pb.Compare{Key: []byte("a"), Target: pb.Compare_VERSION, Result: 17, TargetUnion: &pb.Compare_Version{Version: 99}}, true},
		{"unknown target compares equal", &pb.Compare{Key: []byte("a"), Target: 17, Result: pb.Compare_EQUAL}, true},
		{"range all match", cmpVersionRange("a", "c", pb.Compare_GREATER, 0), true},
		{"range one fails", cmpVersionRange("a", "c", pb.Compare_EQUAL, 2), false},
		{"empty range version", cmpVersionRange("x", "y", pb.Compare_EQUAL, 0), true},
		{"open range", &pb.Compare{Key: []byte("b"), RangeEnd: []byte{0}, Target: pb.Compare_VERSION, Result: pb.Compare_EQUAL, TargetUnion: &pb.Compare_Version{Version: 1}}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, _, err := s.txn(&pb.TxnRequest{Compare: []*pb.Compare{tt.cmp}})
			if err != nil {
				t.Fatal(err)
			}
			if resp.Succeeded != tt.want {
				t.Fatalf("succeeded %v, want %v", resp.Succeeded, tt.want)
			}
		})
	}
	// All compares must hold; the first failing one decides.
	resp, _, err := s.txn(&pb.TxnRequest{Compare: []*pb.Compare{cmpVersion("a", pb.Compare_EQUAL, 2), cmpVersion("b", pb.Compare_EQUAL, 7)},
		Success: []*pb.RequestOp{rangeOp("a", "")}, Failure: []*pb.RequestOp{rangeOp("b", ""), rangeOp("c", "")}})
	if err != nil || resp.Succeeded || len(resp.Responses) != 2 {
		t.Fatalf("two compares: %v %v", resp, err)
	}
}

func cmpVersionRange(k, end string, r pb.Compare_CompareResult, v int64) *pb.Compare {
	c := cmpVersion(k, r, v)
	c.RangeEnd = []byte(end)
	return c
}

// TestTxnRangeCompare follows etcd's TestV3TxnRangeCompare.
func TestTxnRangeCompare(t *testing.T) {
	s := newKVStore(t)
	var revs []engine.Revision
	for _, k := range []string{"/a/2", "/a/3", "/a/4", "/f/5"} {
		revs = append(revs, s.mustPut(k, "x"))
	}
	create := func(k, end string, rev engine.Revision) *pb.Compare {
		return &pb.Compare{Key: []byte(k), RangeEnd: []byte(end), Target: pb.Compare_CREATE, Result: pb.Compare_LESS,
			TargetUnion: &pb.Compare_CreateRevision{CreateRevision: int64(rev)}}
	}
	tests := []struct {
		cmp  *pb.Compare
		want bool
	}{
		{create("/a/", "\x00", revs[3]+1), true},
		{create("/a/", "\x00", revs[3]), false},
		{create("/a/", "/a0", revs[3]), true},
		{create("/a/", "/a0", revs[2]), false},
		{&pb.Compare{Key: []byte("/b/"), RangeEnd: []byte("/b0"), Target: pb.Compare_VALUE, Result: pb.Compare_EQUAL, TargetUnion: &pb.Compare_Value{Value: []byte("x")}}, false},
		{&pb.Compare{Key: []byte("/a/"), RangeEnd: []byte("/a0"), Target: pb.Compare_LEASE, Result: pb.Compare_GREATER, TargetUnion: &pb.Compare_Lease{Lease: 0}}, false},
		{&pb.Compare{Key: []byte("/a/"), RangeEnd: []byte("/a0"), Target: pb.Compare_LEASE, Result: pb.Compare_EQUAL, TargetUnion: &pb.Compare_Lease{Lease: 0}}, true},
	}
	for i, tt := range tests {
		resp, _, err := s.txn(&pb.TxnRequest{Compare: []*pb.Compare{tt.cmp}})
		if err != nil {
			t.Fatal(err)
		}
		if resp.Succeeded != tt.want {
			t.Errorf("#%d: succeeded %v, want %v", i, resp.Succeeded, tt.want)
		}
	}
}

// TestTxnNestedPath follows etcd's TestV3TxnNestedPath.
func TestTxnNestedPath(t *testing.T) {
	s := newKVStore(t)
	rng := rand.New(rand.NewPCG(1, 2))
	for round := 0; round < 20; round++ {
		top := &pb.TxnRequest{}
		cur := top
		path := make([]bool, 10)
		for i := range path {
			next := &pb.TxnRequest{}
			path[i] = rng.IntN(2) == 0
			if path[i] {
				cur.Compare = append(cur.Compare, cmpVersion("k", pb.Compare_EQUAL, 0))
				cur.Success = append(cur.Success, txnOp(next))
			} else {
				cur.Compare = append(cur.Compare, cmpVersion("k", pb.Compare_EQUAL, 1))
				cur.Failure = append(cur.Failure, txnOp(next))
			}
			cur = next
		}
		resp, _, err := s.txn(top)
		if err != nil {
			t.Fatal(err)
		}
		r := resp
		for i := range path {
			if r.Succeeded != path[i] {
				t.Fatalf("level %d: succeeded %v, want %v", i, r.Succeeded, path[i])
			}
			if i > 0 && (r.Header == nil || r.Header.Revision != 0) {
				t.Fatalf("nested header %v, want empty", r.Header)
			}
			r = r.Responses[0].GetResponseTxn()
		}
	}
}

// TestTxnOpsSeeEarlierWrites checks that ops of a txn see the writes of the
// ops before them, and the revisions in the per-op headers.
func TestTxnOpsSeeEarlierWrites(t *testing.T) {
	s := newKVStore(t)
	ra := s.mustPut("a", "old")
	rb := s.mustPut("b", "b0")
	before := s.rev
	resp, rev, err := s.txn(&pb.TxnRequest{Success: []*pb.RequestOp{
		rangeOp("a", ""),     // before any write: the pre-txn state and revision
		delOp("zzz", ""),     // deletes nothing: still the pre-txn revision
		putOp("a", "new"),    // writes
		rangeOp("a", "\x00"), // sees the put and b
		delOp("b", ""),       // deletes b
		rangeOp("a", "c"),    // b is gone
		delOp("b", "c"),      // b again: overlapping deletes are allowed
		rangeOp("b", ""),     // b is gone
		rangeReqOp(&pb.RangeRequest{Key: []byte("a"), RangeEnd: []byte("c"), Revision: int64(rb)}), // history
		txnOp(&pb.TxnRequest{Success: []*pb.RequestOp{rangeOp("b", "")}}),
	}})
	if err != nil {
		t.Fatal(err)
	}
	if !TxnChanged(resp) {
		t.Fatal("TxnChanged false")
	}
	hdr := func(r engine.Revision) *pb.ResponseHeader { return &pb.ResponseHeader{Revision: int64(r)} }
	want := &pb.TxnResponse{Header: &pb.ResponseHeader{}, Succeeded: true, Responses: []*pb.ResponseOp{
		{Response: &pb.ResponseOp_ResponseRange{ResponseRange: &pb.RangeResponse{Header: hdr(rev - 1), Count: 1, Kvs: []*mvccpb.KeyValue{kv("a", "old", ra, ra, 1, 0)}}}},
		{Response: &pb.ResponseOp_ResponseDeleteRange{ResponseDeleteRange: &pb.DeleteRangeResponse{Header: hdr(rev - 1)}}},
		{Response: &pb.ResponseOp_ResponsePut{ResponsePut: &pb.PutResponse{Header: hdr(rev)}}},
		{Response: &pb.ResponseOp_ResponseRange{ResponseRange: &pb.RangeResponse{Header: hdr(rev), Count: 2, Kvs: []*mvccpb.KeyValue{kv("a", "new", ra, rev, 2, 0), kv("b", "b0", rb, rb, 1, 0)}}}},
		{Response: &pb.ResponseOp_ResponseDeleteRange{ResponseDeleteRange: &pb.DeleteRangeResponse{Header: hdr(rev), Deleted: 1}}},
		{Response: &pb.ResponseOp_ResponseRange{ResponseRange: &pb.RangeResponse{Header: hdr(rev), Count: 1, Kvs: []*mvccpb.KeyValue{kv("a", "new", ra, rev, 2, 0)}}}},
		{Response: &pb.ResponseOp_ResponseDeleteRange{ResponseDeleteRange: &pb.DeleteRangeResponse{Header: hdr(rev)}}},
		{Response: &pb.ResponseOp_ResponseRange{ResponseRange: &pb.RangeResponse{Header: hdr(rev)}}},
		{Response: &pb.ResponseOp_ResponseRange{ResponseRange: &pb.RangeResponse{Header: hdr(rev), Count: 2, Kvs: []*mvccpb.KeyValue{kv("a", "old", ra, ra, 1, 0), kv("b", "b0", rb, rb, 1, 0)}}}},
		{Response: &pb.ResponseOp_ResponseTxn{ResponseTxn: &pb.TxnResponse{Header: &pb.ResponseHeader{}, Succeeded: true, Responses: []*pb.ResponseOp{
			{Response: &pb.ResponseOp_ResponseRange{ResponseRange: &pb.RangeResponse{Header: hdr(rev)}}},
		}}}},
	}}
	requireProtoEqual(t, "txn", resp, want)
	if before >= rev-1 || rev <= before {
		t.Fatalf("revisions: before %d rev %d", before, rev)
	}
	got := s.mustGet(&pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}})
	requireProtoEqual(t, "after txn", got, &pb.RangeResponse{Header: &pb.ResponseHeader{}, Count: 1, Kvs: []*mvccpb.KeyValue{kv("a", "new", ra, rev, 2, 0)}})
}

// TestTxnNestedComparesSeePreTxnState: etcd evaluates the compares of the
// whole path before running any op.
func TestTxnNestedComparesSeePreTxnState(t *testing.T) {
	s := newKVStore(t)
	s.mustPut("k", "v1")
	resp, _, err := s.txn(&pb.TxnRequest{Success: []*pb.RequestOp{
		putOp("k", "v2"),
		txnOp(&pb.TxnRequest{
			Compare: []*pb.Compare{{Key: []byte("k"), Target: pb.Compare_VALUE, Result: pb.Compare_EQUAL, TargetUnion: &pb.Compare_Value{Value: []byte("v1")}}},
			Success: []*pb.RequestOp{putOp("then", "1")},
			Failure: []*pb.RequestOp{putOp("else", "1")},
		}),
	}})
	if err != nil {
		t.Fatal(err)
	}
	if !resp.Responses[1].GetResponseTxn().Succeeded {
		t.Fatal("nested compare saw the outer put")
	}
	if got := s.mustGet(&pb.RangeRequest{Key: []byte("then")}); got.Count != 1 {
		t.Fatalf("then branch not applied: %v", got)
	}
}

// TestTxnRevision follows etcd's TestV3TxnRevision: only a txn that writes
// takes a new revision.
func TestTxnRevision(t *testing.T) {
	s := newKVStore(t)
	s.mustPut("abc", "def")
	for _, tt := range []struct {
		ops     []*pb.RequestOp
		changed bool
	}{
		{[]*pb.RequestOp{rangeOp("abc", "")}, false},
		{[]*pb.RequestOp{delOp("def", "")}, false},
		{[]*pb.RequestOp{txnOp(&pb.TxnRequest{Success: []*pb.RequestOp{delOp("x", "y")}})}, false},
		{[]*pb.RequestOp{putOp("abc", "123")}, true},
		{[]*pb.RequestOp{txnOp(&pb.TxnRequest{Failure: []*pb.RequestOp{delOp("abc", "")}, Compare: []*pb.Compare{cmpVersion("abc", pb.Compare_EQUAL, 0)}})}, true},
	} {
		resp, _, err := s.txn(&pb.TxnRequest{Success: tt.ops})
		if err != nil {
			t.Fatal(err)
		}
		if TxnChanged(resp) != tt.changed {
			t.Fatalf("%v: changed %v, want %v", tt.ops, TxnChanged(resp), tt.changed)
		}
	}
}

// TestTxnChecksBeforeWriting: a txn whose check fails writes nothing, even
// when the failing op comes after a write (kvStore.write enforces an empty
// batch).
func TestTxnChecksBeforeWriting(t *testing.T) {
	s := newKVStore(t)
	s.leases[9] = true
	r1 := s.mustPut("foo", "bar")
	s.mustPut("foo", "bar2")
	s.mustPut("foo", "bar3")
	s.compact(s.rev - 1)
	tests := []struct {
		name string
		txn  *pb.TxnRequest
		want error
	}{
		{"ignore_value on missing key", &pb.TxnRequest{Success: []*pb.RequestOp{putOp("a", "1"), putReqOp(&pb.PutRequest{Key: []byte("missing"), IgnoreValue: true})}}, rpctypes.ErrGRPCKeyNotFound},
		// Any revision below the txn's own is an instant before it; 1<<62
		// is in the future.
		{"future revision", &pb.TxnRequest{Success: []*pb.RequestOp{putOp("foo", "x"), rangeReqOp(&pb.RangeRequest{Key: []byte("foo"), Revision: 1 << 62})}}, rpctypes.ErrGRPCFutureRev},
		{"compacted revision", &pb.TxnRequest{Success: []*pb.RequestOp{putOp("foo", "x"), rangeReqOp(&pb.RangeRequest{Key: []byte("foo"), Revision: int64(r1)})}}, rpctypes.ErrGRPCCompacted},
		{"negative revision after compaction", &pb.TxnRequest{Success: []*pb.RequestOp{rangeReqOp(&pb.RangeRequest{Key: []byte("foo"), Revision: -1})}}, rpctypes.ErrGRPCCompacted},
		{"nested check", &pb.TxnRequest{Success: []*pb.RequestOp{putOp("a", "1"), txnOp(&pb.TxnRequest{Success: []*pb.RequestOp{putReqOp(&pb.PutRequest{Key: []byte("b"), IgnoreLease: true})}})}}, rpctypes.ErrGRPCKeyNotFound},
		{"missing lease", &pb.TxnRequest{Success: []*pb.RequestOp{putOp("a", "1"), putReqOp(&pb.PutRequest{Key: []byte("b"), Lease: 8})}}, rpctypes.ErrGRPCLeaseNotFound},
		{"missing lease in the branch not taken", &pb.TxnRequest{Success: []*pb.RequestOp{rangeOp("a", "")}, Failure: []*pb.RequestOp{putReqOp(&pb.PutRequest{Key: []byte("b"), Lease: 8})}}, nil},
		{"check order: first failing put wins", &pb.TxnRequest{Success: []*pb.RequestOp{putReqOp(&pb.PutRequest{Key: []byte("b"), Lease: 8}), putReqOp(&pb.PutRequest{Key: []byte("c"), IgnoreValue: true})}}, rpctypes.ErrGRPCLeaseNotFound},
		// etcd 3.7 checks the ops in order (etcd 3.5 checked every put,
		// then every range).
		{"check order: op order", &pb.TxnRequest{Success: []*pb.RequestOp{rangeReqOp(&pb.RangeRequest{Key: []byte("foo"), Revision: int64(r1)}), txnOp(&pb.TxnRequest{Success: []*pb.RequestOp{putReqOp(&pb.PutRequest{Key: []byte("c"), IgnoreValue: true})}})}}, rpctypes.ErrGRPCCompacted},
		{"check order: nested put before a later range", &pb.TxnRequest{Success: []*pb.RequestOp{txnOp(&pb.TxnRequest{Success: []*pb.RequestOp{putReqOp(&pb.PutRequest{Key: []byte("c"), IgnoreValue: true})}}), rangeReqOp(&pb.RangeRequest{Key: []byte("foo"), Revision: int64(r1)})}}, rpctypes.ErrGRPCKeyNotFound},
		{"lease check before ignore check", &pb.TxnRequest{Success: []*pb.RequestOp{putReqOp(&pb.PutRequest{Key: []byte("c"), IgnoreValue: true, Lease: 8})}}, rpctypes.ErrGRPCLeaseNotFound},
		{"existing lease", &pb.TxnRequest{Success: []*pb.RequestOp{putReqOp(&pb.PutRequest{Key: []byte("b"), Lease: 9})}}, nil},
		{"duplicate key", &pb.TxnRequest{Success: []*pb.RequestOp{putOp("a", "1"), putOp("a", "2")}}, rpctypes.ErrGRPCDuplicateKey},
		{"empty op", &pb.TxnRequest{Success: []*pb.RequestOp{putOp("a", "1"), {}}}, rpctypes.ErrGRPCKeyNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := s.txn(tt.txn)
			if !isErr(err, tt.want) {
				t.Fatalf("err %v, want %v", err, tt.want)
			}
		})
	}
}

// TestTxnNegativeRevisionBeforeCompaction: etcd's first revision is -1
// before any compaction, so -1 reads the current state and -2 is compacted.
func TestTxnNegativeRevisionBeforeCompaction(t *testing.T) {
	s := newKVStore(t)
	s.mustPut("foo", "bar")
	resp, _, err := s.txn(&pb.TxnRequest{Success: []*pb.RequestOp{rangeReqOp(&pb.RangeRequest{Key: []byte("foo"), Revision: -1})}})
	if err != nil || resp.Responses[0].GetResponseRange().Count != 1 {
		t.Fatalf("revision -1: %v %v", resp, err)
	}
	if _, _, err := s.txn(&pb.TxnRequest{Success: []*pb.RequestOp{rangeReqOp(&pb.RangeRequest{Key: []byte("foo"), Revision: -2})}}); !isErr(err, rpctypes.ErrGRPCCompacted) {
		t.Fatalf("revision -2: %v", err)
	}
}

// TestTxnOpenEndedDeleteQuirk: etcd's overlap check reads range_end "\x00"
// literally, so a delete of every key >= k and a put of a key in that span
// pass it. The txn then deletes and re-creates the key at one revision.
func TestTxnOpenEndedDeleteQuirk(t *testing.T) {
	s := newKVStore(t)
	s.mustPut("a", "a0")
	s.mustPut("b", "b0")
	resp, rev, err := s.txn(&pb.TxnRequest{Success: []*pb.RequestOp{delOp("a", "\x00"), putOp("b", "b1")}})
	if err != nil {
		t.Fatal(err)
	}
	if d := resp.Responses[0].GetResponseDeleteRange().Deleted; d != 2 {
		t.Fatalf("deleted %d", d)
	}
	got := s.mustGet(&pb.RangeRequest{Key: []byte("a"), RangeEnd: []byte{0}})
	requireProtoEqual(t, "after", got, &pb.RangeResponse{Header: &pb.ResponseHeader{}, Count: 1, Kvs: []*mvccpb.KeyValue{kv("b", "b1", rev, rev, 1, 0)}})

	// With ignore_value etcd panics; Tessera re-creates the key with the
	// value it had before the txn.
	resp, rev, err = s.txn(&pb.TxnRequest{Success: []*pb.RequestOp{delOp("a", "\x00"), putReqOp(&pb.PutRequest{Key: []byte("b"), IgnoreValue: true, PrevKv: true})}})
	if err != nil {
		t.Fatal(err)
	}
	if p := resp.Responses[1].GetResponsePut(); p.PrevKv != nil {
		t.Fatalf("prev kv of a deleted key: %v", p.PrevKv)
	}
	got = s.mustGet(&pb.RangeRequest{Key: []byte("b")})
	requireProtoEqual(t, "recreated", got.Kvs[0], kv("b", "b1", rev, rev, 1, 0))

	// Put first, then the open-ended delete removes it again.
	_, _, err = s.txn(&pb.TxnRequest{Success: []*pb.RequestOp{putOp("c", "c1"), delOp("a", "\x00")}})
	if err != nil {
		t.Fatal(err)
	}
	if got := s.mustGet(&pb.RangeRequest{Key: []byte("a"), RangeEnd: []byte{0}}); got.Count != 0 {
		t.Fatalf("after put+delete: %v", got)
	}
}

// TestEvalReadOnlyTxn: a read-only txn gives the same answer on a snapshot
// as through the apply path, with its inner headers at the read revision.
func TestEvalReadOnlyTxn(t *testing.T) {
	s := newKVStore(t)
	for i := range 5 {
		s.mustPut(fmt.Sprintf("k%d", i), fmt.Sprintf("v%d", i))
	}
	req := &pb.TxnRequest{
		Compare: []*pb.Compare{cmpVersion("k1", pb.Compare_EQUAL, 1)},
		Success: []*pb.RequestOp{
			rangeOp("k0", "k3"),
			txnOp(&pb.TxnRequest{Compare: []*pb.Compare{cmpVersion("k9", pb.Compare_GREATER, 0)}, Failure: []*pb.RequestOp{rangeReqOp(&pb.RangeRequest{Key: []byte("k"), RangeEnd: []byte("l"), CountOnly: true})}}),
		},
		Failure: []*pb.RequestOp{rangeOp("k4", "")},
	}
	if !IsReadOnlyTxn(req) {
		t.Fatal("IsReadOnlyTxn false")
	}
	snap := s.e.NewSnapshot()
	defer snap.Close()
	ro, err := EvalReadOnlyTxn(snap, req, s.rev)
	if err != nil {
		t.Fatal(err)
	}
	if ro.Responses[0].GetResponseRange().Header.Revision != int64(s.rev) || ro.Responses[1].GetResponseTxn().Responses[0].GetResponseRange().Count != 5 {
		t.Fatalf("read-only txn: %v", ro)
	}
	applied, rev, err := s.txn(req)
	if err != nil {
		t.Fatal(err)
	}
	// Same answer; the apply path reports the pre-txn revision rev-1.
	if TxnChanged(applied) {
		t.Fatal("read-only txn changed")
	}
	ro.Responses[0].GetResponseRange().Header.Revision = int64(rev - 1)
	ro.Responses[1].GetResponseTxn().Responses[0].GetResponseRange().Header.Revision = int64(rev - 1)
	requireProtoEqual(t, "apply vs eval", applied, ro)

	withPut := &pb.TxnRequest{Success: []*pb.RequestOp{txnOp(&pb.TxnRequest{Failure: []*pb.RequestOp{putOp("x", "")}})}}
	if IsReadOnlyTxn(withPut) {
		t.Fatal("nested put counted as read-only")
	}
	if _, err := EvalReadOnlyTxn(snap, withPut, s.rev); !errors.Is(err, ErrTxnNotReadOnly) {
		t.Fatalf("eval of a write txn: %v", err)
	}
	// Future revision relative to the read revision.
	if _, err := EvalReadOnlyTxn(snap, &pb.TxnRequest{Success: []*pb.RequestOp{rangeReqOp(&pb.RangeRequest{Key: []byte("k1"), Revision: int64(s.rev + 1)})}}, s.rev); !isErr(err, rpctypes.ErrGRPCFutureRev) {
		t.Fatalf("future in read-only txn: %v", err)
	}
}

func TestRangeKeys(t *testing.T) {
	s := newKVStore(t)
	for _, k := range []string{"a", "b", "c", "d"} {
		s.mustPut(k, "v")
	}
	snap := s.e.NewSnapshot()
	defer snap.Close()
	kvs, count, err := RangeKeys(snap, []byte("a"), []byte{0}, s.rev, 2, true)
	if err != nil || count != 4 || !slices.Equal(keysOf(kvs), []string{"a", "b"}) || kvs[0].Value != nil {
		t.Fatalf("RangeKeys: %v %d %v", kvs, count, err)
	}
	kvs, count, err = RangeKeys(snap, []byte("c"), nil, s.rev, 1, false)
	if err != nil || count != 1 || string(kvs[0].Value) != "v" {
		t.Fatalf("RangeKeys single: %v %d %v", kvs, count, err)
	}
}
