package robustness

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"slices"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tesseradb/tessera/proto/tesserapb"
)

// The reshape nemesis: a random split or merge of the data ranges at
// every injection (a pause of a second between them), and every third
// injection one of the other faults as well, so that splits and merges
// race kills, pauses, partitions and leader moves.

// reshapeBounds keeps the layout between these many data ranges.
const (
	reshapeMinRanges = 3
	reshapeMaxRanges = 10
)

// reshapeFaults are the faults the reshape nemesis mixes in, in turn.
var reshapeFaults = []func(ctx context.Context, c *cluster, rng *rand.Rand, i int) error{
	killRestart, partition, transferLeader, stopContinue,
}

// reshape is the reshape nemesis's inject.
func reshape(ctx context.Context, c *cluster, rng *rand.Rand, i int) error {
	if err := reshapeOnce(ctx, c, rng); err != nil {
		return err
	}
	if i%3 == 2 {
		return reshapeFaults[(i/3)%len(reshapeFaults)](ctx, c, rng, i)
	}
	return nil
}

// rangeView is one data range as the nodes report it.
type rangeView struct {
	desc   *tesserapb.RangeDescriptor
	leader uint64
}

// dataLayout returns the data ranges in key order with their leaders, from
// the highest generation any node reports for each range.
func (c *cluster) dataLayout() []rangeView {
	byID := map[uint64]rangeView{}
	for _, nd := range c.nodes {
		if nd.exited() != nil {
			continue
		}
		resp, err := nd.status()
		if err != nil {
			continue
		}
		for _, r := range resp.GetRanges() {
			d := r.GetRangeDescriptor()
			if r.GetIsMeta() {
				continue
			}
			have, ok := byID[d.GetRangeId()]
			if !ok || d.GetGeneration() > have.desc.GetGeneration() {
				have.desc = d
			}
			if r.GetLeaderNode() != 0 && d.GetGeneration() >= have.desc.GetGeneration() {
				have.leader = r.GetLeaderNode()
			}
			byID[d.GetRangeId()] = have
		}
	}
	out := make([]rangeView, 0, len(byID))
	for _, v := range byID {
		out = append(out, v)
	}
	slices.SortFunc(out, func(a, b rangeView) int { return bytes.Compare(a.desc.GetStartKey(), b.desc.GetStartKey()) })
	return out
}

// reshapeOnce splits a random range at a random traffic key inside it, or
// merges a random range with its right neighbour, through its leader.
// A refusal (the layout changed meanwhile, no leader, a replica down) is
// logged: the nemesis tries again at the next injection.
func reshapeOnce(ctx context.Context, c *cluster, rng *rand.Rand) error {
	layout := c.dataLayout()
	if len(layout) == 0 {
		return nil
	}
	doSplit := rng.IntN(2) == 0
	switch {
	case len(layout) <= reshapeMinRanges:
		doSplit = true
	case len(layout) >= reshapeMaxRanges:
		doSplit = false
	}
	var v rangeView
	var key []byte
	if doSplit {
		v = layout[rng.IntN(len(layout))]
		key = splitKeyIn(v.desc, rng)
	} else {
		v = layout[rng.IntN(len(layout)-1)] // not the last: it has no right neighbour
	}
	if v.leader == 0 || int(v.leader) > len(c.nodes) {
		c.log.Info("reshape: no leader known", "range", v.desc.GetRangeId())
		return nil
	}
	ic, done, err := c.nodes[v.leader-1].internal()
	if err != nil {
		return nil
	}
	defer done()
	rctx, cancel := context.WithTimeout(ctx, 3*rpcTimeout)
	defer cancel()
	var re *tesserapb.RoutingError
	if doSplit {
		c.log.Info("fault: split", "range", v.desc.GetRangeId(), "key", string(key))
		resp, serr := ic.SplitRange(rctx, &tesserapb.SplitRangeRequest{RangeId: v.desc.GetRangeId(), SplitKey: key})
		err, re = serr, resp.GetRoutingError()
	} else {
		c.log.Info("fault: merge", "range", v.desc.GetRangeId())
		resp, merr := ic.MergeRange(rctx, &tesserapb.MergeRangeRequest{RangeId: v.desc.GetRangeId()})
		err, re = merr, resp.GetRoutingError()
	}
	switch {
	case status.Code(err) == codes.Unimplemented:
		return fmt.Errorf("split/merge: %w: %v", errUnsupported, err)
	case err != nil:
		c.log.Info("reshape refused", "range", v.desc.GetRangeId(), "split", doSplit, "err", err)
	case re != nil:
		c.log.Info("reshape: routing error", "range", v.desc.GetRangeId(), "split", doSplit, "routing", re)
	}
	return nil
}

// splitKeyIn returns a user key strictly inside d: its start key (or "0")
// followed by a random suffix, so that it falls between the traffic keys.
func splitKeyIn(d *tesserapb.RangeDescriptor, rng *rand.Rand) []byte {
	start := d.GetStartKey()
	if len(start) == 0 {
		start = []byte("0")
	}
	k := append(bytes.Clone(start), fmt.Sprintf("/rob/%02d%c", rng.IntN(8), 'a'+rng.IntN(26))...)
	if bytes.Compare(k, d.GetStartKey()) <= 0 || len(d.GetEndKey()) > 0 && bytes.Compare(k, d.GetEndKey()) >= 0 {
		return append(bytes.Clone(d.GetStartKey()), 0) // the smallest key after the start
	}
	return k
}
