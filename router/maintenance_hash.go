package router

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"slices"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/tesseradb/tessera/engine"
	"github.com/tesseradb/tessera/proto/tesserapb"
	"github.com/tesseradb/tessera/raftgroup"
	"github.com/tesseradb/tessera/shard"
)

// HashKV implements etcd's Maintenance.HashKV (etcdctl endpoint hashkv):
// the hash of the state at a revision (0: a fresh one) of every range this
// node holds a replica of, each from this node's own replica once it has
// applied every write at or below the revision (shard.Replica.HashAt).
// Nodes holding the same ranges (every node of a three-node cluster)
// report equal hashes at the same revision when their replicas agree; a
// replica whose data was damaged changes its node's hash. Unlike etcd's,
// the hash covers the keys live at the revision, not the history kept
// above the compaction revision; compact_revision is the highest
// compaction revision of the ranges hashed.
func (m *Maintenance) HashKV(ctx context.Context, req *pb.HashKVRequest) (*pb.HashKVResponse, error) {
	now, err := m.r.now(ctx)
	if err != nil {
		return nil, toGRPCError(err)
	}
	rev := engine.Revision(req.GetRevision())
	switch {
	case rev < 0:
		return nil, rpctypes.ErrGRPCCompacted
	case rev > now:
		return nil, rpctypes.ErrGRPCFutureRev
	case rev == 0:
		rev = now
	}
	h := crc32.New(castagnoliTable)
	var compact engine.Revision
	var b [8]byte
	for _, d := range m.r.cache.Ranges() {
		if m.r.replicas.Replica(d.GetRangeId()) == nil {
			continue
		}
		res, err := m.r.hashLocalAt(ctx, d, rev)
		if err != nil {
			return nil, toGRPCError(err)
		}
		binary.BigEndian.PutUint64(b[:], d.GetRangeId())
		_, _ = h.Write(b[:])
		binary.BigEndian.PutUint32(b[:4], res.Hash)
		_, _ = h.Write(b[:4])
		compact = max(compact, res.CompactRevision)
	}
	return &pb.HashKVResponse{Header: m.r.header(now), Hash: h.Sum32(), CompactRevision: int64(compact), HashRevision: int64(rev)}, nil
}

// Hash implements etcd's Maintenance.Hash (etcdctl endpoint hash, deprecated
// in etcd): HashKV at a fresh revision.
func (m *Maintenance) Hash(ctx context.Context, _ *pb.HashRequest) (*pb.HashResponse, error) {
	resp, err := m.HashKV(ctx, &pb.HashKVRequest{})
	if err != nil {
		return nil, err
	}
	return &pb.HashResponse{Header: resp.GetHeader(), Hash: resp.GetHash()}, nil
}

var castagnoliTable = crc32.MakeTable(crc32.Castagnoli)

// hashLocalAt hashes this node's replica of d at rev: directly when it
// leads, else after the leader resolved rev and told the applied index to
// wait for.
func (r *Router) hashLocalAt(ctx context.Context, d *tesserapb.RangeDescriptor, rev engine.Revision) (shard.HashResult, error) {
	rep := r.replicas.Replica(d.GetRangeId())
	if rep == nil {
		return shard.HashResult{}, fmt.Errorf("router: range %d: no replica on node %d", d.GetRangeId(), r.nodes.Self())
	}
	for {
		st := rep.Status()
		if st.IsLeader {
			res, err := rep.HashAt(ctx, rev, 0)
			var re *shard.RoutingError
			if errors.As(err, &re) {
				// Leadership moved: ask the new leader once it is known.
				if err := sleepCtx(ctx, transferPoll*10); err != nil {
					return shard.HashResult{}, fmt.Errorf("router: range %d: hash at %d: %w", d.GetRangeId(), rev, err)
				}
				continue
			}
			return res, err
		}
		minApplied, err := r.resolvedIndex(ctx, d, st.Leader, rev)
		if err != nil {
			return shard.HashResult{}, err
		}
		if minApplied > 0 {
			return rep.HashAt(ctx, rev, minApplied)
		}
		// No leader answered yet: an election is under way.
		if err := sleepCtx(ctx, transferPoll*10); err != nil {
			return shard.HashResult{}, fmt.Errorf("router: range %d: hash at %d: no leader: %w", d.GetRangeId(), rev, err)
		}
	}
}

// resolvedIndex asks the range's leader (hint first, then the other
// replicas) to resolve rev and returns the applied index that covers every
// write at or below it (0: no replica answered as leader).
func (r *Router) resolvedIndex(ctx context.Context, d *tesserapb.RangeDescriptor, hint raftgroup.NodeID, rev engine.Revision) (uint64, error) {
	order := []raftgroup.NodeID{}
	if hint != 0 {
		order = append(order, hint)
	}
	for _, n := range shard.ReplicaNodes(d) {
		if id := raftgroup.NodeID(n); id != r.nodes.Self() && !slices.Contains(order, id) {
			order = append(order, id)
		}
	}
	for _, id := range order {
		if id == r.nodes.Self() {
			continue
		}
		conn, err := r.nodes.Conn(id)
		if err != nil {
			continue
		}
		resp, err := tesserapb.NewInternalClient(conn).Hash(ctx, &tesserapb.HashRequest{RangeId: d.GetRangeId(), Revision: int64(rev)})
		if err != nil {
			if errors.Is(toGRPCError(err), rpctypes.ErrGRPCCompacted) || ctx.Err() != nil {
				return 0, err
			}
			continue
		}
		if resp.GetRoutingError() == nil {
			return resp.GetAppliedIndex(), nil
		}
	}
	return 0, nil
}

// hashAt serves Internal.Hash with a revision (see HashRequest).
func (s *Internal) hashAt(ctx context.Context, req *tesserapb.HashRequest) (*tesserapb.HashResponse, error) {
	self := uint64(s.r.nodes.Self())
	resp := &tesserapb.HashResponse{NodeId: self, RangeId: req.GetRangeId()}
	rep := s.r.replicas.Replica(req.GetRangeId())
	if rep == nil {
		resp.RoutingError = &tesserapb.RoutingError{
			Code: tesserapb.RoutingError_RANGE_NOT_FOUND, Message: fmt.Sprintf("range %d not on node %d", req.GetRangeId(), self),
		}
		return resp, nil
	}
	// As every internal request, checked as strictly as the router checks
	// its own (internal_validate.go): the revision was issued by the TSO.
	if err := s.r.checkIssued(ctx, engine.Revision(req.GetRevision())); err != nil {
		return nil, toGRPCError(err)
	}
	res, err := rep.HashAt(ctx, engine.Revision(req.GetRevision()), req.GetMinAppliedIndex())
	if err != nil {
		var re *shard.RoutingError
		if errors.As(err, &re) {
			resp.RoutingError = re.Proto()
			return resp, nil
		}
		return nil, toGRPCError(fmt.Errorf("router: hash of range %d at %d: %w", req.GetRangeId(), req.GetRevision(), err))
	}
	resp.AppliedIndex, resp.Hash = res.AppliedIndex, res.Hash
	resp.Revision, resp.CompactRevision = int64(res.Revision), int64(res.CompactRevision)
	return resp, nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
