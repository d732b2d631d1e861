package system_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/url"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/tesseradb/tessera/proto/tesserapb"
)

// internalAt returns an Internal client of the gRPC server at a node URL
// (client or peer port), closed when the test ends.
func internalAt(t *testing.T, rawURL string) tesserapb.InternalClient {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(u.Host, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return tesserapb.NewInternalClient(conn)
}

// hostileCalls makes every internal RPC with hostile values through ic and
// returns, per call, the error it got (nil: accepted) and whether the answer
// carried a routing error instead (the request was not served either).
func hostileCalls(t *testing.T, ic tesserapb.InternalClient, rangeIDs []uint64) map[string]error {
	t.Helper()
	out := map[string]error{}
	call := func(name string, fn func(ctx context.Context) (routed bool, err error)) {
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		defer cancel()
		routed, err := fn(ctx)
		if err == nil && routed {
			err = errRouted
		}
		out[name] = err
	}
	for _, id := range rangeIDs {
		for gen := uint64(0); gen <= 3; gen++ {
			call(fmt.Sprintf("Execute compact MaxInt64 range %d gen %d", id, gen), func(ctx context.Context) (bool, error) {
				resp, err := ic.Execute(ctx, &tesserapb.ExecuteRequest{RangeId: id, Generation: gen, CompactRevision: math.MaxInt64})
				return resp.GetRoutingError() != nil, err
			})
		}
		read, _ := proto.Marshal(&pb.RequestOp{Request: &pb.RequestOp_RequestRange{RequestRange: &pb.RangeRequest{Key: []byte("a"), RangeEnd: []byte{0}}}})
		call(fmt.Sprintf("Execute read at MaxInt64 range %d", id), func(ctx context.Context) (bool, error) {
			resp, err := ic.Execute(ctx, &tesserapb.ExecuteRequest{RangeId: id, Generation: 1, RequestOp: read, ReadRevision: math.MaxInt64})
			return resp.GetRoutingError() != nil, err
		})
		badPut, _ := proto.Marshal(&pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: nil, Value: []byte("x")}}})
		call(fmt.Sprintf("Execute put of an empty key range %d", id), func(ctx context.Context) (bool, error) {
			resp, err := ic.Execute(ctx, &tesserapb.ExecuteRequest{RangeId: id, Generation: 1, RequestOp: badPut})
			return resp.GetRoutingError() != nil, err
		})
		call(fmt.Sprintf("Execute garbage op range %d", id), func(ctx context.Context) (bool, error) {
			resp, err := ic.Execute(ctx, &tesserapb.ExecuteRequest{RangeId: id, Generation: 1, RequestOp: []byte{0xff, 0xff, 0xff}})
			return resp.GetRoutingError() != nil, err
		})
		for _, lk := range []struct {
			name string
			req  *tesserapb.ExecuteRequest
		}{
			{"at MaxInt64", &tesserapb.ExecuteRequest{RangeId: id, Generation: 1, LeaseKeys: 7, ReadRevision: math.MaxInt64}},
			{"without a read revision", &tesserapb.ExecuteRequest{RangeId: id, Generation: 1, LeaseKeys: 7}},
			{"of a negative lease", &tesserapb.ExecuteRequest{RangeId: id, Generation: 1, LeaseKeys: -7, ReadRevision: 1}},
			{"with a request op", &tesserapb.ExecuteRequest{RangeId: id, Generation: 1, LeaseKeys: 7, ReadRevision: 1, RequestOp: read}},
		} {
			call(fmt.Sprintf("Execute lease keys %s range %d", lk.name, id), func(ctx context.Context) (bool, error) {
				resp, err := ic.Execute(ctx, lk.req)
				return resp.GetRoutingError() != nil, err
			})
		}
		call(fmt.Sprintf("Feed to MaxInt64 range %d", id), func(ctx context.Context) (bool, error) {
			return feedCall(ctx, ic, &tesserapb.FeedRequest{RangeId: id, Generation: 1, StartRevision: 1, EndRevision: math.MaxInt64}, nil)
		})
		call(fmt.Sprintf("Feed resolve MaxInt64 range %d", id), func(ctx context.Context) (bool, error) {
			return feedCall(ctx, ic, &tesserapb.FeedRequest{RangeId: id, Generation: 1, StartRevision: 1}, &tesserapb.FeedRequest{ResolveRevision: math.MaxInt64})
		})
		call(fmt.Sprintf("Hash at MaxInt64 range %d", id), func(ctx context.Context) (bool, error) {
			resp, err := ic.Hash(ctx, &tesserapb.HashRequest{RangeId: id, Revision: math.MaxInt64})
			return resp.GetRoutingError() != nil, err
		})
		call(fmt.Sprintf("TransferLeader range %d to node 99", id), func(ctx context.Context) (bool, error) {
			resp, err := ic.TransferLeader(ctx, &tesserapb.TransferLeaderRequest{RangeId: id, TargetNode: 99})
			return resp.GetRoutingError() != nil, err
		})
	}
	for _, n := range []uint32{0, math.MaxUint32} {
		call(fmt.Sprintf("Tso count %d", n), func(ctx context.Context) (bool, error) {
			_, err := ic.Tso(ctx, &tesserapb.TsoRequest{Count: n})
			return false, err
		})
	}
	return out
}

// errRouted marks a request answered with a routing error (not served).
var errRouted = errors.New("answered with a routing error")

// feedCall opens a feed with first, sends then (if set), and reports how
// the feed ended: an error, a routing error, or nil if it served anything
// within a short while (a checkpoint at or beyond an unissued revision).
func feedCall(ctx context.Context, ic tesserapb.InternalClient, first, then *tesserapb.FeedRequest) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	stream, err := ic.Feed(ctx)
	if err != nil {
		return false, err
	}
	// A Send that fails with io.EOF means the server ended the stream: its
	// status is what Recv returns (gRPC's rule), so fall through to Recv.
	if err := stream.Send(first); err != nil && !errors.Is(err, io.EOF) {
		return false, err
	}
	if then != nil {
		if err := stream.Send(then); err != nil && !errors.Is(err, io.EOF) {
			return false, err
		}
	}
	for {
		resp, err := stream.Recv()
		switch {
		case errors.Is(err, io.EOF):
			return false, errors.New("feed ended")
		case status.Code(err) == codes.DeadlineExceeded || ctx.Err() != nil:
			// Still open, never checkpointed beyond what was issued.
			return false, errors.New("feed open, nothing beyond issued revisions")
		case err != nil:
			return false, err
		case resp.GetRoutingError() != nil:
			return true, nil
		case resp.GetResolvedRevision() >= math.MaxInt64/2:
			return false, nil // it promised a revision the TSO never issued
		}
	}
}

// TestInternalServiceHostile: the internal service is not reachable through
// the client port at all, and on the peer port it refuses hostile values
// (compaction at MaxInt64 for every range id and generation, reads and
// resolves at unissued revisions, invalid ops, absurd TSO counts, transfers
// to a node without a replica). Afterwards every acknowledged key reads with
// its value, history reads at every acknowledged revision work, a watch from
// the first revision sees every event, and a Compact at the current revision
// succeeds (issue #10).
func TestInternalServiceHostile(t *testing.T) {
	c := newCluster(t, clusterConfig{nodes: 3, splitKeys: []string{"b", "m", "t"}})
	cli := c.client()
	ctx := context.Background()
	type ack struct {
		key, val string
		rev      int64
	}
	var acks []ack
	for _, v := range []string{"v1", "v2"} {
		for _, k := range []string{"a1", "c1", "c2", "n1", "u1"} {
			wctx, cancel := context.WithTimeout(ctx, opTimeout)
			resp, err := cli.Put(wctx, k, v)
			cancel()
			if err != nil {
				t.Fatalf("put %s=%s: %v", k, v, err)
			}
			acks = append(acks, ack{k, v, resp.Header.Revision})
		}
	}
	var ids []uint64
	for _, d := range dataRanges(t, c.nodes[0]) {
		ids = append(ids, d.GetRangeId())
	}
	ids = append(ids, 0, 1, 99)

	for _, n := range c.nodes {
		for name, err := range hostileCalls(t, internalAt(t, n.clientURL), ids) {
			if status.Code(err) != codes.Unimplemented {
				t.Errorf("%s: client port of %s: %v, want Unimplemented (no internal service)", name, n.name, err)
			}
		}
		for name, err := range hostileCalls(t, internalAt(t, n.peerURL), ids) {
			if err == nil {
				t.Errorf("%s: peer port of %s accepted it", name, n.name)
			}
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	// Nothing changed: every acknowledged version reads, now and at its
	// revision, through every node.
	for _, n := range c.nodes {
		ncli := n.client()
		for _, a := range acks {
			rctx, cancel := context.WithTimeout(ctx, opTimeout)
			resp, err := ncli.Get(rctx, a.key, clientv3.WithRev(a.rev))
			cancel()
			if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != a.val || resp.Kvs[0].ModRevision != a.rev {
				t.Fatalf("%s: get %s at %d: %v %v, want %s", n.name, a.key, a.rev, resp, err, a.val)
			}
		}
		rctx, cancel := context.WithTimeout(ctx, opTimeout)
		resp, err := ncli.Get(rctx, "c", clientv3.WithPrefix())
		cancel()
		if err != nil || len(resp.Kvs) != 2 || string(resp.Kvs[0].Value) != "v2" || string(resp.Kvs[1].Value) != "v2" {
			t.Fatalf("%s: get c --prefix: %v %v", n.name, resp, err)
		}
	}
	// A watch from the first revision sees every acknowledged write.
	wctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	seen := map[int64]bool{}
	wch := cli.Watch(wctx, "", clientv3.WithFromKey(), clientv3.WithRev(acks[0].rev))
	for len(seen) < len(acks) {
		wr, ok := <-wch
		if !ok || wr.Err() != nil {
			t.Fatalf("watch from %d: closed (%v) after %d of %d events", acks[0].rev, wr.Err(), len(seen), len(acks))
		}
		for _, ev := range wr.Events {
			if ev.Type == mvccpb.PUT {
				seen[ev.Kv.ModRevision] = true
			}
		}
	}
	for _, a := range acks {
		if !seen[a.rev] {
			t.Fatalf("watch missed %s=%s at %d", a.key, a.val, a.rev)
		}
	}
	// Compaction at the current revision works.
	gctx, gcancel := context.WithTimeout(ctx, opTimeout)
	defer gcancel()
	cur, err := cli.Get(gctx, "a1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Compact(gctx, cur.Header.Revision); err != nil {
		t.Fatalf("compact at the current revision %d: %v", cur.Header.Revision, err)
	}
	checkHashes(t, c)
}
