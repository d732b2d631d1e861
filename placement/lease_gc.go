package placement

import (
	"time"

	"github.com/tesseradb/tessera/engine"
	"github.com/tesseradb/tessera/proto/tesserapb"
)

// Bounding the ranges' revocation records (docs/decisions.md, "Revocation
// records").
//
// A range refuses a put naming a revoked grant because it remembers the
// revocation. To let it forget, every looked-up grant carries a validity,
// ValidUntil, a revision (TSO time): the range refuses a write whose own
// revision is above the ValidUntil of a lease it names, and the router
// looks the lease up again. A revocation carries a ValidUntil too: one at or
// above that of every lookup of the grant that found it alive. Once a range
// applies a command above it, no write naming the grant can pass the
// validity check any more, so the record can go.
//
// Both are a TSO floor F plus LeaseConfig.LookupValidity: F is at or below
// every timestamp the TSO (this leader's or a later one's) hands out after
// F was taken, and at or above every floor taken before on this node. A
// lookup takes F before it checks that the lease lives; a revocation takes
// it after it marked the lease as being revoked. So a lookup that found the
// lease alive on this leader took a lower F than the revocation; one on an
// earlier (possibly deposed) leader took an F below that leader's
// high-water mark, hence below everything this leader's TSO hands out.

// floor returns a revision at or below every timestamp the TSO hands out
// from now on, and at or above every floor returned before; false when it
// does not serve. It takes no timestamp: it raises the point the next one
// starts from to the clock (below the high-water mark).
func (t *TSO) floor() (engine.Revision, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.mu.serving || t.mu.closed {
		return 0, false
	}
	if now := t.cfg.Now().UnixMilli(); now > t.mu.phys && now < t.mu.highMs {
		t.mu.phys, t.mu.logical = now, 0
	}
	return engine.Revision(t.mu.phys<<LogicalBits | t.mu.logical), true
}

// validUntil is the validity of a lookup (or the forgetting point of a
// revocation) taken at TSO floor f.
func validUntil(f engine.Revision, d time.Duration) int64 {
	return int64(f) + d.Milliseconds()<<LogicalBits
}

// stampRevocations sets the ValidUntil of grants just marked as being
// revoked; false when this node's TSO does not serve (the revocation
// cannot go ahead: it is aborted).
func (m *Meta) stampRevocations(refs []*tesserapb.LeaseRef) bool {
	f, ok := m.tso.floor()
	if !ok {
		return false
	}
	m.mu.Lock()
	d := m.mu.leaseCfg.LookupValidity
	m.mu.Unlock()
	for _, ref := range refs {
		ref.ValidUntil = validUntil(f, d)
	}
	return true
}
