package router

// This file checks what the Internal service receives from peers as strictly
// as the client-facing KV service checks what clients send: a peer's request
// is applied to a range only if a router could have sent it. The Internal
// service is served on the peer port only (docs/decisions.md, "Listeners"),
// so these checks are defence in depth against a buggy or hostile peer, not
// the only guard.

import (
	"context"
	"fmt"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/tesseradb/tessera/engine"
	"github.com/tesseradb/tessera/placement"
	"github.com/tesseradb/tessera/proto/tesserapb"
	"github.com/tesseradb/tessera/shard"
)

// issuedClock is implemented by a clock that knows the highest timestamp it
// has handed out (placement.TSOClient): a revision at or below it was issued
// by the TSO, so it is no future revision.
type issuedClock interface {
	Highest() engine.Revision
}

// invalidArg is the error of a malformed internal request.
func invalidArg(format string, args ...any) error {
	return status.Errorf(codes.InvalidArgument, "router: internal request: "+format, args...)
}

// checkIssued refuses a revision the TSO has not handed out yet (etcd's
// "future revision"): a read, a resolve or a compaction at it would promise
// something about writes that may still come below it. A revision at or
// below the highest timestamp this node has seen costs nothing; a higher one
// costs one (coalesced) TSO call.
func (r *Router) checkIssued(ctx context.Context, rev engine.Revision) error {
	if rev <= 0 {
		return nil
	}
	if ic, ok := r.clock.(issuedClock); ok && rev <= ic.Highest() {
		return nil
	}
	now, err := r.now(ctx)
	if err != nil {
		return fmt.Errorf("router: check revision %d: %w", rev, err)
	}
	if rev > now {
		return rpctypes.ErrGRPCFutureRev
	}
	return nil
}

// validateExecute checks a forwarded request and returns the call it asks
// for. The rules are the router's own (router/kv.go, router/forward.go):
//   - the range and its generation are named (the replica then checks that
//     the generation is its current one and the keys are its own);
//   - exactly one of request_op and compact_revision;
//   - a compaction is at a positive revision the TSO has issued;
//   - a request op passes etcd's validation with this node's limits;
//   - a linearizable read carries a positive read revision the TSO has
//     issued; a serializable read may carry one (issued too); a write
//     carries none.
func (s *Internal) validateExecute(ctx context.Context, req *tesserapb.ExecuteRequest) (call, error) {
	var c call
	if err := validateLeaseRefs(req); err != nil {
		return c, err
	}
	c.leases = shard.LeaseRefs{Attach: req.GetLeases(), Revoke: req.GetRevokeLeases()}
	if id := req.GetLeaseKeys(); id != 0 {
		// A read of a lease's keys, from the range's lease index.
		switch {
		case req.GetRangeId() == 0 || req.GetRangeId() == placement.MetaRangeID:
			return c, invalidArg("range id %d is not a data range", req.GetRangeId())
		case req.GetGeneration() == 0:
			return c, invalidArg("range %d: generation 0", req.GetRangeId())
		case id < 0:
			return c, invalidArg("negative lease id %d", id)
		case req.GetReadRevision() <= 0:
			return c, invalidArg("a read of a lease's keys needs a read revision")
		case len(req.GetRequestOp()) > 0 || req.GetCompactRevision() != 0 || req.GetSerializable() || len(c.leases.Attach) > 0 || len(c.leases.Revoke) > 0:
			return c, invalidArg("a read of a lease's keys carries nothing else")
		}
		if err := s.r.checkIssued(ctx, engine.Revision(req.GetReadRevision())); err != nil {
			return c, err
		}
		c.leaseKeys, c.readRev = id, engine.Revision(req.GetReadRevision())
		return c, nil
	}
	if len(c.leases.Revoke) > 0 {
		// A lease revocation: the range deletes the leases' keys.
		switch {
		case req.GetRangeId() == 0 || req.GetRangeId() == placement.MetaRangeID:
			return c, invalidArg("range id %d is not a data range", req.GetRangeId())
		case req.GetGeneration() == 0:
			return c, invalidArg("range %d: generation 0", req.GetRangeId())
		case len(req.GetRequestOp()) > 0 || req.GetCompactRevision() != 0 || req.GetReadRevision() != 0 || req.GetSerializable() || len(c.leases.Attach) > 0:
			return c, invalidArg("a lease revocation carries nothing else")
		}
		c.write = true
		return c, nil
	}
	switch {
	case req.GetRangeId() == 0 || req.GetRangeId() == placement.MetaRangeID:
		return c, invalidArg("range id %d is not a data range", req.GetRangeId())
	case req.GetGeneration() == 0:
		return c, invalidArg("range %d: generation 0 (a request names the descriptor generation it was routed with)", req.GetRangeId())
	case req.GetReadRevision() < 0:
		return c, invalidArg("negative read revision %d", req.GetReadRevision())
	case req.GetCompactRevision() < 0:
		return c, invalidArg("negative compaction revision %d", req.GetCompactRevision())
	case req.GetCompactRevision() > 0 && len(req.GetRequestOp()) > 0:
		return c, invalidArg("both a request op and a compaction")
	case req.GetCompactRevision() == 0 && len(req.GetRequestOp()) == 0:
		return c, invalidArg("neither a request op nor a compaction")
	}
	if c.compactRev = engine.Revision(req.GetCompactRevision()); c.compactRev > 0 {
		if req.GetReadRevision() != 0 || req.GetSerializable() || len(c.leases.Attach) > 0 {
			return c, invalidArg("a compaction carries no read revision")
		}
		if err := s.r.checkIssued(ctx, c.compactRev); err != nil {
			return c, err
		}
		return c, nil
	}
	c.op = &pb.RequestOp{}
	if err := proto.Unmarshal(req.GetRequestOp(), c.op); err != nil {
		return c, invalidArg("decode request op: %v", err)
	}
	c.readRev, c.serial = engine.Revision(req.GetReadRevision()), req.GetSerializable()
	read := false
	switch op := c.op.GetRequest().(type) {
	case *pb.RequestOp_RequestRange:
		if err := shard.ValidateRange(op.RequestRange); err != nil {
			return c, err
		}
		read = true
	case *pb.RequestOp_RequestPut:
		if err := shard.ValidatePut(op.RequestPut, s.r.cfg.Limits); err != nil {
			return c, err
		}
	case *pb.RequestOp_RequestDeleteRange:
		if err := shard.ValidateDeleteRange(op.RequestDeleteRange, s.r.cfg.Limits); err != nil {
			return c, err
		}
	case *pb.RequestOp_RequestTxn:
		if err := shard.ValidateTxn(op.RequestTxn, s.r.cfg.Limits); err != nil {
			return c, err
		}
		// The router sends a read-only txn as a read (with a read revision
		// or serializable), any other as a write.
		read = shard.IsReadOnlyTxn(op.RequestTxn) && (c.readRev > 0 || c.serial)
	default:
		return c, invalidArg("request op %T is not a KV operation", c.op.GetRequest())
	}
	c.write = !read
	switch {
	case !c.write && len(c.leases.Attach) > 0:
		return c, invalidArg("a read attaches no lease")
	case c.write && (c.readRev != 0 || c.serial):
		return c, invalidArg("a write carries no read revision and is not serializable")
	case read && !c.serial && c.readRev == 0:
		return c, invalidArg("a linearizable read needs a read revision")
	case read && c.readRev > 0:
		// A serializable read's revision is the one its router chose
		// (router/revision.go): issued too.
		if err := s.r.checkIssued(ctx, c.readRev); err != nil {
			return c, err
		}
	}
	return c, nil
}

// validateLeaseRefs checks the lease references of a request: real lease
// ids, each named once, with the incarnation the router looked up.
func validateLeaseRefs(req *tesserapb.ExecuteRequest) error {
	for _, refs := range [][]*tesserapb.LeaseRef{req.GetLeases(), req.GetRevokeLeases()} {
		seen := make(map[int64]bool, len(refs))
		for _, ref := range refs {
			switch {
			case ref.GetId() <= 0:
				return invalidArg("lease id %d", ref.GetId())
			case ref.GetIncarnation() == 0:
				return invalidArg("lease %x without an incarnation", ref.GetId())
			case ref.GetValidUntil() <= 0:
				return invalidArg("lease %x without a validity", ref.GetId())
			case seen[ref.GetId()]:
				return invalidArg("lease %x named twice", ref.GetId())
			}
			seen[ref.GetId()] = true
		}
	}
	return nil
}

// validateFeedStart checks the first message of a feed.
func (s *Internal) validateFeedStart(ctx context.Context, req *tesserapb.FeedRequest) error {
	switch {
	case req.GetRangeId() == 0 || req.GetRangeId() == placement.MetaRangeID:
		return invalidArg("feed of range id %d, not a data range", req.GetRangeId())
	case req.GetGeneration() == 0:
		return invalidArg("feed of range %d: generation 0", req.GetRangeId())
	case req.GetStartRevision() < 0:
		return invalidArg("feed start revision %d is negative", req.GetStartRevision())
	case req.GetEndRevision() < 0:
		return invalidArg("feed end revision %d is negative", req.GetEndRevision())
	case req.GetResolveRevision() != 0:
		return invalidArg("the first feed message names no resolve revision")
	}
	// A history read's end is a resolve: the range promises nothing can
	// appear up to it.
	return s.r.checkIssued(ctx, engine.Revision(req.GetEndRevision()))
}

// validateFeedResolve checks a resolve request of an open feed.
func (s *Internal) validateFeedResolve(ctx context.Context, req *tesserapb.FeedRequest) error {
	if req.GetRangeId() != 0 || req.GetGeneration() != 0 || req.GetStartRevision() != 0 || req.GetEndRevision() != 0 || req.GetPrevKv() {
		return invalidArg("a feed's later messages carry only a resolve revision")
	}
	if req.GetResolveRevision() < 0 {
		return invalidArg("negative resolve revision %d", req.GetResolveRevision())
	}
	return s.r.checkIssued(ctx, engine.Revision(req.GetResolveRevision()))
}
