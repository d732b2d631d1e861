package placement

import (
	"context"
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/tesseradb/tessera/engine"
	"github.com/tesseradb/tessera/internal/descset"
	"github.com/tesseradb/tessera/proto/tesserapb"
	"github.com/tesseradb/tessera/raftgroup"
)

// The range directory: every data range's descriptor, in the meta group's
// replicated state, keyed by end key (CockroachDB's meta2 layout: the range
// holding k is the first entry whose end key is above k). It starts as the
// bootstrap layout and changes only through MetaCommand.directory_update,
// whose apply keeps the entries non-overlapping: a descriptor evicts every
// overlapping entry of a lower generation and is ignored when an
// overlapping entry's generation is at or above its own. Splits and merges
// report their results here, and range leaders report their descriptor
// whenever the directory holds an older generation (router/directory.go),
// so the directory and the ranges may be briefly out of step but converge,
// and the generation decides.

// dirPrefix is the system key prefix of the directory's entries.
const dirPrefix = "meta/dir/"

var dirSpan = engine.SystemSpan(dirPrefix)

// dirKey is the system key of the entry of the range ending at end: 0x01
// and the end key, or 0x02 for the range that ends the keyspace.
func dirKey(end []byte) []byte {
	if len(end) == 0 {
		return engine.SystemKey(dirPrefix + "\x02")
	}
	return engine.SystemKey(dirPrefix + "\x01" + string(end))
}

// DirectoryLimits bound the directory's RPCs.
type DirectoryLimits struct {
	// MaxKeyBytes bounds a looked-up or scanned key: etcd's request size
	// limit (1.5 MiB), since no key can be longer.
	MaxKeyBytes int
	// MaxScanLimit bounds one page of a scan (1,000 descriptors, a few
	// hundred KiB), and is the page size when a scan names none.
	MaxScanLimit int
	// MaxReport bounds the descriptors of one report (1,000).
	MaxReport int
}

// DefaultDirectoryLimits returns the limits described on DirectoryLimits.
func DefaultDirectoryLimits() DirectoryLimits {
	return DirectoryLimits{MaxKeyBytes: 3 << 19, MaxScanLimit: 1000, MaxReport: 1000}
}

// Validate checks the limits.
func (l DirectoryLimits) Validate() error {
	if l.MaxKeyBytes <= 0 || l.MaxScanLimit <= 0 || l.MaxReport <= 0 {
		return fmt.Errorf("placement: directory limits must be positive: %+v", l)
	}
	return nil
}

// writeDirectory writes descriptors as directory entries.
func writeDirectory(b interface{ Set(k, v []byte) error }, ds []*tesserapb.RangeDescriptor) error {
	for _, d := range ds {
		v, err := proto.Marshal(d)
		if err != nil {
			return fmt.Errorf("placement: encode directory entry of range %d: %w", d.GetRangeId(), err)
		}
		if err := b.Set(dirKey(d.GetEndKey()), v); err != nil {
			return fmt.Errorf("placement: write directory entry of range %d: %w", d.GetRangeId(), err)
		}
	}
	return nil
}

// loadDirectoryLocked reads the directory; a data dir written before the
// directory existed starts from the bootstrap layout (written out by the
// first update).
func (m *Meta) loadDirectoryLocked() error {
	it, err := m.eng.NewIter(dirSpan)
	if err != nil {
		return fmt.Errorf("placement: read directory: %w", err)
	}
	defer it.Close()
	dir := descset.New()
	for valid := it.First(); valid; valid = it.Next() {
		v, err := it.Value()
		if err != nil {
			return fmt.Errorf("placement: read directory: %w", err)
		}
		d := &tesserapb.RangeDescriptor{}
		if err := proto.Unmarshal(v, d); err != nil {
			return fmt.Errorf("placement: decode directory entry %q: %w", it.Key(), err)
		}
		if ok, _ := dir.Insert(d); !ok {
			return fmt.Errorf("placement: directory entry of range %d overlaps another", d.GetRangeId())
		}
	}
	if err := it.Error(); err != nil {
		return fmt.Errorf("placement: read directory: %w", err)
	}
	m.mu.dirWritten = dir.Len() > 0
	if !m.mu.dirWritten && m.mu.bootstrap != nil {
		for _, d := range m.mu.bootstrap.GetRanges() {
			dir.Insert(d)
		}
	}
	m.mu.dir = dir
	return nil
}

// applyDirectoryLocked records descriptors, returning how many changed the
// directory. Every replica decides the same from the same entries.
func (m *Meta) applyDirectoryLocked(b *engine.Batch, ds []*tesserapb.RangeDescriptor) (int, error) {
	if !m.mu.dirWritten {
		// The directory came from the bootstrap record: write it out once.
		if err := writeDirectory(b, m.mu.dir.All()); err != nil {
			return 0, err
		}
		m.mu.dirWritten = true
	}
	n := 0
	for _, d := range ds {
		ok, evicted := m.mu.dir.Insert(d)
		if !ok {
			continue
		}
		n++
		for _, e := range evicted {
			if err := b.Delete(dirKey(e.GetEndKey())); err != nil {
				return n, fmt.Errorf("placement: delete directory entry of range %d: %w", e.GetRangeId(), err)
			}
		}
		if err := writeDirectory(b, []*tesserapb.RangeDescriptor{d}); err != nil {
			return n, err
		}
	}
	return n, nil
}

// readDirectory runs fn on the directory after a ReadIndex round confirmed
// this replica leads the meta group and it applied everything committed
// before the call: a linearizable read. fn must not keep the set.
func (m *Meta) readDirectory(ctx context.Context, fn func(*descset.Set)) error {
	m.mu.Lock()
	isLeader, leader := m.mu.isLeader, m.mu.leader
	m.mu.Unlock()
	if !isLeader {
		return &raftgroup.NotLeaderError{Group: MetaRangeID, Leader: leader}
	}
	idx, err := m.raft.ReadIndex(ctx, MetaRangeID)
	if err != nil {
		return fmt.Errorf("placement: directory read index: %w", err)
	}
	if err := m.waitApplied(ctx, idx); err != nil {
		return fmt.Errorf("placement: directory read: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	fn(m.mu.dir)
	return nil
}

// waitApplied waits until this replica applied index.
func (m *Meta) waitApplied(ctx context.Context, index uint64) error {
	for {
		m.mu.Lock()
		applied, ch := m.mu.appliedIndex, m.mu.appliedCh
		m.mu.Unlock()
		if applied >= index {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// noteAppliedLocked records the applied index and wakes waitApplied.
func (m *Meta) noteAppliedLocked(index uint64) {
	if index > m.mu.appliedIndex {
		m.mu.appliedIndex = index
	}
	close(m.mu.appliedCh)
	m.mu.appliedCh = make(chan struct{})
}

// LookupRange returns the directory's descriptor of the range holding key,
// linearizably; it answers on the meta leader only (a NotLeaderError
// otherwise). nil: no range holds key (never, once bootstrapped).
func (m *Meta) LookupRange(ctx context.Context, key []byte) (*tesserapb.RangeDescriptor, error) {
	var out *tesserapb.RangeDescriptor
	err := m.readDirectory(ctx, func(s *descset.Set) { out = s.Get(key) })
	return out, err
}

// ScanRanges returns up to limit descriptors of the directory, in key
// order, starting with the one holding start, linearizably; more tells
// whether descriptors follow. It answers on the meta leader only.
func (m *Meta) ScanRanges(ctx context.Context, start []byte, limit int) (ds []*tesserapb.RangeDescriptor, more bool, err error) {
	err = m.readDirectory(ctx, func(s *descset.Set) {
		ds = s.Scan(start, limit+1)
	})
	if len(ds) > limit {
		ds, more = ds[:limit], true
	}
	return ds, more, err
}

// ReportRanges records descriptors in the directory and returns how many
// changed it. Only descriptors newer than what the directory holds are
// proposed; when none is, nothing is proposed. It runs on the meta leader
// only.
func (m *Meta) ReportRanges(ctx context.Context, ds []*tesserapb.RangeDescriptor) (int, error) {
	m.mu.Lock()
	if !m.mu.isLeader {
		err := &raftgroup.NotLeaderError{Group: MetaRangeID, Leader: m.mu.leader}
		m.mu.Unlock()
		return 0, err
	}
	var newer []*tesserapb.RangeDescriptor
	for _, d := range ds {
		if dirWouldTake(m.mu.dir, d) {
			newer = append(newer, d)
		}
	}
	m.mu.Unlock()
	if len(newer) == 0 {
		return 0, nil
	}
	res, err := m.propose(ctx, &tesserapb.MetaCommand{DirectoryUpdate: newer})
	if err != nil {
		return 0, fmt.Errorf("placement: record %d range descriptors: %w", len(newer), err)
	}
	return res.recorded, nil
}

// dirWouldTake reports whether the directory would record d: no
// overlapping entry is as new, and d is not already there.
func dirWouldTake(s *descset.Set, d *tesserapb.RangeDescriptor) bool {
	if !descset.ValidSpan(d) {
		return false
	}
	for _, o := range s.Overlapping(d.GetStartKey(), d.GetEndKey()) {
		if o.GetGeneration() >= d.GetGeneration() {
			return false
		}
	}
	return true
}
