package router

import (
	"sync/atomic"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/tesseradb/tessera/engine"
	"github.com/tesseradb/tessera/proto/tesserapb"
)

// ackedRevision is the highest write revision this node's router has
// acknowledged to a client: a serializable read on this node answers at or
// above it (docs/decisions.md, "Serializable reads").
type ackedRevision struct{ v atomic.Int64 }

func (a *ackedRevision) observe(rev engine.Revision) {
	for {
		cur := a.v.Load()
		if int64(rev) <= cur || a.v.CompareAndSwap(cur, int64(rev)) {
			return
		}
	}
}

func (a *ackedRevision) load() engine.Revision { return engine.Revision(a.v.Load()) }

// serializableRevision chooses the revision a serializable read over ranges
// is served at: the highest of the writes this node acknowledged, the
// published revisions of the local replicas of those ranges, and an explicit
// revision when this node's TSO client has seen it issued. Every range is
// then read at exactly that revision once its serving replica closed it, so
// the answer is one consistent state and its header names what this node has
// seen. An explicit revision above all of them is etcd's "future revision".
func (r *Router) serializableRevision(ranges []*tesserapb.RangeDescriptor, explicit int64) (engine.Revision, error) {
	at := r.acked.load()
	for _, d := range ranges {
		if rep := r.replicas.Replica(d.GetRangeId()); rep != nil {
			at = max(at, rep.PublishedRevision())
		}
	}
	if rr := engine.Revision(explicit); rr > at {
		ic, ok := r.clock.(issuedClock)
		if !ok || rr > ic.Highest() {
			return 0, rpctypes.ErrGRPCFutureRev
		}
		at = rr
	}
	return at, nil
}
