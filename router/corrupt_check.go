package router

import (
	"context"
	"fmt"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/tesseradb/tessera/engine"
	"github.com/tesseradb/tessera/proto/tesserapb"
	"github.com/tesseradb/tessera/raftgroup"
	"github.com/tesseradb/tessera/shard"
)

// Mismatch is a replica whose state at a revision differs from the
// majority of its range's replicas.
type Mismatch struct {
	RangeID  uint64
	Node     raftgroup.NodeID
	Revision engine.Revision
	// Hash is the replica's, Want the majority's.
	Hash, Want uint32
}

func (m Mismatch) String() string {
	return fmt.Sprintf("range %d: node %d hash %08x at revision %d, majority %08x", m.RangeID, m.Node, m.Hash, int64(m.Revision), m.Want)
}

// CheckCorruption is one pass of the periodic corruption check (etcd's
// --corrupt-check-time): for every range this node leads, the hashes of
// all its replicas at one fresh revision (shard.Replica.HashAt) are
// compared, and every replica that differs from the majority (the leader's
// hash breaks a tie) gets etcd's CORRUPT alarm raised for its node. A
// replica that does not answer is skipped (it may be down; that is not
// corruption).
func (m *Maintenance) CheckCorruption(ctx context.Context) ([]Mismatch, error) {
	rev, err := m.r.now(ctx)
	if err != nil {
		return nil, fmt.Errorf("router: corruption check: revision: %w", err)
	}
	var found []Mismatch
	for _, d := range m.r.cache.Ranges() {
		rep := m.r.replicas.Replica(d.GetRangeId())
		if rep == nil || !rep.Status().IsLeader {
			continue
		}
		own, err := rep.HashAt(ctx, rev, 0)
		if err != nil {
			m.r.log.Debug("corruption check: hash", "range", d.GetRangeId(), "err", err)
			continue
		}
		hashes := map[raftgroup.NodeID]uint32{m.r.nodes.Self(): own.Hash}
		for _, n := range shard.ReplicaNodes(d) {
			id := raftgroup.NodeID(n)
			if id == m.r.nodes.Self() {
				continue
			}
			conn, err := m.r.nodes.Conn(id)
			if err != nil {
				continue
			}
			resp, err := tesserapb.NewInternalClient(conn).Hash(ctx, &tesserapb.HashRequest{
				RangeId: d.GetRangeId(), Revision: int64(rev), MinAppliedIndex: own.AppliedIndex,
			})
			if err != nil || resp.GetRoutingError() != nil || resp.GetCompactRevision() != int64(own.CompactRevision) {
				// Down, lagging, or compacted differently meanwhile: not
				// comparable this pass.
				continue
			}
			hashes[id] = resp.GetHash()
		}
		votes := map[uint32]int{}
		for _, h := range hashes {
			votes[h]++
		}
		want := own.Hash
		for h, v := range votes {
			if v > votes[want] {
				want = h
			}
		}
		for id, h := range hashes {
			if h != want {
				found = append(found, Mismatch{RangeID: d.GetRangeId(), Node: id, Revision: rev, Hash: h, Want: want})
			}
		}
	}
	for _, mm := range found {
		m.r.log.Error("corruption check: replica differs; raising CORRUPT", "mismatch", mm.String())
		if _, err := m.Alarm(ctx, &pb.AlarmRequest{Action: pb.AlarmRequest_ACTIVATE, MemberID: uint64(mm.Node), Alarm: pb.AlarmType_CORRUPT}); err != nil {
			return found, fmt.Errorf("router: corruption check: raise CORRUPT for node %d: %w", mm.Node, err)
		}
	}
	return found, nil
}

// RunCorruptionCheck runs CheckCorruption every interval until ctx ends.
func (m *Maintenance) RunCorruptionCheck(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pctx, cancel := context.WithTimeout(ctx, interval)
		if _, err := m.CheckCorruption(pctx); err != nil && ctx.Err() == nil {
			m.r.log.Warn("corruption check", "err", err)
		}
		cancel()
	}
}

// noCorruptCheckKey marks the contexts of maintenance reads (a backup) that
// go on while CORRUPT is raised, as etcd's snapshot does.
type noCorruptCheckKey struct{}

// checkCorrupt refuses requests while a CORRUPT alarm is active, as etcd's
// corrupt applier does ("etcdserver: corrupt cluster").
func (r *Router) checkCorrupt(ctx context.Context) error {
	if ctx.Value(noCorruptCheckKey{}) != nil {
		return nil
	}
	if len(r.activeAlarms(pb.AlarmType_CORRUPT)) > 0 {
		return rpctypes.ErrGRPCCorrupt
	}
	return nil
}
