package shard

// This file applies etcd's KV operations (Put, DeleteRange, Txn, Range) to a
// shard's MVCC data with exactly the semantics of etcd v3.5's server
// (server/etcdserver/apply.go and server/storage/mvcc; v3.6 moved the code to
// server/etcdserver/txn and changed only the order of a txn's checks, see
// txnExec.check), on Tessera's revisions. tests/differential compares it
// with a real etcd.
//
// # Revisions
//
// etcd's revisions count writes; Tessera's are instants from the TSO (see
// DESIGN.md). The apply code passes the revision rev that the shard leader
// assigned to the entry; every write of the op (all ops of a Txn) is stored at
// rev. Where etcd answers with "the current revision before this txn" (its
// beginRev), this file answers rev-1: the shard applies in revision order, so
// no write of this shard lies in [its last write, rev) and the state at rev-1
// is exactly the state before the op.
//
// # Response headers
//
// Top-level responses carry a non-nil, empty Header: the caller fills
// cluster_id, member_id, raft_term and revision. etcd's rule for the revision,
// in Tessera's terms:
//
//   - Put: rev.
//   - DeleteRange: rev if Deleted > 0, else the current revision (rev-1, or the
//     revision of a read at the same point).
//   - Txn: rev if TxnChanged(resp), else the current revision.
//   - Range and read-only Txn (EvalReadOnlyTxn at read revision R): R, also for
//     historical reads (etcd answers with the current revision).
//
// Per-op responses inside a Txn are complete, revision included, because only
// the execution knows it: as in etcd, a Range, Put or DeleteRange inside a
// Txn answers rev once an earlier op of the Txn (or the op itself) wrote
// something, and the pre-txn revision (rev-1; R in EvalReadOnlyTxn) before
// that. A nested Txn's own header is empty with revision 0, as in etcd, which
// never fills it. Only the revision is set in inner headers; etcd leaves their
// cluster_id, member_id and raft_term zero as well.
//
// # Errors
//
// Errors that etcd returns to clients are returned as etcd's rpctypes gRPC
// errors, unwrapped, so the router can pass them through (rpctypes.Error and
// == both work). Any other error comes from the engine and is wrapped with
// context; after such an error the batch may hold part of the op's writes and
// must be discarded. An rpctypes error never leaves a write in the batch.

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"sort"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/tesseradb/tessera/engine"
)

// ErrTxnNotReadOnly is returned by EvalReadOnlyTxn for a txn that has a Put
// or a DeleteRange in some branch.
var ErrTxnNotReadOnly = errors.New("shard: txn is not read-only")

// TxnEnv is what a Txn needs from the shard besides its data.
type TxnEnv struct {
	// CompactRev is the shard's compaction revision, 0 if it never compacted.
	// A Range op on the executed path that reads below it fails the whole Txn
	// with ErrGRPCCompacted, as in etcd.
	CompactRev engine.Revision
	// LeaseExists reports whether a lease exists. A Put on the executed path
	// that names a lease for which it returns false fails the whole Txn with
	// ErrGRPCLeaseNotFound (etcd checks leases of the executed path only, in
	// op order, after the put's ignore_value/ignore_lease check). Nil skips
	// the check: the caller then checks leases itself.
	LeaseExists func(lease int64) bool
}

// ApplyPut writes req at rev into b and returns etcd's PutResponse (Header
// empty: the caller fills it with rev). Lease existence is the caller's to
// check, before calling (etcd checks it before ignore_value/ignore_lease).
// With ignore_value or ignore_lease and no live key it returns
// rpctypes.ErrGRPCKeyNotFound and writes nothing.
func ApplyPut(b *engine.Batch, req *pb.PutRequest, rev engine.Revision) (*pb.PutResponse, error) {
	if err := checkRevision(rev); err != nil {
		return nil, err
	}
	if err := checkPutRequest(req); err != nil {
		return nil, err
	}
	resp, err := putKey(b, b, req, rev, 0)
	if err != nil {
		return nil, err
	}
	resp.Header = &pb.ResponseHeader{}
	return resp, nil
}

// ApplyDeleteRange deletes at rev the live keys that req names (range_end:
// empty for the single key, "\x00" for every key >= key, otherwise [key,
// range_end)) and returns etcd's DeleteRangeResponse (Header empty).
func ApplyDeleteRange(b *engine.Batch, req *pb.DeleteRangeRequest, rev engine.Revision) (*pb.DeleteRangeResponse, error) {
	if err := checkRevision(rev); err != nil {
		return nil, err
	}
	if err := checkDeleteRequest(req); err != nil {
		return nil, err
	}
	resp, err := deleteKeys(b, b, req, rev)
	if err != nil {
		return nil, err
	}
	resp.Header = &pb.ResponseHeader{}
	return resp, nil
}

// ApplyTxn is ApplyTxnEnv without compaction or lease checks (see TxnEnv).
func ApplyTxn(b *engine.Batch, req *pb.TxnRequest, rev engine.Revision) (*pb.TxnResponse, error) {
	return ApplyTxnEnv(b, req, rev, TxnEnv{})
}

// ApplyTxnEnv applies a Txn at rev as etcd does: it validates the request's
// structure (as ValidateTxn, without the configurable limits), evaluates the
// compares of the whole executed path (nested txns included) on the state
// before the txn, checks the executed ops (ignore_value/ignore_lease and
// leases of the puts, then the revisions of the ranges), and only then
// executes the ops in order, each seeing the writes of the earlier ones;
// every write is at rev. Any error before
// execution leaves b untouched. The top-level Header is empty (see the file
// comment); use TxnChanged to choose its revision.
func ApplyTxnEnv(b *engine.Batch, req *pb.TxnRequest, rev engine.Revision, env TxnEnv) (*pb.TxnResponse, error) {
	if err := checkRevision(rev); err != nil {
		return nil, err
	}
	if err := validateTxnStructure(req); err != nil {
		return nil, err
	}
	x := &txnExec{r: b, w: b, rev: rev, before: rev - 1, env: env}
	return x.run(req)
}

// IsReadOnlyTxn reports whether no branch of req, at any depth, holds a Put or
// a DeleteRange, so that it can be served by EvalReadOnlyTxn without going
// through Raft. (etcd's own test only looks at the top level and sends any
// txn with a nested txn through Raft; the answer is the same.)
func IsReadOnlyTxn(req *pb.TxnRequest) bool {
	for _, ops := range [2][]*pb.RequestOp{req.GetSuccess(), req.GetFailure()} {
		for _, op := range ops {
			switch tv := op.GetRequest().(type) {
			case *pb.RequestOp_RequestRange:
			case *pb.RequestOp_RequestTxn:
				if !IsReadOnlyTxn(tv.RequestTxn) {
					return false
				}
			default:
				return false
			}
		}
	}
	return true
}

// EvalReadOnlyTxn is EvalReadOnlyTxnEnv without the compaction check.
func EvalReadOnlyTxn(r engine.Reader, req *pb.TxnRequest, rev engine.Revision) (*pb.TxnResponse, error) {
	return EvalReadOnlyTxnEnv(r, req, rev, TxnEnv{})
}

// EvalReadOnlyTxnEnv evaluates a read-only Txn (IsReadOnlyTxn) on r at the
// read revision rev, which is also the current revision for its Range ops
// (a Range asking for a later revision gets ErrGRPCFutureRev) and the
// revision of their headers. The top-level Header is empty; the caller fills
// it with rev.
func EvalReadOnlyTxnEnv(r engine.Reader, req *pb.TxnRequest, rev engine.Revision, env TxnEnv) (*pb.TxnResponse, error) {
	if err := checkRevision(rev); err != nil {
		return nil, err
	}
	if err := validateTxnStructure(req); err != nil {
		return nil, err
	}
	if !IsReadOnlyTxn(req) {
		return nil, ErrTxnNotReadOnly
	}
	x := &txnExec{r: r, rev: rev, before: rev, env: env}
	return x.run(req)
}

// TxnChanged reports whether an applied Txn wrote anything: a Put, or a
// DeleteRange that deleted a key, on its executed path. etcd answers a Txn
// that wrote nothing with the current revision instead of a new one.
func TxnChanged(resp *pb.TxnResponse) bool {
	for _, op := range resp.GetResponses() {
		switch tv := op.GetResponse().(type) {
		case *pb.ResponseOp_ResponsePut:
			return true
		case *pb.ResponseOp_ResponseDeleteRange:
			if tv.ResponseDeleteRange.GetDeleted() > 0 {
				return true
			}
		case *pb.ResponseOp_ResponseTxn:
			if TxnChanged(tv.ResponseTxn) {
				return true
			}
		}
	}
	return false
}

// Range answers req as etcd's Range does, on r at the current revision rev:
// it reads at req.Revision when that is positive (ErrGRPCFutureRev if above
// rev) and at rev otherwise. The compaction check is the caller's
// (CheckReadRevision). Header is empty; the caller fills it with rev.
func Range(r engine.Reader, req *pb.RangeRequest, rev engine.Revision) (*pb.RangeResponse, error) {
	if err := checkRevision(rev); err != nil {
		return nil, err
	}
	if err := checkRangeRequest(req); err != nil {
		return nil, err
	}
	return executeRange(r, req, rev, 0)
}

// RangeKeys returns, in key order, the live keys of [key, end) at rev (end as
// in etcd: empty for the single key, "\x00" for every key >= key) up to limit
// of them (limit <= 0: all), and count, the number of live keys in the whole
// span. With keysOnly the values are left out. It is etcd's mvcc rangeKeys:
// counting the rest of the span reads keys only.
func RangeKeys(r engine.Reader, key, end []byte, rev engine.Revision, limit int64, keysOnly bool) (kvs []*mvccpb.KeyValue, count int64, err error) {
	return rangeKeys(r, spanOf(key, end), rev, limit, keysOnly)
}

// checkRevision rejects revisions the engine cannot store.
func checkRevision(rev engine.Revision) error {
	if rev <= 0 {
		return fmt.Errorf("shard: invalid revision %d", rev)
	}
	return nil
}

// keySpan is the set of user keys named by an etcd (key, range_end) pair.
type keySpan struct {
	start []byte
	end   []byte // exclusive; nil with open: no bound
	// single: only start (range_end empty).
	single bool
	// open: every key >= start (range_end "\x00").
	open bool
}

func spanOf(key, rangeEnd []byte) keySpan {
	switch {
	case len(rangeEnd) == 0:
		return keySpan{start: key, single: true}
	case len(rangeEnd) == 1 && rangeEnd[0] == 0:
		return keySpan{start: key, open: true}
	default:
		return keySpan{start: key, end: rangeEnd}
	}
}

// empty reports whether the span holds no key at all ([a, b) with b <= a).
func (s keySpan) empty() bool {
	return !s.single && !s.open && bytes.Compare(s.end, s.start) <= 0
}

// after returns the part of the span after key k (k in the span).
func (s keySpan) after(k []byte) keySpan {
	n := s
	n.single = false
	n.start = append(append(make([]byte, 0, len(k)+1), k...), 0)
	if s.single {
		n.end = n.start // empty
	}
	return n
}

// scanSpan visits the live keys of s at rev in key order until fn returns
// false.
func scanSpan(r engine.Reader, s keySpan, rev engine.Revision, keysOnly bool, fn func(engine.KeyValue) bool) error {
	switch {
	case s.single:
		kv, ok, err := engine.MVCCGet(r, s.start, rev)
		if err != nil {
			return fmt.Errorf("shard: get %q@%d: %w", s.start, rev, err)
		}
		if ok {
			if keysOnly {
				kv.Data = nil
			}
			fn(kv)
		}
		return nil
	case s.empty():
		return nil
	default:
		if err := engine.MVCCScan(r, s.start, s.end, rev, engine.ScanOptions{KeysOnly: keysOnly}, fn); err != nil {
			return fmt.Errorf("shard: scan [%q, %q)@%d: %w", s.start, s.end, rev, err)
		}
		return nil
	}
}

// countSpan counts the live keys of s at rev.
func countSpan(r engine.Reader, s keySpan, rev engine.Revision) (int64, error) {
	if s.single || s.empty() {
		var n int64
		err := scanSpan(r, s, rev, true, func(engine.KeyValue) bool { n++; return true })
		return n, err
	}
	n, err := engine.MVCCCount(r, s.start, s.end, rev)
	if err != nil {
		return 0, fmt.Errorf("shard: count [%q, %q)@%d: %w", s.start, s.end, rev, err)
	}
	return n, nil
}

func toKeyValue(kv engine.KeyValue) *mvccpb.KeyValue {
	return &mvccpb.KeyValue{
		Key:            kv.Key,
		CreateRevision: int64(kv.CreateRev),
		ModRevision:    int64(kv.ModRev),
		Version:        kv.Version,
		Value:          kv.Data,
		Lease:          kv.Lease,
	}
}

func rangeKeys(r engine.Reader, s keySpan, rev engine.Revision, limit int64, keysOnly bool) ([]*mvccpb.KeyValue, int64, error) {
	var kvs []*mvccpb.KeyValue
	full := false
	err := scanSpan(r, s, rev, keysOnly, func(kv engine.KeyValue) bool {
		kvs = append(kvs, toKeyValue(kv))
		if limit > 0 && int64(len(kvs)) >= limit {
			full = true
			return false
		}
		return true
	})
	if err != nil {
		return nil, 0, err
	}
	count := int64(len(kvs))
	if full {
		rest, err := countSpan(r, s.after(kvs[len(kvs)-1].Key), rev)
		if err != nil {
			return nil, 0, err
		}
		count += rest
	}
	return kvs, count, nil
}

// executeRange is etcd's executeRange: cur is the current revision, hdrRev
// the revision of the response header (0 for a top-level Range).
func executeRange(r engine.Reader, req *pb.RangeRequest, cur, hdrRev engine.Revision) (*pb.RangeResponse, error) {
	readRev := cur
	if req.GetRevision() > int64(cur) {
		return nil, rpctypes.ErrGRPCFutureRev
	}
	if req.GetRevision() > 0 {
		readRev = engine.Revision(req.GetRevision())
	}
	resp := &pb.RangeResponse{Header: &pb.ResponseHeader{Revision: int64(hdrRev)}}
	s := spanOf(req.GetKey(), req.GetRangeEnd())
	if req.GetCountOnly() {
		n, err := countSpan(r, s, readRev)
		if err != nil {
			return nil, err
		}
		resp.Count = n
		return resp, nil
	}

	limit := req.GetLimit()
	if req.GetSortOrder() != pb.RangeRequest_NONE || hasRevisionFilters(req) {
		// Fetch everything; sort and truncate afterwards.
		limit = 0
	}
	if limit > 0 {
		// One extra for the 'more' flag (overflows to "all" for MaxInt64,
		// as in etcd).
		limit++
	}
	// keys_only drops the values after sorting, so a sort by value needs
	// them.
	keysOnly := req.GetKeysOnly() && req.GetSortTarget() != pb.RangeRequest_VALUE
	kvs, count, err := rangeKeys(r, s, readRev, limit, keysOnly)
	if err != nil {
		return nil, err
	}
	kvs = filterKVs(req, kvs)
	sortKVs(kvs, req.GetSortOrder(), req.GetSortTarget())
	if req.GetLimit() > 0 && int64(len(kvs)) > req.GetLimit() {
		kvs = kvs[:req.GetLimit()]
		resp.More = true
	}
	stripKeysOnly(req, kvs)
	resp.Count = count
	resp.Kvs = kvs
	return resp, nil
}

func hasRevisionFilters(req *pb.RangeRequest) bool {
	return req.GetMinModRevision() != 0 || req.GetMaxModRevision() != 0 ||
		req.GetMinCreateRevision() != 0 || req.GetMaxCreateRevision() != 0
}

// filterKVs applies the min/max mod/create revision filters (0: none).
func filterKVs(req *pb.RangeRequest, kvs []*mvccpb.KeyValue) []*mvccpb.KeyValue {
	if !hasRevisionFilters(req) {
		return kvs
	}
	out := kvs[:0]
	for _, kv := range kvs {
		switch {
		case req.GetMaxModRevision() != 0 && kv.ModRevision > req.GetMaxModRevision():
		case req.GetMinModRevision() != 0 && kv.ModRevision < req.GetMinModRevision():
		case req.GetMaxCreateRevision() != 0 && kv.CreateRevision > req.GetMaxCreateRevision():
		case req.GetMinCreateRevision() != 0 && kv.CreateRevision < req.GetMinCreateRevision():
		default:
			out = append(out, kv)
		}
	}
	return out
}

// effectiveSortOrder is etcd's rule: NONE with a target other than KEY sorts
// ascending, and ASCEND by KEY is the scan order already (no sort).
func effectiveSortOrder(order pb.RangeRequest_SortOrder, target pb.RangeRequest_SortTarget) pb.RangeRequest_SortOrder {
	switch {
	case target != pb.RangeRequest_KEY && order == pb.RangeRequest_NONE:
		return pb.RangeRequest_ASCEND
	case target == pb.RangeRequest_KEY && order == pb.RangeRequest_ASCEND:
		return pb.RangeRequest_NONE
	}
	return order
}

// sortKVs sorts kvs (in key order on entry) as etcd does. It uses sort.Sort,
// not a stable sort, with etcd's Less functions: ties come out in the same
// order as in etcd built with the same sort algorithm (Go >= 1.19).
func sortKVs(kvs []*mvccpb.KeyValue, order pb.RangeRequest_SortOrder, target pb.RangeRequest_SortTarget) {
	order = effectiveSortOrder(order, target)
	if order == pb.RangeRequest_NONE {
		return
	}
	var sorter sort.Interface
	switch target {
	case pb.RangeRequest_KEY:
		sorter = kvSortByKey{kvs}
	case pb.RangeRequest_VERSION:
		sorter = kvSortByVersion{kvs}
	case pb.RangeRequest_CREATE:
		sorter = kvSortByCreate{kvs}
	case pb.RangeRequest_MOD:
		sorter = kvSortByMod{kvs}
	case pb.RangeRequest_VALUE:
		sorter = kvSortByValue{kvs}
	default:
		return // rejected by validation; etcd would panic
	}
	switch order {
	case pb.RangeRequest_ASCEND:
		sort.Sort(sorter)
	case pb.RangeRequest_DESCEND:
		sort.Sort(sort.Reverse(sorter))
	}
}

type kvSort []*mvccpb.KeyValue

func (s kvSort) Len() int      { return len(s) }
func (s kvSort) Swap(i, j int) { s[i], s[j] = s[j], s[i] }

type kvSortByKey struct{ kvSort }

func (s kvSortByKey) Less(i, j int) bool { return bytes.Compare(s.kvSort[i].Key, s.kvSort[j].Key) < 0 }

type kvSortByVersion struct{ kvSort }

func (s kvSortByVersion) Less(i, j int) bool { return (s.kvSort[i].Version - s.kvSort[j].Version) < 0 }

type kvSortByCreate struct{ kvSort }

func (s kvSortByCreate) Less(i, j int) bool {
	return (s.kvSort[i].CreateRevision - s.kvSort[j].CreateRevision) < 0
}

type kvSortByMod struct{ kvSort }

func (s kvSortByMod) Less(i, j int) bool {
	return (s.kvSort[i].ModRevision - s.kvSort[j].ModRevision) < 0
}

type kvSortByValue struct{ kvSort }

func (s kvSortByValue) Less(i, j int) bool {
	return bytes.Compare(s.kvSort[i].Value, s.kvSort[j].Value) < 0
}

// putKey writes req at rev, reading the previous version through r at rev.
// fallbackRev (0: none) is where an ignore_value/ignore_lease put that finds
// no live key takes the value and lease from instead of failing (see
// txnExec.put).
func putKey(r engine.Reader, w *engine.Batch, req *pb.PutRequest, rev, fallbackRev engine.Revision) (*pb.PutResponse, error) {
	resp := &pb.PutResponse{}
	key := req.GetKey()
	prev, found, err := engine.MVCCGet(r, key, rev)
	if err != nil {
		return nil, fmt.Errorf("shard: put %q: read previous version: %w", key, err)
	}
	val, lease := req.GetValue(), req.GetLease()
	if req.GetIgnoreValue() || req.GetIgnoreLease() {
		src, ok := prev, found
		if !ok && fallbackRev > 0 {
			src, ok, err = engine.MVCCGet(r, key, fallbackRev)
			if err != nil {
				return nil, fmt.Errorf("shard: put %q: read version before txn: %w", key, err)
			}
		}
		if !ok {
			// ignore_{value,lease} expects a previous key-value pair.
			return nil, rpctypes.ErrGRPCKeyNotFound
		}
		if req.GetIgnoreValue() {
			val = src.Data
		}
		if req.GetIgnoreLease() {
			lease = src.Lease
		}
	}
	v := engine.Value{CreateRev: rev, Version: 1, Lease: lease, Data: val}
	if found {
		v.CreateRev = prev.CreateRev
		v.Version = prev.Version + 1
		if req.GetPrevKv() {
			resp.PrevKv = toKeyValue(prev)
		}
	}
	if err := engine.MVCCPut(w, key, rev, v); err != nil {
		return nil, fmt.Errorf("shard: put %q: %w", key, err)
	}
	return resp, nil
}

// deleteKeys deletes at rev the keys req names that are live at rev in r.
func deleteKeys(r engine.Reader, w *engine.Batch, req *pb.DeleteRangeRequest, rev engine.Revision) (*pb.DeleteRangeResponse, error) {
	resp := &pb.DeleteRangeResponse{}
	var kvs []engine.KeyValue
	// Collect first: the writes must not disturb the scan.
	err := scanSpan(r, spanOf(req.GetKey(), req.GetRangeEnd()), rev, !req.GetPrevKv(), func(kv engine.KeyValue) bool {
		kvs = append(kvs, kv)
		return true
	})
	if err != nil {
		return nil, fmt.Errorf("shard: delete range: %w", err)
	}
	for _, kv := range kvs {
		if err := engine.MVCCDelete(w, kv.Key, rev); err != nil {
			return nil, fmt.Errorf("shard: delete %q: %w", kv.Key, err)
		}
	}
	resp.Deleted = int64(len(kvs))
	if req.GetPrevKv() {
		resp.PrevKvs = make([]*mvccpb.KeyValue, len(kvs))
		for i, kv := range kvs {
			resp.PrevKvs[i] = toKeyValue(kv)
		}
	}
	return resp, nil
}

// txnExec runs one Txn: plan (compares), check, execute.
type txnExec struct {
	r engine.Reader
	w *engine.Batch // nil for a read-only evaluation
	// rev is the revision reads see by default (the txn's revision when
	// applying: the batch holds the txn's earlier writes there) and the one
	// writes go to.
	rev engine.Revision
	// before is the current revision before the txn: rev-1 when applying,
	// the read revision when evaluating read-only.
	before engine.Revision
	env    TxnEnv
	// changed: an executed op has written.
	changed bool
}

// txnPlan is the executed path of a txn: which branch runs, and the plans of
// the nested txns in it (etcd's txnPath, as a tree).
type txnPlan struct {
	succeeded bool
	ops       []*pb.RequestOp
	nested    []*txnPlan // by op index; nil for ops that are not txns
}

func (x *txnExec) run(req *pb.TxnRequest) (*pb.TxnResponse, error) {
	p, err := x.plan(req)
	if err != nil {
		return nil, err
	}
	if err := x.check(p); err != nil {
		return nil, err
	}
	return x.execute(p)
}

// plan evaluates the compares of req and of the nested txns on its executed
// path, all on the state before the txn (etcd's compareToPath).
func (x *txnExec) plan(req *pb.TxnRequest) (*txnPlan, error) {
	ok := true
	for _, c := range req.GetCompare() {
		r, err := x.compare(c)
		if err != nil {
			return nil, err
		}
		if !r {
			ok = false
			break
		}
	}
	p := &txnPlan{succeeded: ok, ops: req.GetSuccess()}
	if !ok {
		p.ops = req.GetFailure()
	}
	for i, op := range p.ops {
		tv, isTxn := op.GetRequest().(*pb.RequestOp_RequestTxn)
		if !isTxn {
			continue
		}
		np, err := x.plan(tv.RequestTxn)
		if err != nil {
			return nil, err
		}
		if p.nested == nil {
			p.nested = make([]*txnPlan, len(p.ops))
		}
		p.nested[i] = np
	}
	return p, nil
}

// compare is etcd's applyCompare: every key of the compare's range must
// satisfy it; an empty range compares the zero KeyValue, except that a value
// compare on no key always fails.
func (x *txnExec) compare(c *pb.Compare) (bool, error) {
	ok, seen := true, false
	keysOnly := c.GetTarget() != pb.Compare_VALUE
	err := scanSpan(x.r, spanOf(c.GetKey(), c.GetRangeEnd()), x.rev, keysOnly, func(kv engine.KeyValue) bool {
		seen = true
		ok = compareKV(c, toKeyValue(kv))
		return ok
	})
	if err != nil {
		return false, fmt.Errorf("shard: txn compare: %w", err)
	}
	if !seen {
		if c.GetTarget() == pb.Compare_VALUE {
			return false, nil
		}
		return compareKV(c, &mvccpb.KeyValue{}), nil
	}
	return ok, nil
}

func compareKV(c *pb.Compare, kv *mvccpb.KeyValue) bool {
	var result int
	switch c.GetTarget() {
	case pb.Compare_VALUE:
		var v []byte
		if tv, _ := c.GetTargetUnion().(*pb.Compare_Value); tv != nil {
			v = tv.Value
		}
		result = bytes.Compare(kv.Value, v)
	case pb.Compare_CREATE:
		var rev int64
		if tv, _ := c.GetTargetUnion().(*pb.Compare_CreateRevision); tv != nil {
			rev = tv.CreateRevision
		}
		result = cmp.Compare(kv.CreateRevision, rev)
	case pb.Compare_MOD:
		var rev int64
		if tv, _ := c.GetTargetUnion().(*pb.Compare_ModRevision); tv != nil {
			rev = tv.ModRevision
		}
		result = cmp.Compare(kv.ModRevision, rev)
	case pb.Compare_VERSION:
		var ver int64
		if tv, _ := c.GetTargetUnion().(*pb.Compare_Version); tv != nil {
			ver = tv.Version
		}
		result = cmp.Compare(kv.Version, ver)
	case pb.Compare_LEASE:
		var lease int64
		if tv, _ := c.GetTargetUnion().(*pb.Compare_Lease); tv != nil {
			lease = tv.Lease
		}
		result = cmp.Compare(kv.Lease, lease)
	}
	switch c.GetResult() {
	case pb.Compare_EQUAL:
		return result == 0
	case pb.Compare_NOT_EQUAL:
		return result != 0
	case pb.Compare_GREATER:
		return result > 0
	case pb.Compare_LESS:
		return result < 0
	}
	return true
}

// check is etcd 3.7's checkTxn over the executed path: one pass in op
// order (nested txns in place), a Range's revision must be neither
// compacted nor in the future, a Put's lease must exist and its
// ignore_value/ignore_lease key must exist before the txn. So a txn with
// two faults reports the first one in op order. (etcd 3.5 checked every Put
// before every Range; Tessera follows the release it is compared with.)
func (x *txnExec) check(p *txnPlan) error {
	for i, op := range p.ops {
		var err error
		switch tv := op.GetRequest().(type) {
		case *pb.RequestOp_RequestRange:
			err = x.checkRange(tv.RequestRange)
		case *pb.RequestOp_RequestPut:
			err = x.checkPut(tv.RequestPut)
		case *pb.RequestOp_RequestTxn:
			err = x.check(p.nested[i])
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// checkRange is etcd's checkRange, including its treatment of negative
// revisions: before any compaction etcd's first revision is -1, so -1 reads
// the current revision and lower ones are "compacted"; after a compaction
// every negative revision is.
func (x *txnExec) checkRange(req *pb.RangeRequest) error {
	first := int64(-1)
	if x.env.CompactRev > 0 {
		first = int64(x.env.CompactRev)
	}
	switch rev := req.GetRevision(); {
	case rev == 0:
		return nil
	case rev > int64(x.before):
		return rpctypes.ErrGRPCFutureRev
	case rev < first:
		return rpctypes.ErrGRPCCompacted
	}
	return nil
}

func (x *txnExec) checkPut(req *pb.PutRequest) error {
	if l := req.GetLease(); l != 0 && x.env.LeaseExists != nil && !x.env.LeaseExists(l) {
		return rpctypes.ErrGRPCLeaseNotFound
	}
	if req.GetIgnoreValue() || req.GetIgnoreLease() {
		_, ok, err := engine.MVCCGet(x.r, req.GetKey(), x.rev)
		if err != nil {
			return fmt.Errorf("shard: txn check put %q: %w", req.GetKey(), err)
		}
		if !ok {
			return rpctypes.ErrGRPCKeyNotFound
		}
	}
	return nil
}

// hdr is the header of an op's response inside the txn.
func (x *txnExec) hdr() *pb.ResponseHeader {
	if x.changed {
		return &pb.ResponseHeader{Revision: int64(x.rev)}
	}
	return &pb.ResponseHeader{Revision: int64(x.before)}
}

func (x *txnExec) execute(p *txnPlan) (*pb.TxnResponse, error) {
	resp := &pb.TxnResponse{
		Header:    &pb.ResponseHeader{},
		Succeeded: p.succeeded,
		Responses: make([]*pb.ResponseOp, len(p.ops)),
	}
	for i, op := range p.ops {
		ro := &pb.ResponseOp{}
		switch tv := op.GetRequest().(type) {
		case *pb.RequestOp_RequestRange:
			// check has refused revisions above x.before; the default
			// read is at x.rev, which sees the txn's earlier writes.
			rr, err := executeRange(x.r, tv.RequestRange, x.rev, engine.Revision(x.hdr().Revision))
			if err != nil {
				return nil, err
			}
			ro.Response = &pb.ResponseOp_ResponseRange{ResponseRange: rr}
		case *pb.RequestOp_RequestPut:
			pr, err := x.put(tv.RequestPut)
			if err != nil {
				return nil, err
			}
			ro.Response = &pb.ResponseOp_ResponsePut{ResponsePut: pr}
		case *pb.RequestOp_RequestDeleteRange:
			if x.w == nil {
				return nil, errors.New("shard: delete in a read-only txn")
			}
			dr, err := deleteKeys(x.r, x.w, tv.RequestDeleteRange, x.rev)
			if err != nil {
				return nil, err
			}
			if dr.Deleted > 0 {
				x.changed = true
			}
			dr.Header = x.hdr()
			ro.Response = &pb.ResponseOp_ResponseDeleteRange{ResponseDeleteRange: dr}
		case *pb.RequestOp_RequestTxn:
			tr, err := x.execute(p.nested[i])
			if err != nil {
				return nil, err
			}
			ro.Response = &pb.ResponseOp_ResponseTxn{ResponseTxn: tr}
		}
		resp.Responses[i] = ro
	}
	return resp, nil
}

// put executes a Put of the txn. check has verified that an ignore_value/
// ignore_lease key existed before the txn; it can only be missing now if an
// earlier DeleteRange of the txn with range_end "\x00" deleted it, which
// etcd's overlap check does not see (it treats "\x00" literally) and on which
// etcd panics. Tessera instead takes the value and lease from the version
// before the txn and recreates the key.
func (x *txnExec) put(req *pb.PutRequest) (*pb.PutResponse, error) {
	if x.w == nil {
		return nil, errors.New("shard: put in a read-only txn")
	}
	pr, err := putKey(x.r, x.w, req, x.rev, x.before)
	if err != nil {
		return nil, err
	}
	x.changed = true
	pr.Header = x.hdr()
	return pr, nil
}

// stripKeysOnly drops what a keys_only Range does not return, as etcd 3.7
// does: the value always; the lease too, unless the range is sorted by value
// (etcd then reads the full key-values instead of its in-memory index, which
// holds no leases).
func stripKeysOnly(req *pb.RangeRequest, kvs []*mvccpb.KeyValue) {
	if !req.GetKeysOnly() {
		return
	}
	fast := req.GetSortTarget() != pb.RangeRequest_VALUE
	for _, kv := range kvs {
		kv.Value = nil
		if fast {
			kv.Lease = 0
		}
	}
}
