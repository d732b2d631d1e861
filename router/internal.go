package router

import (
	"context"
	"errors"

	"google.golang.org/protobuf/proto"

	"github.com/tesseradb/tessera/engine"
	"github.com/tesseradb/tessera/placement"
	"github.com/tesseradb/tessera/proto/tesserapb"
	"github.com/tesseradb/tessera/shard"
)

// Internal serves the peers of this node (tesserapb.Internal).
type Internal struct {
	tesserapb.UnimplementedInternalServer
	r *Router
	// Status lists this node's replicas for tessctl.
	Status func() []*tesserapb.RangeStatus
	// Self returns this node's name, client URLs and peer URLs.
	Self func() (name string, clientURLs, peerURLs []string)
}

// NewInternal returns the internal service of a router.
func NewInternal(r *Router, status func() []*tesserapb.RangeStatus) *Internal {
	return &Internal{r: r, Status: status}
}

// Execute runs a forwarded request on a local replica.
func (s *Internal) Execute(ctx context.Context, req *tesserapb.ExecuteRequest) (*tesserapb.ExecuteResponse, error) {
	rep := s.r.replicas.Replica(req.GetRangeId())
	if rep == nil {
		return &tesserapb.ExecuteResponse{RoutingError: &tesserapb.RoutingError{
			Code: tesserapb.RoutingError_RANGE_NOT_FOUND, Message: "range not on this node",
		}}, nil
	}
	c, err := s.validateExecute(ctx, req)
	if err != nil {
		return nil, toGRPCError(err)
	}
	out, rev, err := runLocal(shard.WithAuthRevision(ctx, req.GetAuthRevision()), rep, req.GetGeneration(), c)
	if err != nil {
		var re *shard.RoutingError
		if errors.As(err, &re) {
			return &tesserapb.ExecuteResponse{RoutingError: re.Proto()}, nil
		}
		return nil, toGRPCError(err)
	}
	b, err := proto.Marshal(out)
	if err != nil {
		return nil, toGRPCError(err)
	}
	return &tesserapb.ExecuteResponse{ResponseOp: b, Revision: int64(rev)}, nil
}

// Tso hands out timestamps when this node leads the meta group.
func (s *Internal) Tso(ctx context.Context, req *tesserapb.TsoRequest) (*tesserapb.TsoResponse, error) {
	if n := req.GetCount(); n == 0 || n > placement.MaxTSOCount {
		return nil, invalidArg("TSO count %d outside [1, %d]", n, placement.MaxTSOCount)
	}
	m := s.r.cfg.Meta
	if m == nil {
		return &tesserapb.TsoResponse{}, nil
	}
	var parts []placement.TSOPart
	if len(req.GetParts()) > 0 {
		if len(req.GetParts()) > int(req.GetCount()) {
			return nil, invalidArg("TSO request of %d timestamps in %d parts", req.GetCount(), len(req.GetParts()))
		}
		sum := 0
		for _, p := range req.GetParts() {
			if p.GetCount() == 0 {
				return nil, invalidArg("TSO request part of 0 timestamps")
			}
			sum += int(p.GetCount())
			parts = append(parts, placement.TSOPart{RangeID: p.GetRangeId(), Count: int(p.GetCount())})
		}
		if sum != int(req.GetCount()) {
			return nil, invalidArg("TSO request parts sum to %d, not %d", sum, req.GetCount())
		}
	}
	if req.GetWritersSince() < 0 {
		return nil, invalidArg("TSO writers since %d", req.GetWritersSince())
	}
	first, writers, complete, err := m.TSO().AllocateFor(ctx, int(req.GetCount()), parts, engine.Revision(req.GetWritersSince()))
	if err != nil {
		var nl *placement.ErrTSONotLeader
		if errors.As(err, &nl) {
			return &tesserapb.TsoResponse{LeaderHint: uint64(nl.Leader)}, nil
		}
		return nil, toGRPCError(err)
	}
	resp := &tesserapb.TsoResponse{First: int64(first), Count: req.GetCount(), WritersComplete: complete}
	for _, w := range writers {
		resp.Writers = append(resp.Writers, &tesserapb.TsoWriter{RangeId: w.RangeID, Lowest: int64(w.Lowest)})
	}
	return resp, nil
}

// Ranges reports this node's replicas.
func (s *Internal) Ranges(context.Context, *tesserapb.RangesRequest) (*tesserapb.RangesResponse, error) {
	resp := &tesserapb.RangesResponse{NodeId: uint64(s.r.nodes.Self()), Ranges: s.Status()}
	if s.Self != nil {
		resp.Name, resp.ClientUrls, resp.PeerUrls = s.Self()
	}
	return resp, nil
}
