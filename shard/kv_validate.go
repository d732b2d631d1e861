package shard

// This file validates etcd KV requests exactly as etcd's gRPC layer does
// (server/etcdserver/api/v3rpc/key.go: checkRangeRequest, checkPutRequest,
// checkDeleteRequest, checkTxnRequest, checkIntervals), followed by etcd's
// request size limit (which etcd applies to the Raft proposal of a write).
// The errors are etcd's rpctypes gRPC errors, returned unwrapped.
//
// What etcd does not reject, these functions accept too: a negative limit
// (no limit), negative or inverted revision filters, range_end <= key (an
// empty range), unknown compare targets or results (a compare on an unknown
// target compares equal; an unknown result is true), a Compare whose
// target_union does not match its target (compares against 0 / nil), and
// range_end "\x00" on a DeleteRange inside a Txn is taken literally by the
// overlap check (so it never conflicts with a Put, see txnExec.put).

import (
	"fmt"
	"math"
	"sort"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/protobuf/proto"

	"github.com/tesseradb/tessera/engine"
)

// Limits are the configurable request limits, etcd's --max-txn-ops and
// --max-request-bytes.
type Limits struct {
	// MaxTxnOps bounds the compares and the ops of each branch of a Txn;
	// a nested Txn gets what its parent leaves (MaxTxnOps minus the largest
	// of the parent's counts), as in etcd. Default 128, etcd's.
	MaxTxnOps int
	// MaxRequestBytes bounds the size of a write request (Put, DeleteRange,
	// a Txn that is not read-only). Default 1.5 MiB, etcd's. The gRPC server
	// should accept messages of MaxRequestBytes plus 512 KiB (etcd's
	// grpcOverheadBytes) so that this check, not gRPC, answers for writes
	// slightly over the limit.
	MaxRequestBytes int
}

// DefaultLimits returns etcd's defaults.
func DefaultLimits() Limits {
	return Limits{
		MaxTxnOps:       128,            // etcd's --max-txn-ops default
		MaxRequestBytes: 3 * 1024 * 512, // 1.5 MiB, etcd's --max-request-bytes default
	}
}

// Validate checks the limits.
func (l Limits) Validate() error {
	if l.MaxTxnOps <= 0 {
		return fmt.Errorf("shard: Limits.MaxTxnOps %d must be positive", l.MaxTxnOps)
	}
	if l.MaxRequestBytes <= 0 {
		return fmt.Errorf("shard: Limits.MaxRequestBytes %d must be positive", l.MaxRequestBytes)
	}
	return nil
}

// ValidateRange is etcd's checkRangeRequest: a key is required and the sort
// order and target must be known values (ErrGRPCInvalidSortOption, etcd
// v3.5+). etcd applies no size limit to reads beyond gRPC's.
func ValidateRange(req *pb.RangeRequest) error {
	return checkRangeRequest(req)
}

// ValidatePut is etcd's checkPutRequest followed by the size limit.
func ValidatePut(req *pb.PutRequest, l Limits) error {
	if err := checkPutRequest(req); err != nil {
		return err
	}
	return CheckRequestSize(req, l)
}

// ValidateDeleteRange is etcd's checkDeleteRequest followed by the size
// limit.
func ValidateDeleteRange(req *pb.DeleteRangeRequest, l Limits) error {
	if err := checkDeleteRequest(req); err != nil {
		return err
	}
	return CheckRequestSize(req, l)
}

// ValidateTxn is etcd's checkTxnRequest (op counts, then compare keys, then
// every op of both branches, recursively), then checkIntervals on each branch
// (ErrGRPCDuplicateKey for two puts of one key, or a put inside a delete's
// range, that could both run), then the size limit unless the txn is
// read-only by etcd's definition (only Range ops at its top level; etcd does
// not propose those through Raft, so never checks their size).
func ValidateTxn(req *pb.TxnRequest, l Limits) error {
	if err := checkTxnRequest(req, l.MaxTxnOps); err != nil {
		return err
	}
	if err := checkTxnIntervals(req); err != nil {
		return err
	}
	if isTxnReadonlyTopLevel(req) {
		return nil
	}
	return CheckRequestSize(req, l)
}

// validateTxnStructure is ValidateTxn without the configurable limits: what
// the apply path re-checks so that no request can write an inconsistent
// state whatever the front door let through.
func validateTxnStructure(req *pb.TxnRequest) error {
	if err := checkTxnRequest(req, math.MaxInt); err != nil {
		return err
	}
	return checkTxnIntervals(req)
}

// raftRequestOverhead is what etcd's InternalRaftRequest adds to an op
// besides the op field's own framing: its RequestHeader field (2-byte tag,
// length, and the request ID: tag plus a varint of up to 10 bytes). etcd
// compares the marshaled InternalRaftRequest with --max-request-bytes.
const raftRequestOverhead = 2 + 1 + 1 + 10

// CheckRequestSize returns ErrGRPCRequestTooLarge if the write request m,
// wrapped as etcd wraps it for Raft, is larger than l.MaxRequestBytes. (The
// ID's varint is counted at its largest, so the limit is at most a few bytes
// stricter than a given etcd member's.)
func CheckRequestSize(m proto.Message, l Limits) error {
	n := proto.Size(m)
	if n+1+varintLen(n)+raftRequestOverhead > l.MaxRequestBytes {
		return rpctypes.ErrGRPCRequestTooLarge
	}
	return nil
}

func varintLen(n int) int {
	l := 1
	for n >= 0x80 {
		n >>= 7
		l++
	}
	return l
}

// CheckReadRevision checks the revision a Range asks for (reqRev, 0 or
// negative for the current one) against the current revision and the
// compaction revision (0: never compacted), as etcd's mvcc rangeKeys does:
// above the current revision is ErrGRPCFutureRev, below the compaction
// revision ErrGRPCCompacted (reading at exactly the compaction revision
// works). Range ops inside a Txn follow etcd's slightly different checkRange
// (TxnEnv.CompactRev).
func CheckReadRevision(reqRev, currentRev, compactRev engine.Revision) error {
	switch {
	case reqRev > currentRev:
		return rpctypes.ErrGRPCFutureRev
	case reqRev <= 0:
		return nil
	case reqRev < compactRev:
		return rpctypes.ErrGRPCCompacted
	}
	return nil
}

// CheckCompactRevision checks a compaction request as etcd's mvcc Compact
// does: at or below the current compaction revision (0: never compacted,
// which etcd calls -1) is ErrGRPCCompacted, above the current revision
// ErrGRPCFutureRev.
func CheckCompactRevision(rev, currentRev, compactRev engine.Revision) error {
	first := compactRev
	if first <= 0 {
		first = -1
	}
	switch {
	case rev <= first:
		return rpctypes.ErrGRPCCompacted
	case rev > currentRev:
		return rpctypes.ErrGRPCFutureRev
	}
	return nil
}

func checkRangeRequest(r *pb.RangeRequest) error {
	if len(r.GetKey()) == 0 {
		return rpctypes.ErrGRPCEmptyKey
	}
	if _, ok := pb.RangeRequest_SortOrder_name[int32(r.GetSortOrder())]; !ok {
		return rpctypes.ErrGRPCInvalidSortOption
	}
	if _, ok := pb.RangeRequest_SortTarget_name[int32(r.GetSortTarget())]; !ok {
		return rpctypes.ErrGRPCInvalidSortOption
	}
	return nil
}

func checkPutRequest(r *pb.PutRequest) error {
	if len(r.GetKey()) == 0 {
		return rpctypes.ErrGRPCEmptyKey
	}
	if r.GetIgnoreValue() && len(r.GetValue()) != 0 {
		return rpctypes.ErrGRPCValueProvided
	}
	if r.GetIgnoreLease() && r.GetLease() != 0 {
		return rpctypes.ErrGRPCLeaseProvided
	}
	return nil
}

func checkDeleteRequest(r *pb.DeleteRangeRequest) error {
	if len(r.GetKey()) == 0 {
		return rpctypes.ErrGRPCEmptyKey
	}
	return nil
}

// checkTxnRequest is etcd's: maxTxnOps bounds the compares and each branch;
// nested txns get maxTxnOps minus this level's largest count.
func checkTxnRequest(r *pb.TxnRequest, maxTxnOps int) error {
	opc := max(len(r.GetCompare()), len(r.GetSuccess()), len(r.GetFailure()))
	if opc > maxTxnOps {
		return rpctypes.ErrGRPCTooManyOps
	}
	for _, c := range r.GetCompare() {
		if len(c.GetKey()) == 0 {
			return rpctypes.ErrGRPCEmptyKey
		}
	}
	for _, ops := range [2][]*pb.RequestOp{r.GetSuccess(), r.GetFailure()} {
		for _, u := range ops {
			if err := checkRequestOp(u, maxTxnOps-opc); err != nil {
				return err
			}
		}
	}
	return nil
}

func checkRequestOp(u *pb.RequestOp, maxTxnOps int) error {
	switch uv := u.GetRequest().(type) {
	case *pb.RequestOp_RequestRange:
		return checkRangeRequest(uv.RequestRange)
	case *pb.RequestOp_RequestPut:
		return checkPutRequest(uv.RequestPut)
	case *pb.RequestOp_RequestDeleteRange:
		return checkDeleteRequest(uv.RequestDeleteRange)
	case *pb.RequestOp_RequestTxn:
		return checkTxnRequest(uv.RequestTxn, maxTxnOps)
	default:
		// An empty op: etcd answers "key not found".
		return rpctypes.ErrGRPCKeyNotFound
	}
}

func isTxnReadonlyTopLevel(r *pb.TxnRequest) bool {
	for _, ops := range [2][]*pb.RequestOp{r.GetSuccess(), r.GetFailure()} {
		for _, u := range ops {
			if u.GetRequestRange() == nil {
				return false
			}
		}
	}
	return true
}

func checkTxnIntervals(r *pb.TxnRequest) error {
	if _, _, err := checkIntervals(r.GetSuccess()); err != nil {
		return err
	}
	_, _, err := checkIntervals(r.GetFailure())
	return err
}

// checkIntervals is etcd's: it returns the keys put and the spans deleted by
// the ops of one branch (nested txns included, both of their branches), and
// ErrGRPCDuplicateKey if two puts of one key, or a put and a delete covering
// its key, could run together. As in etcd, a nested txn's puts are checked
// against this branch's deletes and those of the nested txns before it (not
// after it), and this branch's puts against all of them.
func checkIntervals(reqs []*pb.RequestOp) (map[string]struct{}, []interval, error) {
	var own []interval
	for _, req := range reqs {
		tv, ok := req.GetRequest().(*pb.RequestOp_RequestDeleteRange)
		if !ok || tv.RequestDeleteRange == nil {
			continue
		}
		own = append(own, deleteInterval(tv.RequestDeleteRange))
	}
	dels := &intervalSet{}
	dels.add(normalizeIntervals(own))

	puts := make(map[string]struct{})
	for _, req := range reqs {
		tv, ok := req.GetRequest().(*pb.RequestOp_RequestTxn)
		if !ok {
			continue
		}
		putsThen, delsThen, err := checkIntervals(tv.RequestTxn.GetSuccess())
		if err != nil {
			return nil, nil, err
		}
		putsElse, delsElse, err := checkIntervals(tv.RequestTxn.GetFailure())
		if err != nil {
			return nil, nil, err
		}
		for k := range putsThen {
			if _, ok := puts[k]; ok || dels.contains(k) {
				return nil, nil, rpctypes.ErrGRPCDuplicateKey
			}
			puts[k] = struct{}{}
		}
		for k := range putsElse {
			if _, ok := puts[k]; ok {
				// A key of putsThen is fine: then and else exclude each
				// other.
				if _, safe := putsThen[k]; !safe {
					return nil, nil, rpctypes.ErrGRPCDuplicateKey
				}
			}
			if dels.contains(k) {
				return nil, nil, rpctypes.ErrGRPCDuplicateKey
			}
			puts[k] = struct{}{}
		}
		dels.add(delsThen)
		dels.add(delsElse)
	}

	for _, req := range reqs {
		tv, ok := req.GetRequest().(*pb.RequestOp_RequestPut)
		if !ok || tv.RequestPut == nil {
			continue
		}
		k := string(tv.RequestPut.GetKey())
		if _, ok := puts[k]; ok || dels.contains(k) {
			return nil, nil, rpctypes.ErrGRPCDuplicateKey
		}
		puts[k] = struct{}{}
	}
	return puts, dels.all(), nil
}

// interval is a half-open span [begin, end) of keys.
type interval struct{ begin, end string }

// deleteInterval is the span etcd's checkIntervals gives a delete: the point
// [key, key+"\x00") without range_end, else [key, range_end) taken literally
// (so range_end "\x00" makes an empty span).
func deleteInterval(d *pb.DeleteRangeRequest) interval {
	k := string(d.GetKey())
	if len(d.GetRangeEnd()) == 0 {
		return interval{k, k + "\x00"}
	}
	return interval{k, string(d.GetRangeEnd())}
}

// normalizeIntervals sorts ivs, drops empty ones and merges overlapping or
// adjacent ones. It reuses ivs.
func normalizeIntervals(ivs []interval) []interval {
	sort.Slice(ivs, func(i, j int) bool { return ivs[i].begin < ivs[j].begin })
	out := ivs[:0]
	for _, iv := range ivs {
		if iv.end <= iv.begin {
			continue
		}
		if n := len(out); n > 0 && iv.begin <= out[n-1].end {
			out[n-1].end = max(out[n-1].end, iv.end)
			continue
		}
		out = append(out, iv)
	}
	return out
}

// mergeIntervals merges two normalized lists into a new normalized list.
func mergeIntervals(a, b []interval) []interval {
	out := make([]interval, 0, len(a)+len(b))
	push := func(iv interval) {
		if n := len(out); n > 0 && iv.begin <= out[n-1].end {
			out[n-1].end = max(out[n-1].end, iv.end)
			return
		}
		out = append(out, iv)
	}
	for len(a) > 0 || len(b) > 0 {
		if len(b) == 0 || (len(a) > 0 && a[0].begin <= b[0].begin) {
			push(a[0])
			a = a[1:]
		} else {
			push(b[0])
			b = b[1:]
		}
	}
	return out
}

// intervalSet is a union of spans that answers "does a span contain k" in
// O(log² n) and absorbs another union in amortized O(n log n) overall: a list
// of normalized levels of decreasing size, merged when a level is not smaller
// than the one before it (the logarithmic method). etcd uses an interval tree
// for the same reason: a quadratic check would let one request stall the
// server.
type intervalSet struct{ levels [][]interval }

// add absorbs a normalized list.
func (s *intervalSet) add(ivs []interval) {
	if len(ivs) == 0 {
		return
	}
	s.levels = append(s.levels, ivs)
	for n := len(s.levels); n >= 2 && len(s.levels[n-1]) >= len(s.levels[n-2]); n = len(s.levels) {
		merged := mergeIntervals(s.levels[n-2], s.levels[n-1])
		s.levels = append(s.levels[:n-2], merged)
	}
}

func (s *intervalSet) contains(k string) bool {
	for _, lv := range s.levels {
		i := sort.Search(len(lv), func(i int) bool { return lv[i].begin > k })
		if i > 0 && k < lv[i-1].end {
			return true
		}
	}
	return false
}

// all returns the union as one normalized list.
func (s *intervalSet) all() []interval {
	var out []interval
	for _, lv := range s.levels {
		out = mergeIntervals(out, lv)
	}
	return out
}
