package router

import (
	"context"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"golang.org/x/sync/errgroup"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tesseradb/tessera/engine"
	"github.com/tesseradb/tessera/placement"
	"github.com/tesseradb/tessera/proto/tesserapb"
)

// A linearizable read's header names etcd's current revision: the newest
// write of the whole cluster at or below the read's timestamp R, not R
// itself (docs/decisions.md, "Header revision of a linearizable read").
// Each range a read covers reports its newest write at or below R with its
// answer (shard/latest_write.go). The other ranges can only have written at
// or below R if the TSO granted them write timestamps there: the TSO answers
// R with the ranges granted write timestamps since this node's floor (a
// point where the latest write is known), and only those are asked, with a
// read of nothing at R. Without a usable floor (the node's first read, a TSO
// leader change, a floor older than the TSO remembers) every range is asked.

// readClock is the TSO client's read side (placement/tso_read.go).
type readClock interface {
	ReadTimestamp(ctx context.Context) (placement.ReadPoint, error)
	NoteLatestWrite(at, write engine.Revision)
}

// Why the router asks a range for its latest write (label "reason" of
// tessera_router_latest_write_probes_total).
const (
	probeWriter  = "writer"  // the TSO granted it write timestamps since the floor
	probeUnknown = "unknown" // no usable floor: every range is asked
)

type probeMetrics struct {
	probes *prometheus.CounterVec
}

func newProbeMetrics(reg prometheus.Registerer) *probeMetrics {
	m := &probeMetrics{probes: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tessera_router_latest_write_probes_total",
		Help: "Ranges a linearizable read asked for their latest write beyond the ranges it read, by reason: writer (granted write timestamps since the node's floor) or unknown (no usable floor: every range).",
	}, []string{"reason"})}
	for _, r := range []string{probeWriter, probeUnknown} {
		m.probes.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(m.probes)
	}
	return m
}

// readPoint returns a fresh timestamp for a linearizable read.
func (r *Router) readPoint(ctx context.Context) (placement.ReadPoint, error) {
	if rc, ok := r.clock.(readClock); ok {
		return rc.ReadTimestamp(ctx)
	}
	at, err := r.clock.Timestamps(ctx, 1)
	return placement.ReadPoint{At: at}, err
}

// currentRevision returns etcd's current revision at rp.At: the newest write
// of any range at or below it. covered are the ranges already read at rp.At
// and coveredWrite the newest write they reported.
func (r *Router) currentRevision(ctx context.Context, rp placement.ReadPoint, covered map[uint64]bool, coveredWrite engine.Revision) (engine.Revision, error) {
	w := coveredWrite
	var probe []*tesserapb.RangeDescriptor
	reason := probeUnknown
	if rp.Complete {
		w = max(w, rp.Floor.Write)
		reason = probeWriter
		var want map[uint64]bool
		for _, wr := range rp.Writers {
			if !covered[wr.RangeID] {
				if want == nil {
					want = map[uint64]bool{}
				}
				want[wr.RangeID] = true
			}
		}
		if len(want) > 0 {
			for _, d := range r.cache.Ranges() {
				if want[d.GetRangeId()] {
					probe = append(probe, d)
					delete(want, d.GetRangeId())
				}
			}
			if len(want) > 0 {
				// A writer this node's cache does not know: ask every range.
				probe, reason = nil, probeUnknown
				rp.Complete = false
			}
		}
	}
	if !rp.Complete {
		// Every range, with no gap (a split's half this node has not seen
		// comes from the range directory).
		all, err := r.cache.CoverAll(ctx)
		if err != nil {
			return 0, err
		}
		for _, d := range all {
			if !covered[d.GetRangeId()] {
				probe = append(probe, d)
			}
		}
	}
	if len(probe) > 0 {
		r.metrics.probes.probes.WithLabelValues(reason).Add(float64(len(probe)))
		revs := make([]engine.Revision, len(probe))
		g, gctx := errgroup.WithContext(ctx)
		for i, d := range probe {
			g.Go(func() error {
				// A range that split or merged under the probe is probed
				// through the ranges now holding its span (resplit.go).
				build := func(d *tesserapb.RangeDescriptor) (call, bool) {
					return call{desc: d, op: probeOp(d), readRev: rp.At}, true
				}
				c, _ := build(d)
				parts, _, err := r.executeSpan(gctx, c, d.GetStartKey(), d.GetEndKey(), build, 0)
				for _, p := range parts {
					revs[i] = max(revs[i], p.rev)
				}
				return err
			})
		}
		if err := g.Wait(); err != nil {
			return 0, err
		}
		for _, rv := range revs {
			w = max(w, rv)
		}
	}
	if rc, ok := r.clock.(readClock); ok {
		rc.NoteLatestWrite(rp.At, w)
	}
	// etcd's revisions start at 1: a cluster with no write reports 1 (a
	// read at 1 shows the empty state, as etcd's).
	return max(w, 1), nil
}

// writeHeaderRevision is the header revision of a write applied at
// revision rev: rev itself when it changed something; for one that changed
// nothing (a Txn whose compare failed into reads, a delete of nothing) no
// write has rev, and etcd answers with its current revision at the state
// the request saw: the cluster's latest write at or below rev.
func (r *Router) writeHeaderRevision(ctx context.Context, rev engine.Revision, wrote bool) (engine.Revision, error) {
	if wrote {
		return rev, nil
	}
	cur, err := r.currentAt(ctx, rev)
	if err != nil {
		// rev's history may be compacted meanwhile: the write is then
		// answered at a fresh point instead (it changed nothing, so it may
		// be linearized there too, if less exactly).
		cur, _, err = r.currentNow(ctx)
	}
	return cur, err
}

// currentAt returns the cluster's latest write at or below at, a revision
// the TSO has issued, asking the ranges granted write timestamps between
// this node's floor and at (all ranges when the floor is above at).
func (r *Router) currentAt(ctx context.Context, at engine.Revision) (engine.Revision, error) {
	var rp placement.ReadPoint
	var err error
	if rc, ok := r.clock.(interface {
		ReadPointBelow(context.Context, engine.Revision) (placement.ReadPoint, error)
	}); ok {
		rp, err = rc.ReadPointBelow(ctx, at)
	} else {
		rp, err = r.readPoint(ctx)
	}
	if err != nil {
		return 0, err
	}
	if rp.Floor.At > at {
		rp.Complete = false
	}
	writers := rp.Writers[:0:0]
	for _, w := range rp.Writers {
		if w.Lowest <= at {
			writers = append(writers, w)
		}
	}
	rp.At, rp.Writers = at, writers
	return r.currentRevision(ctx, rp, nil, 0)
}

// wroteSomething reports whether a write's response shows a change: a Put
// always; a DeleteRange that deleted a key; a Txn whose taken branch holds
// either.
func wroteSomething(op *pb.RequestOp, out *pb.ResponseOp) bool {
	switch o := op.GetRequest().(type) {
	case *pb.RequestOp_RequestPut:
		return true
	case *pb.RequestOp_RequestDeleteRange:
		return out.GetResponseDeleteRange().GetDeleted() > 0
	case *pb.RequestOp_RequestTxn:
		t := out.GetResponseTxn()
		ops := o.RequestTxn.GetFailure()
		if t.GetSucceeded() {
			ops = o.RequestTxn.GetSuccess()
		}
		for i, sub := range ops {
			if i < len(t.GetResponses()) && wroteSomething(sub, t.GetResponses()[i]) {
				return true
			}
		}
	}
	return false
}

// probeOp reads nothing of a range but its latest write: a count of one key
// at its start.
func probeOp(d *tesserapb.RangeDescriptor) *pb.RequestOp {
	key := d.GetStartKey()
	if len(key) == 0 {
		key = []byte{0}
	}
	return &pb.RequestOp{Request: &pb.RequestOp_RequestRange{RequestRange: &pb.RangeRequest{Key: key, CountOnly: true}}}
}

// CurrentRevision returns etcd's current revision (the newest write at or
// below a fresh timestamp) and that timestamp, reading no range: what the
// watch hub's created and progress responses name.
func (r *Router) CurrentRevision(ctx context.Context) (cur, at engine.Revision, err error) {
	return r.currentNow(ctx)
}

// currentNow returns etcd's current revision (the newest write at or below
// a fresh timestamp) and that timestamp, reading no range.
func (r *Router) currentNow(ctx context.Context) (engine.Revision, engine.Revision, error) {
	rp, err := r.readPoint(ctx)
	if err != nil {
		return 0, 0, err
	}
	w, err := r.currentRevision(ctx, rp, nil, 0)
	return w, rp.At, err
}

// linearizableHeader returns the header revision of a linearizable read at
// rp over ranges, whose answers reported their latest writes revs (read[i]:
// whether ranges[i] was read at all), and refuses an explicit revision above it as etcd's
// future revision: the answer was read at that revision, but no write made
// it current yet.
func (r *Router) linearizableHeader(ctx context.Context, rp placement.ReadPoint, explicit int64, ranges []*tesserapb.RangeDescriptor, revs []engine.Revision, read []bool) (engine.Revision, error) {
	covered := make(map[uint64]bool, len(ranges))
	var w engine.Revision
	for i, d := range ranges {
		if read[i] {
			covered[d.GetRangeId()] = true
			w = max(w, revs[i])
		}
	}
	cur, err := r.currentRevision(ctx, rp, covered, w)
	if err != nil {
		return 0, err
	}
	if explicit > int64(cur) {
		return 0, rpctypes.ErrGRPCFutureRev
	}
	return cur, nil
}

// setReadHeaders gives the nested responses of a read-only txn the txn's
// header revision, as etcd does (they were evaluated at the read's
// timestamp).
func setReadHeaders(t *pb.TxnResponse, rev engine.Revision) {
	for _, op := range t.GetResponses() {
		switch o := op.GetResponse().(type) {
		case *pb.ResponseOp_ResponseRange:
			if h := o.ResponseRange.GetHeader(); h != nil {
				h.Revision = int64(rev)
			}
		case *pb.ResponseOp_ResponseTxn:
			if h := o.ResponseTxn.GetHeader(); h != nil {
				h.Revision = int64(rev)
			}
			setReadHeaders(o.ResponseTxn, rev)
		}
	}
}

// statusRevisionWait bounds how long Status looks for the current revision:
// etcd's Status answers from the member's own state at once, so a node
// that cannot reach the TSO (or a range) soon answers with revision 0
// rather than make `etcdctl endpoint status` wait.
var statusRevisionWait = time.Second

// statusRevision is the header revision of Status: etcd's current revision
// when it can be had within statusRevisionWait, else 0.
func (r *Router) statusRevision(ctx context.Context) engine.Revision {
	ctx, cancel := context.WithTimeout(ctx, statusRevisionWait)
	defer cancel()
	cur, _, err := r.currentNow(ctx)
	if err != nil {
		return 0
	}
	return cur
}
