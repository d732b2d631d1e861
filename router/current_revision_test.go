package router

import (
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

func TestWroteSomething(t *testing.T) {
	put := &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte("k")}}}
	del := &pb.RequestOp{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: &pb.DeleteRangeRequest{Key: []byte("k")}}}
	get := &pb.RequestOp{Request: &pb.RequestOp_RequestRange{RequestRange: &pb.RangeRequest{Key: []byte("k")}}}
	putOut := &pb.ResponseOp{Response: &pb.ResponseOp_ResponsePut{ResponsePut: &pb.PutResponse{}}}
	delOut := func(n int64) *pb.ResponseOp {
		return &pb.ResponseOp{Response: &pb.ResponseOp_ResponseDeleteRange{ResponseDeleteRange: &pb.DeleteRangeResponse{Deleted: n}}}
	}
	getOut := &pb.ResponseOp{Response: &pb.ResponseOp_ResponseRange{ResponseRange: &pb.RangeResponse{}}}
	txn := func(success, failure []*pb.RequestOp) *pb.RequestOp {
		return &pb.RequestOp{Request: &pb.RequestOp_RequestTxn{RequestTxn: &pb.TxnRequest{Success: success, Failure: failure}}}
	}
	txnOut := func(ok bool, outs ...*pb.ResponseOp) *pb.ResponseOp {
		return &pb.ResponseOp{Response: &pb.ResponseOp_ResponseTxn{ResponseTxn: &pb.TxnResponse{Succeeded: ok, Responses: outs}}}
	}
	for _, tc := range []struct {
		name string
		op   *pb.RequestOp
		out  *pb.ResponseOp
		want bool
	}{
		{"put", put, putOut, true},
		{"delete of a key", del, delOut(1), true},
		{"delete of nothing", del, delOut(0), false},
		{"txn: success puts", txn([]*pb.RequestOp{get, put}, nil), txnOut(true, getOut, putOut), true},
		{"txn: failure reads", txn([]*pb.RequestOp{put}, []*pb.RequestOp{get}), txnOut(false, getOut), false},
		{"txn: failure deletes nothing", txn([]*pb.RequestOp{put}, []*pb.RequestOp{del}), txnOut(false, delOut(0)), false},
		{"txn: failure deletes", txn(nil, []*pb.RequestOp{get, del}), txnOut(false, getOut, delOut(2)), true},
		{"nested txn that wrote", txn([]*pb.RequestOp{txn(nil, []*pb.RequestOp{put})}, nil), txnOut(true, txnOut(false, putOut)), true},
		{"nested txn that did not", txn([]*pb.RequestOp{txn([]*pb.RequestOp{put}, []*pb.RequestOp{get})}, nil), txnOut(true, txnOut(false, getOut)), false},
	} {
		if got := wroteSomething(tc.op, tc.out); got != tc.want {
			t.Errorf("%s: wroteSomething = %v, want %v", tc.name, got, tc.want)
		}
	}
}
