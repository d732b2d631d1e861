// Package integration_test checks Tessera's etcd KV API end to end with
// etcd's own client on an in-process three-node cluster whose keyspace is cut
// into four data ranges, following what etcd's tests/integration
// (v3_grpc_test.go, clientv3/kv_test.go, clientv3/txn_test.go) check, adapted
// to Tessera's revisions (TSO instants: increasing, not consecutive) and to
// its documented limits (no atomic writes across ranges).
package integration_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tesseradb/tessera/tests/testcluster"
)

// splitKeys cut the keyspace into four data ranges:
//
//	range 2: ["", "b")   keys a*
//	range 3: ["b", "d")  keys b*, c*
//	range 4: ["d", "f")  keys d*, e*
//	range 5: ["f", "")   keys f*, g*, ...
var splitKeys = []string{"b", "d", "f"}

// rangeKeys has one key prefix per data range, in key order.
var rangeKeys = []string{"a", "c", "e", "g"}

// dataRanges are the data ranges' ids, in key order; metaRange is the meta
// group (the TSO's home).
var dataRanges = []uint64{2, 3, 4, 5}

const metaRange = 1

// opTimeout bounds each request of a test (generous: -race on two shared
// cores).
const opTimeout = 30 * time.Second

// newCluster starts the three-node, four-range cluster of these tests and
// waits until it serves.
func newCluster(t *testing.T) *testcluster.Cluster {
	t.Helper()
	c := testcluster.Start(t, testcluster.Options{Nodes: 3, SplitKeys: splitKeys})
	c.WaitReady(t)
	return c
}

// newClusterClient starts a cluster and returns it with a client of all its
// nodes.
func newClusterClient(t *testing.T) (*testcluster.Cluster, *clientv3.Client) {
	t.Helper()
	c := newCluster(t)
	return c, c.Client(t)
}

// tctx returns a context for one step of a test.
func tctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), opTimeout)
	t.Cleanup(cancel)
	return c
}

// rawKV returns the raw gRPC KV client under cli, for requests clientv3 cannot
// express (unknown sort values, empty keys) and to see responses unaltered.
func rawKV(cli *clientv3.Client) pb.KVClient {
	return pb.NewKVClient(cli.ActiveConnection())
}

// errIs reports whether err is etcd's error want, by its description (what
// etcd's clients compare), whether err came through clientv3 or raw gRPC.
func errIs(err, want error) bool {
	if err == nil || want == nil {
		return err == want
	}
	return rpctypes.ErrorDesc(err) == rpctypes.ErrorDesc(want)
}

// wantErr fails t unless err is etcd's error want.
func wantErr(t testing.TB, what string, err, want error) {
	t.Helper()
	if !errIs(err, want) {
		t.Errorf("%s: err = %v, want %v", what, err, want)
	}
}

// wantCrossRange fails t unless err is Tessera's refusal of a write across
// ranges: FailedPrecondition naming the ranges.
func wantCrossRange(t testing.TB, what string, err error) {
	t.Helper()
	s, ok := status.FromError(err)
	if err == nil || !ok || s.Code() != codes.FailedPrecondition || !strings.Contains(s.Message(), "ranges") {
		t.Errorf("%s: err = %v, want FailedPrecondition naming the ranges", what, err)
	}
}

// must fails t at once on err.
func must(t testing.TB, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// put writes k=v and returns the write's revision.
func put(t testing.TB, cli *clientv3.Client, k, v string) int64 {
	t.Helper()
	resp, err := cli.Put(tctx(t), k, v)
	must(t, fmt.Sprintf("put %q", k), err)
	return resp.Header.Revision
}

// keysOf returns the keys of kvs.
func keysOf(kvs []*mvccpb.KeyValue) []string {
	out := make([]string, 0, len(kvs))
	for _, kv := range kvs {
		out = append(out, string(kv.Key))
	}
	return out
}

// wantKeys fails t unless kvs hold exactly the keys want, in order.
func wantKeys(t testing.TB, what string, kvs []*mvccpb.KeyValue, want ...string) {
	t.Helper()
	if got := keysOf(kvs); !slices.Equal(got, want) && !(len(got) == 0 && len(want) == 0) {
		t.Errorf("%s: keys = %q, want %q", what, got, want)
	}
}

// model is what the test wrote: every write, in revision order, so that the
// state at any revision can be computed.
type model struct {
	writes []write
}

// write is one acknowledged change of one key; a delete has del set.
type write struct {
	key, value string
	rev        int64
	del        bool
}

func (m *model) put(k, v string, rev int64) {
	m.add(write{key: k, value: v, rev: rev})
}

func (m *model) del(k string, rev int64) {
	m.add(write{key: k, rev: rev, del: true})
}

func (m *model) add(w write) {
	m.writes = append(m.writes, w)
	slices.SortStableFunc(m.writes, func(a, b write) int {
		switch {
		case a.rev < b.rev:
			return -1
		case a.rev > b.rev:
			return 1
		}
		return 0
	})
}

// at returns the live keys in [from, to) (to "" for no end) at revision rev
// with their metadata, sorted by key.
func (m *model) at(rev int64, from, to string) []*mvccpb.KeyValue {
	live := map[string]*mvccpb.KeyValue{}
	for _, w := range m.writes {
		if w.rev > rev {
			break
		}
		if w.key < from || (to != "" && w.key >= to) {
			continue
		}
		cur := live[w.key]
		switch {
		case w.del:
			delete(live, w.key)
		case cur == nil:
			live[w.key] = &mvccpb.KeyValue{Key: []byte(w.key), Value: []byte(w.value), CreateRevision: w.rev, ModRevision: w.rev, Version: 1}
		default:
			cur.Value, cur.ModRevision, cur.Version = []byte(w.value), w.rev, cur.Version+1
		}
	}
	var out []*mvccpb.KeyValue
	for _, kv := range live {
		out = append(out, kv)
	}
	slices.SortFunc(out, func(a, b *mvccpb.KeyValue) int { return strings.Compare(string(a.Key), string(b.Key)) })
	return out
}

// wantKVs fails t unless got equals want field by field (lease included).
func wantKVs(t testing.TB, what string, got, want []*mvccpb.KeyValue) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: %d kvs %s, want %d %s", what, len(got), fmtKVs(got), len(want), fmtKVs(want))
		return
	}
	for i := range got {
		g, w := got[i], want[i]
		if string(g.Key) != string(w.Key) || string(g.Value) != string(w.Value) || g.CreateRevision != w.CreateRevision ||
			g.ModRevision != w.ModRevision || g.Version != w.Version || g.Lease != w.Lease {
			t.Errorf("%s: kvs %s, want %s", what, fmtKVs(got), fmtKVs(want))
			return
		}
	}
}

func fmtKVs(kvs []*mvccpb.KeyValue) string {
	var b strings.Builder
	b.WriteString("[")
	for i, kv := range kvs {
		if i > 0 {
			b.WriteString(" ")
		}
		fmt.Fprintf(&b, "%q=%q(c%d,m%d,v%d,l%d)", kv.Key, kv.Value, kv.CreateRevision, kv.ModRevision, kv.Version, kv.Lease)
	}
	b.WriteString("]")
	return b.String()
}
