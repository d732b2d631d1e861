package shard

import (
	"bytes"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/tesseradb/tessera/proto/tesserapb"
)

// ContainsKey reports whether key is in the descriptor's span.
func ContainsKey(d *tesserapb.RangeDescriptor, key []byte) bool {
	return bytes.Compare(key, d.GetStartKey()) >= 0 && (len(d.GetEndKey()) == 0 || bytes.Compare(key, d.GetEndKey()) < 0)
}

// ContainsSpan reports whether the etcd span [key, end) is in the
// descriptor's span. end follows etcd: empty is the single key, "\x00" is
// everything from key on.
func ContainsSpan(d *tesserapb.RangeDescriptor, key, end []byte) bool {
	if !ContainsKey(d, key) {
		return false
	}
	switch {
	case len(end) == 0:
		return true
	case len(end) == 1 && end[0] == 0:
		return len(d.GetEndKey()) == 0
	case len(d.GetEndKey()) == 0:
		return true
	}
	return bytes.Compare(end, d.GetEndKey()) <= 0
}

// OpWithinDescriptor reports whether every key an operation reads or writes
// is in the descriptor's span.
func OpWithinDescriptor(d *tesserapb.RangeDescriptor, op *pb.RequestOp) bool {
	switch r := op.GetRequest().(type) {
	case *pb.RequestOp_RequestRange:
		return ContainsSpan(d, r.RequestRange.GetKey(), r.RequestRange.GetRangeEnd())
	case *pb.RequestOp_RequestPut:
		return ContainsKey(d, r.RequestPut.GetKey())
	case *pb.RequestOp_RequestDeleteRange:
		return ContainsSpan(d, r.RequestDeleteRange.GetKey(), r.RequestDeleteRange.GetRangeEnd())
	case *pb.RequestOp_RequestTxn:
		t := r.RequestTxn
		for _, c := range t.GetCompare() {
			if !ContainsSpan(d, c.GetKey(), c.GetRangeEnd()) {
				return false
			}
		}
		for _, ops := range [][]*pb.RequestOp{t.GetSuccess(), t.GetFailure()} {
			for _, o := range ops {
				if !OpWithinDescriptor(d, o) {
					return false
				}
			}
		}
		return true
	}
	return false
}
