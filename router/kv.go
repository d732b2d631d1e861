package router

import (
	"context"
	"fmt"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc/metadata"

	"github.com/tesseradb/tessera/engine"
	"github.com/tesseradb/tessera/placement"
	"github.com/tesseradb/tessera/proto/tesserapb"
	"github.com/tesseradb/tessera/shard"
)

var _ pb.KVServer = (*Router)(nil)

func (r *Router) header(rev engine.Revision) *pb.ResponseHeader {
	return &pb.ResponseHeader{ClusterId: r.cfg.ClusterID, MemberId: uint64(r.nodes.Self()), Revision: int64(rev)}
}

// checkLeader implements etcd's require-leader flag (clientv3's
// WithRequireLeader): when the request carries it and this node knows no
// leader of the meta group or of a range the request touches, it fails at
// once with "no leader" instead of waiting for an election.
func (r *Router) checkLeader(ctx context.Context, ranges []*tesserapb.RangeDescriptor) error {
	md, ok := metadata.FromIncomingContext(ctx)
	if !ok {
		return nil
	}
	if v := md.Get(rpctypes.MetadataRequireLeaderKey); len(v) == 0 || v[0] != rpctypes.MetadataHasLeader {
		return nil
	}
	if m := r.cfg.Meta; m != nil && m.Leader() == 0 {
		return rpctypes.ErrGRPCNoLeader
	}
	for _, d := range ranges {
		if rep := r.replicas.Replica(d.GetRangeId()); rep != nil && rep.Status().Leader == 0 {
			return rpctypes.ErrGRPCNoLeader
		}
	}
	return nil
}

// now returns a fresh revision: the instant linearizable reads are served at.
func (r *Router) now(ctx context.Context) (engine.Revision, error) {
	return r.clock.Timestamps(ctx, 1)
}

// Range implements etcd's KV.Range.
func (r *Router) Range(ctx context.Context, req *pb.RangeRequest) (*pb.RangeResponse, error) {
	resp, err := r.rangeReq(ctx, req)
	return resp, toGRPCError(err)
}

func (r *Router) rangeReq(ctx context.Context, req *pb.RangeRequest) (*pb.RangeResponse, error) {
	if err := shard.ValidateRange(req); err != nil {
		return nil, err
	}
	ranges, err := r.cache.Cover(ctx, req.GetKey(), req.GetRangeEnd())
	if err != nil {
		return nil, err
	}
	if err := r.checkLeader(ctx, ranges); err != nil {
		return nil, err
	}
	own := req.GetRevision() == 0 && !req.GetSerializable()
	for attempt := 0; ; attempt++ {
		resp, err := r.rangeOnce(ctx, req, ranges)
		if !retryCompactedRead(err, attempt, own) {
			return resp, err
		}
	}
}

// rangeOnce serves a validated Range over ranges at one fresh timestamp.
func (r *Router) rangeOnce(ctx context.Context, req *pb.RangeRequest, ranges []*tesserapb.RangeDescriptor) (*pb.RangeResponse, error) {
	var readRev engine.Revision
	var rp placement.ReadPoint
	if req.GetSerializable() {
		var err error
		if readRev, err = r.serializableRevision(ranges, req.GetRevision()); err != nil {
			return nil, err
		}
	} else {
		var err error
		if rp, err = r.readPoint(ctx); err != nil {
			return nil, err
		}
		readRev = rp.At
		if req.GetRevision() > int64(readRev) {
			return nil, rpctypes.ErrGRPCFutureRev
		}
	}
	r.metrics.fanOut.Observe(float64(len(ranges)))
	op := func(sub *pb.RangeRequest) call {
		return call{desc: nil, op: &pb.RequestOp{Request: &pb.RequestOp_RequestRange{RequestRange: sub}}, readRev: readRev, serial: req.GetSerializable()}
	}
	// A range that split or merged under its part is asked again through
	// the ranges now holding it (resplit.go), at the same revision.
	build := func(d *tesserapb.RangeDescriptor) (call, bool) {
		sub := shard.ShardRangeRequest(req, d.GetStartKey(), d.GetEndKey())
		c := op(sub)
		c.desc = d
		return c, sub != nil
	}
	start, stop := etcdSpan(req.GetKey(), req.GetRangeEnd())
	var parts []partResult
	var resplit bool
	if len(ranges) == 1 {
		c := op(req)
		c.desc = ranges[0]
		var err error
		if parts, resplit, err = r.executeSpan(ctx, c, start, stop, build, 0); err != nil {
			return nil, err
		}
		if !resplit {
			rev := parts[0].rev
			if !req.GetSerializable() {
				// The header names the cluster's latest write (current_revision.go).
				var err error
				if rev, err = r.linearizableHeader(ctx, rp, req.GetRevision(), ranges[:1], []engine.Revision{rev}, []bool{true}); err != nil {
					return nil, err
				}
			}
			resp := parts[0].resp.GetResponseRange()
			resp.Header = r.header(rev)
			return resp, nil
		}
	} else {
		var err error
		if parts, _, err = r.fanOut(ctx, ranges, start, stop, build); err != nil {
			return nil, err
		}
	}
	// parts: every range read, in key order (after re-splits, the ranges
	// that held the keys at the read).
	answers := make([]*pb.RangeResponse, len(parts))
	read := make([]*tesserapb.RangeDescriptor, len(parts))
	revs := make([]engine.Revision, len(parts))
	readFlags := make([]bool, len(parts))
	rev := readRev
	for i, p := range parts {
		answers[i], read[i], revs[i], readFlags[i] = p.resp.GetResponseRange(), p.desc, p.rev, true
		if req.GetSerializable() {
			rev = max(rev, p.rev)
		}
	}
	if !req.GetSerializable() {
		var err error
		if rev, err = r.linearizableHeader(ctx, rp, req.GetRevision(), read, revs, readFlags); err != nil {
			return nil, err
		}
	}
	resp := shard.MergeRangeResponses(req, answers)
	resp.Header = r.header(rev)
	return resp, nil
}

// singleRange returns the one range a write's keys fall in.
func (r *Router) singleRange(ctx context.Context, what string, spans [][2][]byte) (*tesserapb.RangeDescriptor, error) {
	seen := map[uint64]*tesserapb.RangeDescriptor{}
	var order []*tesserapb.RangeDescriptor
	for _, s := range spans {
		ds, err := r.cache.Cover(ctx, s[0], s[1])
		if err != nil {
			return nil, err
		}
		for _, d := range ds {
			if seen[d.GetRangeId()] == nil {
				seen[d.GetRangeId()] = d
				order = append(order, d)
			}
		}
	}
	switch len(order) {
	case 0:
		return nil, fmt.Errorf("router: no range holds the keys of a %s", what)
	case 1:
		return order[0], nil
	}
	return nil, crossRangeError(what, order)
}

// Put implements etcd's KV.Put.
func (r *Router) Put(ctx context.Context, req *pb.PutRequest) (*pb.PutResponse, error) {
	if err := shard.ValidatePut(req, r.cfg.Limits); err != nil {
		return nil, err
	}
	// NOSPACE alarm (maintenance.go): no new data while a disk is full.
	if err := r.checkNoSpace(nil); err != nil {
		return nil, err
	}
	spans := [][2][]byte{{req.GetKey(), nil}}
	d, err := r.singleRange(ctx, "put", spans)
	if err != nil {
		return nil, toGRPCError(err)
	}
	if err := r.checkLeader(ctx, []*tesserapb.RangeDescriptor{d}); err != nil {
		return nil, err
	}
	c := call{desc: d, write: true, op: &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: req}}}
	// Leases (lease.go): the range checks the incarnation at apply.
	out, rev, err := r.executeLeased(ctx, c, "put", spans)
	if err != nil {
		return nil, toGRPCError(err)
	}
	resp := out.GetResponsePut()
	resp.Header = r.header(rev)
	return resp, nil
}

// DeleteRange implements etcd's KV.DeleteRange.
func (r *Router) DeleteRange(ctx context.Context, req *pb.DeleteRangeRequest) (*pb.DeleteRangeResponse, error) {
	if err := shard.ValidateDeleteRange(req, r.cfg.Limits); err != nil {
		return nil, err
	}
	spans := [][2][]byte{{req.GetKey(), req.GetRangeEnd()}}
	d, err := r.singleRange(ctx, "delete range", spans)
	if err != nil {
		return nil, toGRPCError(err)
	}
	if err := r.checkLeader(ctx, []*tesserapb.RangeDescriptor{d}); err != nil {
		return nil, err
	}
	op := &pb.RequestOp{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: req}}
	out, rev, err := r.executeSingle(ctx, &call{desc: d, write: true, op: op}, "delete range", spans)
	if err == nil {
		rev, err = r.writeHeaderRevision(ctx, rev, wroteSomething(op, out))
	}
	if err != nil {
		return nil, toGRPCError(err)
	}
	resp := out.GetResponseDeleteRange()
	resp.Header = r.header(rev)
	return resp, nil
}

// txnSpans lists every key span a txn compares, reads or writes.
func txnSpans(t *pb.TxnRequest, out [][2][]byte) [][2][]byte {
	for _, c := range t.GetCompare() {
		out = append(out, [2][]byte{c.GetKey(), c.GetRangeEnd()})
	}
	for _, ops := range [][]*pb.RequestOp{t.GetSuccess(), t.GetFailure()} {
		for _, op := range ops {
			switch o := op.GetRequest().(type) {
			case *pb.RequestOp_RequestRange:
				out = append(out, [2][]byte{o.RequestRange.GetKey(), o.RequestRange.GetRangeEnd()})
			case *pb.RequestOp_RequestPut:
				out = append(out, [2][]byte{o.RequestPut.GetKey(), nil})
			case *pb.RequestOp_RequestDeleteRange:
				out = append(out, [2][]byte{o.RequestDeleteRange.GetKey(), o.RequestDeleteRange.GetRangeEnd()})
			case *pb.RequestOp_RequestTxn:
				out = txnSpans(o.RequestTxn, out)
			}
		}
	}
	return out
}

// Txn implements etcd's KV.Txn.
func (r *Router) Txn(ctx context.Context, req *pb.TxnRequest) (*pb.TxnResponse, error) {
	if err := shard.ValidateTxn(req, r.cfg.Limits); err != nil {
		return nil, err
	}
	spans := txnSpans(req, nil)
	if len(spans) == 0 {
		// An empty txn reads nothing: answer at the current revision.
		rev, _, err := r.currentNow(ctx)
		if err != nil {
			return nil, toGRPCError(err)
		}
		return &pb.TxnResponse{Header: r.header(rev), Succeeded: true, Responses: []*pb.ResponseOp{}}, nil
	}
	// NOSPACE alarm (maintenance.go): no txn with puts while a disk is full.
	if err := r.checkNoSpace(req); err != nil {
		return nil, err
	}
	d, err := r.singleRange(ctx, "txn", spans)
	if err != nil {
		return nil, toGRPCError(err)
	}
	if err := r.checkLeader(ctx, []*tesserapb.RangeDescriptor{d}); err != nil {
		return nil, err
	}
	op := &pb.RequestOp{Request: &pb.RequestOp_RequestTxn{RequestTxn: req}}
	c := call{desc: d, op: op, write: !shard.IsReadOnlyTxn(req)}
	var out *pb.ResponseOp
	var rev engine.Revision
	for attempt := 0; ; attempt++ {
		var rp placement.ReadPoint
		if c.write {
			// Leases (lease.go): the range checks the incarnation at apply.
			out, rev, err = r.executeLeased(ctx, c, "txn", spans)
			if err == nil {
				rev, err = r.writeHeaderRevision(ctx, rev, wroteSomething(op, out))
			}
			break
		}
		if rp, err = r.readPoint(ctx); err != nil {
			return nil, toGRPCError(err)
		}
		c.readRev = rp.At
		out, rev, err = r.executeSingle(ctx, &c, "txn", spans)
		if err == nil {
			// A read-only txn names the cluster's latest write, as a Range
			// (c.desc: the range that served it, after a re-split).
			if rev, err = r.linearizableHeader(ctx, rp, 0, []*tesserapb.RangeDescriptor{c.desc}, []engine.Revision{rev}, []bool{true}); err == nil {
				setReadHeaders(out.GetResponseTxn(), rev)
			}
		}
		if !retryCompactedRead(err, attempt, true) {
			break
		}
	}
	if err != nil {
		return nil, toGRPCError(err)
	}
	resp := out.GetResponseTxn()
	// Nested responses carry the headers ApplyTxn gave them (etcd's per-op
	// revisions); only the top-level header is ours.
	resp.Header = r.header(rev)
	return resp, nil
}

// Compact implements etcd's KV.Compact: every range drops its history below
// the revision.
func (r *Router) Compact(ctx context.Context, req *pb.CompactionRequest) (*pb.CompactionResponse, error) {
	if err := r.checkLeader(ctx, r.cache.Ranges()); err != nil {
		return nil, err
	}
	// etcd's current revision: the latest write (current_revision.go).
	now, _, err := r.currentNow(ctx)
	if err != nil {
		return nil, toGRPCError(err)
	}
	if req.GetRevision() > int64(now) {
		return nil, rpctypes.ErrGRPCFutureRev
	}
	if req.GetRevision() <= 0 {
		return nil, rpctypes.ErrGRPCCompacted
	}
	if err := r.waitCompactionHolds(ctx, engine.Revision(req.GetRevision())); err != nil {
		return nil, toGRPCError(err)
	}
	ranges, err := r.cache.CoverAll(ctx)
	if err != nil {
		return nil, toGRPCError(err)
	}
	// Every range applies the same compactions in the same order, so they
	// agree; a range that split or merged under it is compacted through the
	// ranges now holding its span (resplit.go).
	build := func(d *tesserapb.RangeDescriptor) (call, bool) {
		return call{desc: d, write: true, compactRev: engine.Revision(req.GetRevision())}, true
	}
	errs := make([]error, len(ranges))
	g, gctx := errgroup.WithContext(ctx)
	for i, d := range ranges {
		g.Go(func() error {
			c, _ := build(d)
			_, _, errs[i] = r.executeSpan(gctx, c, nil, nil, build, 0)
			return nil
		})
	}
	_ = g.Wait()
	// Report the first range's verdict, or any other failure.
	for _, err := range errs {
		if err != nil {
			return nil, toGRPCError(err)
		}
	}
	return &pb.CompactionResponse{Header: r.header(now)}, nil
}

// RangeStream implements etcd 3.7's KV.RangeStream: the whole answer in one
// chunk (merging the chunks must give Range's answer, which one chunk does).
func (r *Router) RangeStream(req *pb.RangeRequest, stream pb.KV_RangeStreamServer) error {
	resp, err := r.rangeReq(stream.Context(), req)
	if err != nil {
		return toGRPCError(err)
	}
	return stream.Send(&pb.RangeStreamResponse{RangeResponse: resp})
}
