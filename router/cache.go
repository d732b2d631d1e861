package router

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/tesseradb/tessera/internal/backoff"
	"github.com/tesseradb/tessera/internal/descset"
	"github.com/tesseradb/tessera/proto/tesserapb"
	"github.com/tesseradb/tessera/raftgroup"
)

// RangeCache maps keys to range descriptors and remembers each range's
// leader. It holds non-overlapping descriptors in a btree
// (internal/descset) and follows the generation rule: a descriptor evicts
// every overlapping one of a lower generation and is dropped if an
// overlapping one is at least as new. It starts from the bootstrap record,
// is filled from the range directory (Refresh), learns newer descriptors
// from routing errors, and asks the directory when a key falls in a gap
// (the right half of a split it has not seen yet).
type RangeCache struct {
	cfg CacheConfig
	mu  struct {
		sync.RWMutex
		set     *descset.Set
		leaders map[uint64]raftgroup.NodeID
		dir     Directory
	}
}

// CacheConfig configures a RangeCache.
type CacheConfig struct {
	// GapWait bounds how long a lookup waits for the directory to cover a
	// gap (a split's right half not recorded yet): range leaders report
	// their descriptors every ReconcileInterval, so twice that (20 s).
	GapWait time.Duration
	// GapBackoff paces the directory lookups while a gap stays open.
	GapBackoff backoff.Config
}

// DefaultCacheConfig returns the defaults described on CacheConfig.
func DefaultCacheConfig() CacheConfig {
	return CacheConfig{
		GapWait:    2 * DefaultReconcileConfig().Interval,
		GapBackoff: backoff.Config{Min: 10 * time.Millisecond, Max: 500 * time.Millisecond},
	}
}

// Validate checks the configuration.
func (c CacheConfig) Validate() error {
	if c.GapWait <= 0 || c.GapBackoff.Min <= 0 || c.GapBackoff.Max < c.GapBackoff.Min {
		return fmt.Errorf("router: range cache config: %+v", c)
	}
	return nil
}

// NewRangeCache returns a cache of the given descriptors (the bootstrap
// layout) with the default configuration.
func NewRangeCache(descs []*tesserapb.RangeDescriptor) *RangeCache {
	c := &RangeCache{cfg: DefaultCacheConfig()}
	c.mu.set = descset.New()
	c.mu.leaders = make(map[uint64]raftgroup.NodeID)
	for _, d := range descs {
		c.mu.set.Insert(d)
	}
	return c
}

// SetDirectory gives the cache the directory it fills gaps from.
func (c *RangeCache) SetDirectory(d Directory) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.mu.dir = d
}

// Ranges returns every cached descriptor in key order (a gap may lie
// between two: CoverAll fills them).
func (c *RangeCache) Ranges() []*tesserapb.RangeDescriptor {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.mu.set.All()
}

// etcdSpan turns etcd's [key, end) (end empty: the key alone; "\x00":
// every key from key on) into a descriptor span (end empty: no bound). An
// empty or inverted span names no key; it is routed to key's range, which
// answers it as etcd does (nothing).
func etcdSpan(key, end []byte) (start, stop []byte) {
	switch {
	case len(end) == 1 && end[0] == 0:
		return key, nil
	case len(end) == 0 || bytes.Compare(end, key) <= 0:
		return key, append(append(make([]byte, 0, len(key)+1), key...), 0)
	}
	return key, end
}

// Overlapping returns the cached ranges that hold keys of the etcd span
// [key, end) (end empty: the key alone; "\x00": every key from key on), in
// key order. Parts of the span in a gap are left out; Cover fills them.
func (c *RangeCache) Overlapping(key, end []byte) []*tesserapb.RangeDescriptor {
	start, stop := etcdSpan(key, end)
	if !descset.Before(start, stop) {
		return nil
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.mu.set.Overlapping(start, stop)
}

// Cover returns the ranges covering the etcd span [key, end) with no gap,
// asking the directory for the parts the cache does not know.
func (c *RangeCache) Cover(ctx context.Context, key, end []byte) ([]*tesserapb.RangeDescriptor, error) {
	start, stop := etcdSpan(key, end)
	return c.CoverSpan(ctx, start, stop)
}

// CoverAll returns the ranges of the whole keyspace with no gap.
func (c *RangeCache) CoverAll(ctx context.Context) ([]*tesserapb.RangeDescriptor, error) {
	return c.CoverSpan(ctx, nil, nil)
}

// CoverSpan returns the ranges covering the descriptor span [start, stop)
// (stop empty: no bound) with no gap, in key order, asking the directory
// for the parts the cache does not know. A gap the directory cannot fill
// yet is retried until GapWait or ctx ends.
func (c *RangeCache) CoverSpan(ctx context.Context, start, stop []byte) ([]*tesserapb.RangeDescriptor, error) {
	if !descset.Before(start, stop) {
		return nil, nil
	}
	var bo *backoff.Backoff
	var deadline time.Time
	for {
		c.mu.RLock()
		ds := c.mu.set.Overlapping(start, stop)
		dir := c.mu.dir
		c.mu.RUnlock()
		gaps := descset.Gaps(start, stop, ds)
		if len(gaps) == 0 {
			return ds, nil
		}
		if dir == nil {
			return nil, fmt.Errorf("router: no range known for key %q", gaps[0][0])
		}
		filled := false
		var lastErr error
		for _, g := range gaps {
			d, err := dir.Lookup(ctx, g[0])
			if err != nil {
				if !errors.Is(err, errNoDirectoryEntry) {
					return nil, fmt.Errorf("router: find the range of key %q: %w", g[0], err)
				}
				lastErr = err
				continue
			}
			if c.Update(d) {
				filled = true
			} else {
				lastErr = fmt.Errorf("router: the range directory holds range %d generation %d for key %q, older than the cache", d.GetRangeId(), d.GetGeneration(), g[0])
			}
		}
		if filled {
			continue
		}
		if bo == nil {
			bo = backoff.New(c.cfg.GapBackoff)
			deadline = time.Now().Add(c.cfg.GapWait)
		}
		if time.Now().After(deadline) {
			return nil, lastErr
		}
		if err := bo.Wait(ctx); err != nil {
			return nil, fmt.Errorf("%w (last error: %v)", err, lastErr)
		}
	}
}

// Refresh fills the cache from the directory (every page).
func (c *RangeCache) Refresh(ctx context.Context) error {
	c.mu.RLock()
	dir := c.mu.dir
	c.mu.RUnlock()
	if dir == nil {
		return errors.New("router: range cache has no directory")
	}
	ds, err := ScanAll(ctx, dir)
	if err != nil {
		return fmt.Errorf("router: fill range cache: %w", err)
	}
	for _, d := range ds {
		c.Update(d)
	}
	return nil
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

// Update inserts a descriptor under the generation rule and reports
// whether it went in (evicting the older ones it overlaps, and their
// leaders unless the range lives on in d).
func (c *RangeCache) Update(d *tesserapb.RangeDescriptor) bool {
	if d == nil {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	ok, evicted := c.mu.set.Insert(d)
	for _, e := range evicted {
		if e.GetRangeId() != d.GetRangeId() {
			delete(c.mu.leaders, e.GetRangeId())
		}
	}
	return ok
}

// Get returns the cached descriptor holding key (nil: a gap).
func (c *RangeCache) Get(key []byte) *tesserapb.RangeDescriptor {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.mu.set.Get(key)
}

// Reset replaces every cached descriptor and forgets the leaders: a router
// that missed changes of the layout, as tests build it (requests are then
// corrected by routing errors and re-split).
func (c *RangeCache) Reset(descs []*tesserapb.RangeDescriptor) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.mu.set.Clear()
	c.mu.leaders = make(map[uint64]raftgroup.NodeID)
	for _, d := range descs {
		c.mu.set.Insert(d)
	}
}

// Insert is Update (the name the split code uses).
func (c *RangeCache) Insert(d *tesserapb.RangeDescriptor) bool { return c.Update(d) }

// Replacement tells whether d is still a range of the layout: if the
// cache (and, when the cache still holds d, the directory) knows newer
// ranges covering d's span, it returns them, in key order, and true. The
// watch hub asks it when a range's feed ended with a routing error.
func (c *RangeCache) Replacement(ctx context.Context, d *tesserapb.RangeDescriptor) ([]*tesserapb.RangeDescriptor, bool, error) {
	same := func(ds []*tesserapb.RangeDescriptor) bool {
		return len(ds) == 1 && ds[0].GetRangeId() == d.GetRangeId() && ds[0].GetGeneration() == d.GetGeneration()
	}
	ds, err := c.CoverSpan(ctx, d.GetStartKey(), d.GetEndKey())
	if err != nil {
		return nil, false, err
	}
	if !same(ds) {
		return ds, true, nil
	}
	c.mu.RLock()
	dir := c.mu.dir
	c.mu.RUnlock()
	if dir == nil {
		return ds, false, nil
	}
	// The cache still holds d: a merge is learned from the directory.
	nd, err := dir.Lookup(ctx, d.GetStartKey())
	if err != nil {
		return nil, false, err
	}
	if nd.GetGeneration() <= d.GetGeneration() || !c.Update(nd) {
		return ds, false, nil
	}
	if ds, err = c.CoverSpan(ctx, d.GetStartKey(), d.GetEndKey()); err != nil {
		return nil, false, err
	}
	return ds, !same(ds), nil
}
