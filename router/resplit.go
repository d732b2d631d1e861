package router

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"golang.org/x/sync/errgroup"

	"github.com/tesseradb/tessera/engine"
	"github.com/tesseradb/tessera/proto/tesserapb"
)

// Re-splitting a request whose range split or merged under it.
//
// A sub-request (one range's part of a Range, a compaction, a lease
// revocation, a read of a lease's keys) that a range refuses with
// KEY_MISMATCH or STALE_GENERATION (or RANGE_NOT_FOUND on every replica
// while the directory knows a newer layout: a merge) is built again for
// each range now covering the part's span and run there, at the same read
// revision, so the client sees no error and a multi-range read stays at one
// revision. A single-range write is sent again to the range now holding
// its keys, or, when they now span several ranges, refused as it would
// have been had it arrived after the split. Nothing refused with these
// errors was applied, so sending it again cannot apply it twice.

// maxResplits bounds how often one request is re-split (each needs a
// newer layout, so a handful is plenty; more means a bug).
const maxResplits = 8

// resplitError: the range of a call split or merged; the cache holds the
// newer layout.
type resplitError struct {
	rangeID uint64
	cause   error
}

func (e *resplitError) Error() string {
	return fmt.Sprintf("router: range %d changed under the request: %v", e.rangeID, e.cause)
}

func (e *resplitError) Unwrap() error { return e.cause }

// partResult is one range's answer to its part of a request.
type partResult struct {
	desc *tesserapb.RangeDescriptor
	resp *pb.ResponseOp
	rev  engine.Revision
}

// clip returns the part of [start, stop) that d holds.
func clip(start, stop []byte, d *tesserapb.RangeDescriptor) ([]byte, []byte) {
	if bytes.Compare(d.GetStartKey(), start) > 0 {
		start = d.GetStartKey()
	}
	if e := d.GetEndKey(); len(e) > 0 && (len(stop) == 0 || bytes.Compare(e, stop) < 0) {
		stop = e
	}
	return start, stop
}

// buildFunc makes the call for the part of a request one range holds
// (false: the request names no key there).
type buildFunc func(d *tesserapb.RangeDescriptor) (call, bool)

// executeSpan runs c, the part of a request over [start, stop) that
// c.desc holds. When the range split or merged under it, the part is
// built again with build for every range now covering it and run there.
// It returns the answers in key order and whether a re-split happened.
func (r *Router) executeSpan(ctx context.Context, c call, start, stop []byte, build buildFunc, depth int) ([]partResult, bool, error) {
	resp, rev, err := r.execute(ctx, c)
	var rs *resplitError
	if !errors.As(err, &rs) {
		if err != nil {
			return nil, false, err
		}
		return []partResult{{desc: c.desc, resp: resp, rev: rev}}, false, nil
	}
	if depth >= maxResplits {
		return nil, true, err
	}
	r.metrics.retries.WithLabelValues(retryResplit).Inc()
	s, e := clip(start, stop, c.desc)
	ds, err := r.cache.CoverSpan(ctx, s, e)
	if err != nil {
		return nil, true, err
	}
	var out []partResult
	for _, d := range ds {
		sub, ok := build(d)
		if !ok {
			continue
		}
		ps, _, err := r.executeSpan(ctx, sub, s, e, build, depth+1)
		if err != nil {
			return nil, true, err
		}
		out = append(out, ps...)
	}
	return out, true, nil
}

// fanOut runs the parts of a request over [start, stop) on ranges (in key
// order) in parallel, re-splitting those whose range changed, and returns
// every answer in key order and whether a re-split happened.
func (r *Router) fanOut(ctx context.Context, ranges []*tesserapb.RangeDescriptor, start, stop []byte, build buildFunc) ([]partResult, bool, error) {
	parts := make([][]partResult, len(ranges))
	resplit := make([]bool, len(ranges))
	g, gctx := errgroup.WithContext(ctx)
	for i, d := range ranges {
		c, ok := build(d)
		if !ok {
			continue
		}
		g.Go(func() error {
			var err error
			parts[i], resplit[i], err = r.executeSpan(gctx, c, start, stop, build, 0)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, false, err
	}
	var out []partResult
	any := false
	for i := range parts {
		out = append(out, parts[i]...)
		any = any || resplit[i]
	}
	return out, any, nil
}

// executeSingle runs a call whose keys (spans, in etcd's form) one range
// holds; when that range split or merged under it, it goes to the range
// now holding them, or fails as a request arriving after the change would.
// c.desc is left at the range that answered.
func (r *Router) executeSingle(ctx context.Context, c *call, what string, spans [][2][]byte) (*pb.ResponseOp, engine.Revision, error) {
	for i := 0; ; i++ {
		resp, rev, err := r.execute(ctx, *c)
		var rs *resplitError
		if !errors.As(err, &rs) || i >= maxResplits {
			return resp, rev, err
		}
		r.metrics.retries.WithLabelValues(retryResplit).Inc()
		d, err := r.singleRange(ctx, what, spans)
		if err != nil {
			return nil, 0, err
		}
		c.desc = d
	}
}

// dirFallback asks the directory, once every replica of desc said it holds
// no such range, whether the range was merged away (or otherwise
// replaced): then the cache takes the newer layout and the call is
// re-split.
func (r *Router) dirFallback(ctx context.Context, desc *tesserapb.RangeDescriptor) error {
	d, err := r.Directory().Lookup(ctx, desc.GetStartKey())
	if err != nil {
		return err
	}
	if d.GetGeneration() > desc.GetGeneration() || d.GetRangeId() != desc.GetRangeId() && d.GetGeneration() >= desc.GetGeneration() {
		r.cache.Update(d)
		if cur := r.cache.Get(desc.GetStartKey()); cur != nil && cur.GetRangeId() == desc.GetRangeId() && cur.GetGeneration() == desc.GetGeneration() {
			return nil // the directory is behind the cache: nothing newer
		}
		return &resplitError{rangeID: desc.GetRangeId(), cause: errors.New("range not found on any replica; the directory holds a newer layout")}
	}
	return nil
}
