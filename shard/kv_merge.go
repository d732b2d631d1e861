package shard

// This file lets the router answer a Range that spans several shards with
// exactly etcd's answer for the union: ShardRangeRequest says what to ask
// each shard, MergeRangeResponses combines their answers.
//
// What makes it exact: etcd computes count over the whole span before the
// revision filters; with no sort and no filters it reads only the first
// limit+1 keys (in key order) and, if the sort target is not KEY, sorts just
// those (sort_order NONE with another target means ascending); otherwise it
// reads every key, filters, sorts with an unstable sort, then truncates to
// limit. So:
//
//   - Sorting by KEY (or not at all): each shard can apply the limit itself;
//     the union of the shards' first `limit` keys holds the global first
//     `limit`, and a shard that had more makes the whole answer have more.
//   - sort_order NONE, no filters, limit > 0, another target: each shard
//     returns its first limit+1 keys in key order; the merge takes the first
//     limit+1 of their union and sorts those, as etcd does.
//   - Any other sort by a non-KEY target: each shard returns every filtered
//     key in key order (etcd reads them all too), and the merge sorts their
//     union with etcd's sort on the same input order, so even ties come out
//     as in etcd.

import (
	"bytes"
	"math"
	"sort"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/protobuf/proto"
)

// ShardRangeRequest returns the request for the shard that holds the user
// keys [start, end) (end empty: to the end of the keyspace), or nil if req
// names no key there. Every shard's answer (Range at the same revision) goes
// to MergeRangeResponses with the original req. req is not modified.
func ShardRangeRequest(req *pb.RangeRequest, start, end []byte) *pb.RangeRequest {
	s := spanOf(req.GetKey(), req.GetRangeEnd())
	out := proto.Clone(req).(*pb.RangeRequest)
	if s.single {
		if bytes.Compare(s.start, start) < 0 || (len(end) > 0 && bytes.Compare(s.start, end) >= 0) {
			return nil
		}
	} else {
		lo := s.start
		if bytes.Compare(start, lo) > 0 {
			lo = start
		}
		var hi []byte // nil: unbounded
		switch {
		case s.open:
			hi = end
		case len(end) == 0:
			hi = s.end
		default:
			hi = s.end
			if bytes.Compare(end, hi) < 0 {
				hi = end
			}
		}
		if len(hi) > 0 && bytes.Compare(hi, lo) <= 0 {
			return nil
		}
		out.Key = append([]byte(nil), lo...)
		if len(hi) == 0 {
			out.RangeEnd = []byte{0}
		} else {
			out.RangeEnd = append([]byte(nil), hi...)
		}
	}
	if req.GetCountOnly() {
		return out
	}
	target := req.GetSortTarget()
	switch {
	case sortsFirstKeysOnly(req):
		out.SortTarget = pb.RangeRequest_KEY
		out.Limit = 0
		if req.GetLimit() < math.MaxInt64 {
			out.Limit = req.GetLimit() + 1
		}
	case target == pb.RangeRequest_KEY:
		// The shard sorts and limits as etcd would.
	default:
		out.SortOrder = pb.RangeRequest_NONE
		out.SortTarget = pb.RangeRequest_KEY
		out.Limit = 0
	}
	if target == pb.RangeRequest_VALUE {
		out.KeysOnly = false // the merge sorts by value
	}
	return out
}

// sortsFirstKeysOnly: etcd reads only the first limit+1 keys and sorts
// those (sort_order NONE, no revision filters, limit > 0).
func sortsFirstKeysOnly(req *pb.RangeRequest) bool {
	return req.GetSortOrder() == pb.RangeRequest_NONE && !hasRevisionFilters(req) && req.GetLimit() > 0
}

// MergeRangeResponses combines the shards' answers to the requests made by
// ShardRangeRequest(req, ...) into etcd's answer to req, whatever the order
// of parts (nil parts are skipped). It takes ownership of the parts' KVs. The
// Header is empty: the caller fills it.
func MergeRangeResponses(req *pb.RangeRequest, parts []*pb.RangeResponse) *pb.RangeResponse {
	resp := &pb.RangeResponse{Header: &pb.ResponseHeader{}}
	var kvs []*mvccpb.KeyValue
	partMore := false
	for _, p := range parts {
		if p == nil {
			continue
		}
		resp.Count += p.GetCount()
		kvs = append(kvs, p.GetKvs()...)
		partMore = partMore || p.GetMore()
	}
	if req.GetCountOnly() {
		return resp
	}
	// Shards hold disjoint keys: this is the key order etcd reads in.
	sort.SliceStable(kvs, func(i, j int) bool { return bytes.Compare(kvs[i].Key, kvs[j].Key) < 0 })

	limit := req.GetLimit()
	target := req.GetSortTarget()
	switch {
	case sortsFirstKeysOnly(req):
		if limit < math.MaxInt64 && int64(len(kvs)) > limit+1 {
			kvs = kvs[:limit+1]
		}
		sortKVs(kvs, req.GetSortOrder(), target)
	case target == pb.RangeRequest_KEY:
		sortKVs(kvs, req.GetSortOrder(), target)
		resp.More = limit > 0 && partMore
	default:
		sortKVs(kvs, req.GetSortOrder(), target)
	}
	if limit > 0 && int64(len(kvs)) > limit {
		kvs = kvs[:limit]
		resp.More = true
	}
	stripKeysOnly(req, kvs)
	resp.Kvs = kvs
	return resp
}
