package router

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/tesseradb/tessera/engine"
	"github.com/tesseradb/tessera/internal/backoff"
	"github.com/tesseradb/tessera/proto/tesserapb"
	"github.com/tesseradb/tessera/raftgroup"
	"github.com/tesseradb/tessera/shard"
)

// Replicas gives the router this node's replicas.
type Replicas interface {
	// Replica returns the local replica of a range, or nil.
	Replica(rangeID uint64) *shard.Replica
}

// call is one request for one range.
type call struct {
	desc       *tesserapb.RangeDescriptor
	op         *pb.RequestOp
	write      bool
	readRev    engine.Revision
	serial     bool
	compactRev engine.Revision
	// leases: incarnations of the leases the op attaches, or a revocation.
	leases shard.LeaseRefs
	// leaseKeys: a read of the keys attached to this lease (op nil).
	leaseKeys int64
}

// retryBackoff paces the rounds of attempts on the same range once every
// replica was tried (an election is under way): 20 ms, doubling up to
// 200 ms, jittered so that the requests of many ranges spread out.
var retryBackoff = backoff.Config{Min: 20 * time.Millisecond, Max: 200 * time.Millisecond}

// execute runs a call on the range's leader (or, for a serializable read, on
// the nearest replica), following routing errors until ctx ends.
func (r *Router) execute(ctx context.Context, c call) (*pb.ResponseOp, engine.Revision, error) {
	if err := r.checkCorrupt(ctx); err != nil {
		return nil, 0, err
	}
	desc := c.desc
	var lastErr error
	tried := map[raftgroup.NodeID]bool{}
	// notFound: the replicas of this round that hold no such range.
	notFound := map[raftgroup.NodeID]bool{}
	var retry *backoff.Backoff
	for attempt := 0; ; attempt++ {
		if err := ctx.Err(); err != nil {
			if lastErr != nil {
				return nil, 0, fmt.Errorf("%w (last error: %v)", err, lastErr)
			}
			return nil, 0, err
		}
		target := r.pickTarget(desc, c.serial, tried)
		if target == 0 && len(notFound) > 0 && len(notFound) == len(tried) {
			// No replica holds the range any more (merged away): if the
			// directory knows a newer layout, the call is re-split.
			if err := r.dirFallback(ctx, desc); err != nil {
				var rs *resplitError
				if errors.As(err, &rs) {
					return nil, 0, err
				}
				lastErr = err
			}
		}
		if target == 0 {
			// Every replica tried: wait for an election and start over.
			r.metrics.retries.WithLabelValues(retryElection).Inc()
			tried = map[raftgroup.NodeID]bool{}
			notFound = map[raftgroup.NodeID]bool{}
			if retry == nil {
				retry = backoff.New(retryBackoff)
			}
			_ = retry.Wait(ctx) // ctx's end is reported at the top of the loop
			continue
		}
		tried[target] = true
		resp, rev, err := r.executeOn(ctx, target, desc, c)
		if err == nil {
			if !c.serial {
				r.cache.SetLeader(desc.GetRangeId(), target)
			}
			if c.write && c.op != nil {
				r.acked.observe(rev)
			}
			return resp, rev, nil
		}
		lastErr = err
		var re *shard.RoutingError
		switch {
		case errors.As(err, &re):
			switch re.Code {
			case tesserapb.RoutingError_NOT_LEADER:
				r.metrics.retries.WithLabelValues(retryNotLeader).Inc()
				r.cache.SetLeader(desc.GetRangeId(), raftgroup.NodeID(re.LeaderNode))
				if re.LeaderNode != 0 && !tried[raftgroup.NodeID(re.LeaderNode)] {
					continue
				}
			case tesserapb.RoutingError_RANGE_NOT_FOUND:
				r.metrics.retries.WithLabelValues(retryRangeNotFound).Inc()
				notFound[target] = true
				r.cache.Update(re.Descriptor)
			case tesserapb.RoutingError_STALE_GENERATION, tesserapb.RoutingError_KEY_MISMATCH:
				switch theirs := re.Descriptor.GetGeneration(); {
				case theirs > desc.GetGeneration():
					// The range split or merged: the caller re-splits the
					// request over the new layout (resplit.go).
					r.cache.Update(re.Descriptor)
					return nil, 0, &resplitError{rangeID: desc.GetRangeId(), cause: err}
				case theirs < desc.GetGeneration():
					// A replica that has not applied the change yet: try
					// another (the leader has it).
					r.cache.SetLeader(desc.GetRangeId(), 0)
					continue
				}
				// Same generation, keys outside the range: the request was
				// built against another layout; a bug, but a retryable one.
				return nil, 0, status.Error(codes.Unavailable, re.Error())
			}
			r.cache.SetLeader(desc.GetRangeId(), 0)
		case errors.Is(err, shard.ErrReplicaClosed) && !c.write && c.compactRev == 0:
			// The replica closed (its range merged away, or its node is
			// stopping): a read tries the other replicas, then the
			// directory (a merge), as for RANGE_NOT_FOUND.
			r.metrics.retries.WithLabelValues(retryRangeNotFound).Inc()
			notFound[target] = true
			r.cache.SetLeader(desc.GetRangeId(), 0)
		case isTransportError(err):
			r.metrics.retries.WithLabelValues(retryTransport).Inc()
			r.cache.SetLeader(desc.GetRangeId(), 0)
			if (c.write || c.compactRev > 0) && !neverSent(err) {
				// The leader may have proposed it before the connection
				// broke: retrying could apply it twice. Its outcome is
				// unknown, which etcd reports as a timeout due to leader
				// failure (clients do not retry that for writes).
				return nil, 0, rpctypes.ErrGRPCTimeoutDueToLeaderFail
			}
		default:
			return nil, 0, err
		}
	}
}

// isTransportError tells a failure to reach a peer (try another replica)
// apart from etcd's own errors, which all start with "etcdserver: ".
func isTransportError(err error) bool {
	s, ok := status.FromError(err)
	return ok && s.Code() == codes.Unavailable && !strings.HasPrefix(s.Message(), "etcdserver: ")
}

// neverSent reports whether a transport error happened before the request
// left this node (the connection could not be made), so a retry elsewhere
// cannot duplicate it.
func neverSent(err error) bool {
	s, _ := status.FromError(err)
	return strings.Contains(s.Message(), "while dialing") || strings.Contains(s.Message(), "connection refused")
}

// pickTarget chooses where to send: the cached leader, else an untried
// replica (this node's first).
func (r *Router) pickTarget(desc *tesserapb.RangeDescriptor, serial bool, tried map[raftgroup.NodeID]bool) raftgroup.NodeID {
	self := r.nodes.Self()
	if serial {
		for _, id := range shard.ReplicaNodes(desc) {
			if raftgroup.NodeID(id) == self && !tried[self] {
				return self
			}
		}
	}
	if l := r.cache.Leader(desc.GetRangeId()); l != 0 && !tried[l] {
		return l
	}
	for _, id := range shard.ReplicaNodes(desc) {
		if raftgroup.NodeID(id) == self && !tried[self] {
			return self
		}
	}
	for _, id := range shard.ReplicaNodes(desc) {
		if !tried[raftgroup.NodeID(id)] {
			return raftgroup.NodeID(id)
		}
	}
	return 0
}

// executeOn runs the call on one node: the local replica directly, a remote
// one through the Internal service.
func (r *Router) executeOn(ctx context.Context, target raftgroup.NodeID, desc *tesserapb.RangeDescriptor, c call) (*pb.ResponseOp, engine.Revision, error) {
	if target == r.nodes.Self() {
		r.metrics.requests.WithLabelValues("local").Inc()
		rep := r.replicas.Replica(desc.GetRangeId())
		if rep == nil {
			return nil, 0, &shard.RoutingError{Code: tesserapb.RoutingError_RANGE_NOT_FOUND, Msg: fmt.Sprintf("range %d not on node %d", desc.GetRangeId(), target)}
		}
		return runLocal(ctx, rep, desc.GetGeneration(), c)
	}
	r.metrics.requests.WithLabelValues("remote").Inc()
	req := &tesserapb.ExecuteRequest{
		RangeId:         desc.GetRangeId(),
		Generation:      desc.GetGeneration(),
		ReadRevision:    int64(c.readRev),
		Serializable:    c.serial,
		CompactRevision: int64(c.compactRev),
		Leases:          c.leases.Attach,
		RevokeLeases:    c.leases.Revoke,
		LeaseKeys:       c.leaseKeys,
	}
	if c.write && c.op != nil {
		req.AuthRevision = shard.AuthRevisionFrom(ctx) // see shard/auth_revision.go
	}
	if c.op != nil {
		b, err := proto.Marshal(c.op)
		if err != nil {
			return nil, 0, fmt.Errorf("router: encode request: %w", err)
		}
		req.RequestOp = b
	}
	conn, err := r.nodes.Conn(target)
	if err != nil {
		return nil, 0, status.Error(codes.Unavailable, err.Error())
	}
	resp, err := tesserapb.NewInternalClient(conn).Execute(ctx, req)
	if err != nil {
		return nil, 0, err
	}
	if re := resp.GetRoutingError(); re != nil && re.GetCode() != tesserapb.RoutingError_NONE {
		return nil, 0, shard.RoutingErrorFromProto(re)
	}
	out := &pb.ResponseOp{}
	if err := proto.Unmarshal(resp.GetResponseOp(), out); err != nil {
		return nil, 0, fmt.Errorf("router: decode response from %s: %w", target, err)
	}
	return out, engine.Revision(resp.GetRevision()), nil
}

// runLocal runs a call on a local replica.
func runLocal(ctx context.Context, rep *shard.Replica, generation uint64, c call) (*pb.ResponseOp, engine.Revision, error) {
	switch {
	case c.leaseKeys != 0:
		return rep.LeaseKeys(ctx, generation, c.leaseKeys, c.readRev)
	case c.compactRev > 0:
		return rep.Write(ctx, generation, nil, c.compactRev)
	case len(c.leases.Attach) > 0 || len(c.leases.Revoke) > 0:
		return rep.WriteLeased(ctx, generation, c.op, c.leases)
	case c.write:
		return rep.Write(ctx, generation, c.op, 0)
	default:
		return rep.Read(ctx, generation, c.op, c.readRev, c.serial)
	}
}
