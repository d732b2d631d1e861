package integration_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// TestBadInput sends malformed and oversized requests over raw gRPC (so
// that values clientv3 would refuse to build, like unknown enums, reach the
// server): each gets etcd's error, the node keeps serving, and the keyspace
// is exactly as before.
func TestBadInput(t *testing.T) {
	c, cli := newClusterClient(t)
	ctx := context.Background()
	for _, k := range []string{"a/x", "c/x", "e/x", "g/x"} {
		if _, err := cli.Put(ctx, k, "v"); err != nil {
			t.Fatal(err)
		}
	}
	kv := pb.NewKVClient(cli.ActiveConnection())
	snapshot := func() []byte {
		resp, err := kv.Range(ctx, &pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}})
		if err != nil {
			t.Fatalf("read the keyspace: %v", err)
		}
		var b []byte
		for _, e := range resp.Kvs {
			b = fmt.Appendf(b, "%q=%q@%d/%d/%d;", e.Key, e.Value, e.CreateRevision, e.ModRevision, e.Version)
		}
		return b
	}
	before := snapshot()

	nested := &pb.TxnRequest{}
	for i := 0; i < 200; i++ {
		nested = &pb.TxnRequest{Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestTxn{RequestTxn: nested}}}}
	}
	manyOps := &pb.TxnRequest{}
	for i := 0; i < 129; i++ {
		manyOps.Success = append(manyOps.Success, &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: fmt.Appendf(nil, "a/many/%d", i)}}})
	}
	big := bytes.Repeat([]byte("x"), 1536*1024)

	type call func(context.Context) (proto.Message, error)
	for _, tc := range []struct {
		name string
		do   call
		// want is etcd's error; wantCode a bare gRPC code (for limits
		// enforced by gRPC itself, as in etcd).
		want     error
		wantCode codes.Code
		// ok: the request is valid as etcd sees it (answered, not refused);
		// check, if set, verifies the answer.
		ok    bool
		check func(proto.Message) error
	}{
		{name: "put empty key", want: rpctypes.ErrGRPCEmptyKey, do: func(ctx context.Context) (proto.Message, error) {
			return kv.Put(ctx, &pb.PutRequest{Value: []byte("v")})
		}},
		{name: "range empty key", want: rpctypes.ErrGRPCEmptyKey, do: func(ctx context.Context) (proto.Message, error) {
			return kv.Range(ctx, &pb.RangeRequest{})
		}},
		{name: "delete empty key", want: rpctypes.ErrGRPCEmptyKey, do: func(ctx context.Context) (proto.Message, error) {
			return kv.DeleteRange(ctx, &pb.DeleteRangeRequest{})
		}},
		{name: "value over the request limit", want: rpctypes.ErrGRPCRequestTooLarge, do: func(ctx context.Context) (proto.Message, error) {
			return kv.Put(ctx, &pb.PutRequest{Key: []byte("a/big"), Value: big})
		}},
		{name: "request over gRPC's receive limit", wantCode: codes.ResourceExhausted, do: func(ctx context.Context) (proto.Message, error) {
			return kv.Put(ctx, &pb.PutRequest{Key: []byte("a/huge"), Value: bytes.Repeat([]byte("x"), 3<<20)})
		}},
		{name: "too many txn ops", want: rpctypes.ErrGRPCTooManyOps, do: func(ctx context.Context) (proto.Message, error) {
			return kv.Txn(ctx, manyOps)
		}},
		{name: "deeply nested txns", want: rpctypes.ErrGRPCTooManyOps, do: func(ctx context.Context) (proto.Message, error) {
			return kv.Txn(ctx, nested)
		}},
		{name: "duplicate key in txn", want: rpctypes.ErrGRPCDuplicateKey, do: func(ctx context.Context) (proto.Message, error) {
			put := &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte("a/dup")}}}
			return kv.Txn(ctx, &pb.TxnRequest{Success: []*pb.RequestOp{put, put}})
		}},
		{name: "unknown sort order", want: rpctypes.ErrGRPCInvalidSortOption, do: func(ctx context.Context) (proto.Message, error) {
			return kv.Range(ctx, &pb.RangeRequest{Key: []byte("a"), SortOrder: 99})
		}},
		{name: "unknown sort target", want: rpctypes.ErrGRPCInvalidSortOption, do: func(ctx context.Context) (proto.Message, error) {
			return kv.Range(ctx, &pb.RangeRequest{Key: []byte("a"), SortOrder: pb.RangeRequest_ASCEND, SortTarget: 77})
		}},
		{name: "future revision", want: rpctypes.ErrGRPCFutureRev, do: func(ctx context.Context) (proto.Message, error) {
			return kv.Range(ctx, &pb.RangeRequest{Key: []byte("a"), Revision: 1 << 62})
		}},
		{name: "compact in the future", want: rpctypes.ErrGRPCFutureRev, do: func(ctx context.Context) (proto.Message, error) {
			return kv.Compact(ctx, &pb.CompactionRequest{Revision: 1 << 62})
		}},
		{name: "range_end below key", ok: true, do: func(ctx context.Context) (proto.Message, error) {
			return kv.Range(ctx, &pb.RangeRequest{Key: []byte("g"), RangeEnd: []byte("a")})
		}},
		{name: "delete with range_end below key", ok: true, do: func(ctx context.Context) (proto.Message, error) {
			return kv.DeleteRange(ctx, &pb.DeleteRangeRequest{Key: []byte("a/x\x00"), RangeEnd: []byte("a/")})
		}},
		{name: "negative limit and revision", ok: true, do: func(ctx context.Context) (proto.Message, error) {
			return kv.Range(ctx, &pb.RangeRequest{Key: []byte("a"), RangeEnd: []byte("b"), Limit: -5, Revision: -7})
		}},
		{name: "count_only over the whole keyspace", ok: true, do: func(ctx context.Context) (proto.Message, error) {
			return kv.Range(ctx, &pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}, CountOnly: true})
		}},
		{name: "cross-range delete", wantCode: codes.FailedPrecondition, do: func(ctx context.Context) (proto.Message, error) {
			return kv.DeleteRange(ctx, &pb.DeleteRangeRequest{Key: []byte{0}, RangeEnd: []byte{0}})
		}},
		// etcd 3.4 answers these three with succeeded=true (checked against
		// /usr/bin/etcd): an unknown target or result compares as true.
		{name: "txn compare with unknown target and result", ok: true, check: txnSucceeded, do: func(ctx context.Context) (proto.Message, error) {
			return kv.Txn(ctx, &pb.TxnRequest{Compare: []*pb.Compare{{Key: []byte("a/x"), Target: 42, Result: 9}}})
		}},
		{name: "txn compare with unknown result", ok: true, check: txnSucceeded, do: func(ctx context.Context) (proto.Message, error) {
			return kv.Txn(ctx, &pb.TxnRequest{Compare: []*pb.Compare{{Key: []byte("a/x"), Target: pb.Compare_VALUE, Result: 9}}})
		}},
		{name: "txn compare with unknown target on a missing key", ok: true, check: txnSucceeded, do: func(ctx context.Context) (proto.Message, error) {
			return kv.Txn(ctx, &pb.TxnRequest{Compare: []*pb.Compare{{Key: []byte("a/nokey"), Target: 42, Result: 9}}})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			resp, err := tc.do(ctx)
			switch {
			case tc.ok:
				if err != nil {
					t.Fatalf("etcd answers this request; got %v", err)
				}
				if tc.check != nil {
					if err := tc.check(resp); err != nil {
						t.Fatal(err)
					}
				}
			case tc.want != nil:
				if err == nil || rpctypes.ErrorDesc(err) != rpctypes.ErrorDesc(tc.want) {
					t.Fatalf("got %v (response %v), want %v", err, resp, tc.want)
				}
			default:
				if status.Code(err) != tc.wantCode {
					t.Fatalf("got %v, want code %v", err, tc.wantCode)
				}
			}
			if got := snapshot(); !bytes.Equal(got, before) {
				t.Fatalf("the keyspace changed:\nbefore %s\nafter  %s", before, got)
			}
		})
	}
	// The node still serves reads and writes on every range.
	for _, k := range []string{"a/after", "c/after", "e/after", "g/after"} {
		if _, err := cli.Put(ctx, k, "ok"); err != nil {
			t.Fatalf("put after bad input: %v", err)
		}
		g, err := c.NodeClient(t, 2).Get(ctx, k)
		if err != nil || len(g.Kvs) != 1 || !strings.HasSuffix(string(g.Kvs[0].Key), "after") {
			t.Fatalf("get after bad input: %v %v", g, err)
		}
	}
}

func txnSucceeded(m proto.Message) error {
	if r, ok := m.(*pb.TxnResponse); !ok || !r.Succeeded {
		return fmt.Errorf("txn answer %v, want succeeded (as etcd)", m)
	}
	return nil
}
