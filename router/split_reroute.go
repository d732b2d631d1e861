package router

import (
	"context"
	"errors"
	"fmt"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tesseradb/tessera/internal/backoff"
	"github.com/tesseradb/tessera/proto/tesserapb"
	"github.com/tesseradb/tessera/shard"
)

// errRangeChanged: a request's range split or merged and no single range of
// the new layout holds all its keys (a read spanning the split point). The
// caller may split the request again over the new layout; etcd clients see
// Unavailable (retryable) if nobody does.
var errRangeChanged = errors.New("router: the range changed under the request")

// rangeChangedAttempts bounds how often a read is re-split because its
// ranges changed under it (each change is a split or merge: rare).
const rangeChangedAttempts = 8

// rerouteWait bounds how long a request waits for this node's cache to
// learn the range that holds its keys after a split (its own replica
// applying the split, or another routing error).
const rerouteWait = 2 * time.Second

// opRanges counts the cached ranges an op's keys fall in.
func (r *Router) opRanges(op *pb.RequestOp) int {
	seen := map[uint64]bool{}
	for _, sp := range txnSpans(&pb.TxnRequest{Success: []*pb.RequestOp{op}}, nil) {
		for _, d := range r.cache.Overlapping(sp[0], sp[1]) {
			seen[d.GetRangeId()] = true
		}
	}
	return len(seen)
}

// reroute finds the range that holds all of a call's keys after the range
// it was sent to answered with a newer descriptor (re). The request was not
// applied (the range refused it before evaluation), so it may be sent again.
// (Minimal until the range directory lands: the cache learns halves from
// local replicas and routing errors.)
func (r *Router) reroute(ctx context.Context, c call, re *shard.RoutingError) (*tesserapb.RangeDescriptor, error) {
	if c.op == nil {
		// A compaction or a lease read of one range: the caller covers
		// the new layout on its next round.
		return nil, status.Error(codes.Unavailable, re.Error())
	}
	wctx, cancel := context.WithTimeout(ctx, rerouteWait)
	defer cancel()
	var bo *backoff.Backoff
	asked := false
	for {
		if d := re.Descriptor; d != nil && d.GetGeneration() > c.desc.GetGeneration() && shard.OpWithinDescriptor(d, c.op) {
			return d, nil
		}
		for _, d := range r.cache.Ranges() {
			if shard.OpWithinDescriptor(d, c.op) && (d.GetRangeId() != c.desc.GetRangeId() || d.GetGeneration() > c.desc.GetGeneration()) {
				return d, nil
			}
		}
		if r.opRanges(c.op) > 1 {
			// The keys are now in several ranges: the caller splits the
			// request again.
			return nil, fmt.Errorf("%w: %w", errRangeChanged, status.Error(codes.Unavailable, re.Error()))
		}
		// The cache does not know the new range yet: ask the replicas of
		// the range that answered (once), then wait.
		if !asked {
			asked = true
			r.learnFromPeers(wctx, re.Descriptor)
			continue
		}
		if bo == nil {
			bo = backoff.New(retryBackoff)
		}
		if err := bo.Wait(wctx); err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, fmt.Errorf("%w: %w", errRangeChanged, status.Error(codes.Unavailable, re.Error()))
		}
	}
}

// learnFromPeers adds to the cache the descriptors the nodes holding d's
// replicas report (their Ranges): the halves of a split that this node's
// own replicas have not applied yet, or that it holds no replica of.
// (Until the range directory answers lookups.)
func (r *Router) learnFromPeers(ctx context.Context, d *tesserapb.RangeDescriptor) {
	for _, id := range shard.ReplicaNodes(d) {
		if id == r.nodes.Self() {
			continue
		}
		conn, err := r.nodes.Conn(id)
		if err != nil {
			continue
		}
		resp, err := tesserapb.NewInternalClient(conn).Ranges(ctx, &tesserapb.RangesRequest{})
		if err != nil {
			continue
		}
		for _, st := range resp.GetRanges() {
			if !st.GetIsMeta() {
				r.cache.Insert(st.GetRangeDescriptor())
			}
		}
	}
}
