package router

import (
	"context"
	"sync"

	"github.com/tesseradb/tessera/engine"
)

// compactionHolds are the revisions that backups in progress on this node
// read at: a compaction above one of them waits until the backup ends, so
// that a backup does not fail half-way because its revision was compacted.
// Only compactions requested through this node (clients' and the
// auto-compactor's) are held; see docs/snapshot.md.
type compactionHolds struct {
	mu      sync.Mutex
	next    uint64
	revs    map[uint64]engine.Revision
	changed chan struct{} // closed and replaced when a hold is released
}

// holdCompaction keeps compactions above rev waiting until release is
// called.
func (r *Router) holdCompaction(rev engine.Revision) (release func()) {
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
	return func() {
		once.Do(func() {
			h.mu.Lock()
			defer h.mu.Unlock()
			delete(h.revs, id)
			close(h.changed)
			h.changed = make(chan struct{})
		})
	}
}

// compactionFloor returns the lowest held revision (ok false: none).
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

// waitCompactionHolds waits until no backup on this node reads below rev.
func (r *Router) waitCompactionHolds(ctx context.Context, rev engine.Revision) error {
	for {
		floor, changed, ok := r.compactionFloor()
		if !ok || rev <= floor {
			return nil
		}
		r.log.Info("compaction waits for a backup in progress", "revision", rev, "backup_revision", floor)
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
