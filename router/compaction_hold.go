package router

import (
	"context"
	"sync"
	"time"

	"github.com/tesseradb/tessera/engine"
	"github.com/tesseradb/tessera/proto/tesserapb"
	"github.com/tesseradb/tessera/raftgroup"
)

// defaultCompactionHoldPoll is Config.CompactionHoldPoll's default.
const defaultCompactionHoldPoll = 200 * time.Millisecond

// compactionHolds are the revisions that backups in progress on this node
// read at. A compaction above the lowest of them, asked of any node, waits
// until the backup ends (waitCompactionHolds asks every node), so that a
// backup does not fail half-way because its revision was compacted. A hold
// lives in the memory of the node running the backup: it ends with the
// backup, or with the node if the node dies (docs/decisions.md, "Backups").
type compactionHolds struct {
	mu      sync.Mutex
	next    uint64
	revs    map[uint64]engine.Revision
	changed chan struct{} // closed and replaced when a hold is released
}

// holdCompaction keeps compactions above rev waiting until release is
// called; set moves the hold (a backup holds everything with rev 0 while
// it chooses its revision, so that no compaction decided meanwhile can cut
// below the revision it then chooses).
func (r *Router) holdCompaction(rev engine.Revision) (set func(engine.Revision), release func()) {
	h := &r.holds
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.revs == nil {
		h.revs = map[uint64]engine.Revision{}
		h.changed = make(chan struct{})
	}
	h.next++
	id := h.next
	h.revs[id] = rev
	var once sync.Once
	released := false
	set = func(rev engine.Revision) {
		h.mu.Lock()
		defer h.mu.Unlock()
		if !released {
			h.revs[id] = rev
			close(h.changed)
			h.changed = make(chan struct{})
		}
	}
	release = func() {
		once.Do(func() {
			h.mu.Lock()
			defer h.mu.Unlock()
			released = true
			delete(h.revs, id)
			close(h.changed)
			h.changed = make(chan struct{})
		})
	}
	return set, release
}

// compactionFloor returns the lowest revision held on this node (ok false:
// none).
func (r *Router) compactionFloor() (floor engine.Revision, changed <-chan struct{}, ok bool) {
	h := &r.holds
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, rev := range h.revs {
		if !ok || rev < floor {
			floor, ok = rev, true
		}
	}
	return floor, h.changed, ok
}

// CompactionHolds tells a peer the lowest revision a backup running here
// reads at.
func (s *InternalMaintenance) CompactionHolds(context.Context, *tesserapb.CompactionHoldsRequest) (*tesserapb.CompactionHoldsResponse, error) {
	floor, _, ok := s.r.compactionFloor()
	return &tesserapb.CompactionHoldsResponse{Held: ok, Floor: int64(floor)}, nil
}

// peerCompactionFloor asks every other node for its holds and returns the
// lowest. A node that does not answer holds nothing: a backup on a dead or
// unreachable node cannot finish anyway (it streams to its client from
// that node), and waiting for it would stop compactions cluster-wide.
func (r *Router) peerCompactionFloor(ctx context.Context) (floor engine.Revision, ok bool) {
	if r.nodes == nil {
		return 0, false
	}
	for _, n := range r.nodes.List() {
		id := raftgroup.NodeID(n.GetNodeId())
		if id == r.nodes.Self() {
			continue
		}
		conn, err := r.nodes.Conn(id)
		if err != nil {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, r.holdPoll()*5)
		resp, err := tesserapb.NewInternalMaintenanceClient(conn).CompactionHolds(cctx, &tesserapb.CompactionHoldsRequest{})
		cancel()
		if err != nil {
			r.log.Debug("compaction holds: node did not answer", "node", id, "err", err)
			continue
		}
		if resp.GetHeld() && (!ok || engine.Revision(resp.GetFloor()) < floor) {
			floor, ok = engine.Revision(resp.GetFloor()), true
		}
	}
	return floor, ok
}

func (r *Router) holdPoll() time.Duration {
	if r.cfg.CompactionHoldPoll > 0 {
		return r.cfg.CompactionHoldPoll
	}
	return defaultCompactionHoldPoll
}

// waitCompactionHolds waits until no backup anywhere in the cluster reads
// below rev. A backup that starts after this returned reads at a fresh
// revision, at or above rev (rev is at most the latest write when the
// compaction was asked), so it cannot be cut by this compaction.
func (r *Router) waitCompactionHolds(ctx context.Context, rev engine.Revision) error {
	logged := false
	for {
		floor, changed, ok := r.compactionFloor()
		local := true
		if pf, pok := r.peerCompactionFloor(ctx); pok && (!ok || pf < floor) {
			floor, ok, local = pf, true, false
		}
		if !ok || rev <= floor {
			return nil
		}
		if !logged {
			r.log.Info("compaction waits for a backup in progress", "revision", int64(rev), "backup_revision", int64(floor), "on_this_node", local)
			logged = true
		}
		t := time.NewTimer(r.holdPoll())
		select {
		case <-changed:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
		t.Stop()
	}
}
