package router

import (
	"bytes"
	"sort"
	"sync"

	"google.golang.org/protobuf/proto"

	"github.com/tesseradb/tessera/proto/tesserapb"
	"github.com/tesseradb/tessera/raftgroup"
)

// RangeCache maps keys to range descriptors and remembers each range's
// leader. Descriptors come from the cluster's bootstrap record for now; a
// descriptor carried by a routing error replaces an older generation.
type RangeCache struct {
	mu struct {
		sync.RWMutex
		ranges  []*tesserapb.RangeDescriptor // sorted by start key, disjoint
		leaders map[uint64]raftgroup.NodeID
	}
}

// NewRangeCache returns a cache of the given descriptors.
func NewRangeCache(descs []*tesserapb.RangeDescriptor) *RangeCache {
	c := &RangeCache{}
	c.mu.ranges = append([]*tesserapb.RangeDescriptor(nil), descs...)
	sort.Slice(c.mu.ranges, func(i, j int) bool {
		return bytes.Compare(c.mu.ranges[i].GetStartKey(), c.mu.ranges[j].GetStartKey()) < 0
	})
	c.mu.leaders = make(map[uint64]raftgroup.NodeID)
	return c
}

// Ranges returns every descriptor in key order.
func (c *RangeCache) Ranges() []*tesserapb.RangeDescriptor {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return append([]*tesserapb.RangeDescriptor(nil), c.mu.ranges...)
}

// Overlapping returns the ranges that hold keys of the etcd span [key, end)
// (end empty: the key alone; "\x00": every key from key on), in key order.
func (c *RangeCache) Overlapping(key, end []byte) []*tesserapb.RangeDescriptor {
	c.mu.RLock()
	defer c.mu.RUnlock()
	rs := c.mu.ranges
	// First range whose end is after key.
	i := sort.Search(len(rs), func(i int) bool {
		e := rs[i].GetEndKey()
		return len(e) == 0 || bytes.Compare(key, e) < 0
	})
	var out []*tesserapb.RangeDescriptor
	for ; i < len(rs); i++ {
		r := rs[i]
		if len(out) > 0 || bytes.Compare(r.GetStartKey(), key) > 0 {
			// r starts after key: it is covered only if the span reaches it.
			switch {
			case len(end) == 0:
				return out
			case len(end) == 1 && end[0] == 0:
			case bytes.Compare(end, r.GetStartKey()) <= 0:
				return out
			}
		}
		out = append(out, r)
		if len(end) == 0 {
			return out
		}
	}
	return out
}

// Leader returns the cached leader of a range (0: unknown).
func (c *RangeCache) Leader(rangeID uint64) raftgroup.NodeID {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.mu.leaders[rangeID]
}

// SetLeader records a range's leader.
func (c *RangeCache) SetLeader(rangeID uint64, n raftgroup.NodeID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n == 0 {
		delete(c.mu.leaders, rangeID)
		return
	}
	c.mu.leaders[rangeID] = n
}

// Update replaces a range's descriptor with a newer generation (and drops
// the cached descriptors it overlaps: Insert).
func (c *RangeCache) Update(d *tesserapb.RangeDescriptor) bool {
	if d == nil {
		return false
	}
	return c.Insert(d)
}

// Insert adds a descriptor and replaces every cached one it overlaps that
// has a lower generation (trimmed to what d does not cover) ("the generation decides": a split gives both halves
// the old generation+1, a merge max+1). A descriptor overlapped by one of
// the same or a higher generation is stale and not added. It reports
// whether the cache changed. (A minimal version for splits; the range
// directory's cache replaces it.)
func (c *RangeCache) Insert(d *tesserapb.RangeDescriptor) bool {
	if d == nil {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	overlaps := func(r *tesserapb.RangeDescriptor) bool {
		return (len(r.GetEndKey()) == 0 || bytes.Compare(d.GetStartKey(), r.GetEndKey()) < 0) &&
			(len(d.GetEndKey()) == 0 || bytes.Compare(r.GetStartKey(), d.GetEndKey()) < 0)
	}
	for _, r := range c.mu.ranges {
		if overlaps(r) && r.GetGeneration() >= d.GetGeneration() {
			return false
		}
	}
	kept := c.mu.ranges[:0:0]
	for _, r := range c.mu.ranges {
		if !overlaps(r) {
			kept = append(kept, r)
			continue
		}
		if r.GetRangeId() != d.GetRangeId() {
			delete(c.mu.leaders, r.GetRangeId())
		}
		// What d does not cover stays with the older descriptor, trimmed:
		// no hole opens in the keyspace. A request sent there names the
		// old generation and is corrected by the range's answer.
		if bytes.Compare(r.GetStartKey(), d.GetStartKey()) < 0 {
			p := proto.Clone(r).(*tesserapb.RangeDescriptor)
			p.EndKey = bytes.Clone(d.GetStartKey())
			kept = append(kept, p)
		}
		if len(d.GetEndKey()) > 0 && (len(r.GetEndKey()) == 0 || bytes.Compare(r.GetEndKey(), d.GetEndKey()) > 0) {
			p := proto.Clone(r).(*tesserapb.RangeDescriptor)
			p.StartKey = bytes.Clone(d.GetEndKey())
			kept = append(kept, p)
		}
	}
	sort.Slice(kept, func(i, j int) bool { return bytes.Compare(kept[i].GetStartKey(), kept[j].GetStartKey()) < 0 })
	i := sort.Search(len(kept), func(i int) bool { return bytes.Compare(kept[i].GetStartKey(), d.GetStartKey()) > 0 })
	kept = append(kept, nil)
	copy(kept[i+1:], kept[i:])
	kept[i] = d
	c.mu.ranges = kept
	return true
}
