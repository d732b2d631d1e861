package shard

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/tesseradb/tessera/engine"
)

// Range sizes.
//
// A range's size is the bytes of its MVCC versions (user key + encoded
// value of every version, live and history: what a snapshot of the range
// moves and what compaction can reclaim), its live keys, and the user key
// that halves those bytes (where a size-based split cuts). It is measured
// by scanning the range's span in an engine snapshot, by the range's
// leader, only when the range changed since the last measurement.
//
// Why a scan and not counters kept at apply (CockroachDB's MVCCStats):
// counters must be exact on every replica and adjusted by every write,
// compaction and split (a split must count one half in its apply batch, a
// scan anyway), and the engine's own estimate (sstable sizes) misses what
// is still in the memtable, which is everything on a young cluster. A scan
// is exact and simple; its cost is one read of the range per check
// interval per written range on its leader (a 64 MiB range: tens of
// milliseconds). Counters in the range state are the next step when many
// large ranges are written at once.

// SizeStats is one measurement of a range.
type SizeStats struct {
	// Bytes of every version (key and value), Versions their number, Keys
	// the live keys.
	Bytes, Versions, Keys int64
	// MidKey is the user key where the versions before it hold about half
	// of Bytes (nil: the range holds at most one key, it cannot split).
	MidKey []byte
	// Generation and AppliedRev: the range as it was measured.
	Generation uint64
	AppliedRev engine.Revision
	At         time.Time
}

// sizeState is a replica's last measurement.
type sizeState struct {
	mu   sync.Mutex
	last *SizeStats
}

// LastSize returns the last measurement (false: none yet).
func (r *Replica) LastSize() (SizeStats, bool) {
	r.size.mu.Lock()
	defer r.size.mu.Unlock()
	if r.size.last == nil {
		return SizeStats{}, false
	}
	return *r.size.last, true
}

// MeasureSize measures the range unless it did not change since the last
// measurement (then that one is returned).
func (r *Replica) MeasureSize(ctx context.Context) (SizeStats, error) {
	r.mu.Lock()
	desc, applied := r.mu.desc, r.mu.publishedRev
	snap := r.cfg.Engine.NewSnapshot()
	r.mu.Unlock()
	defer snap.Close()
	r.size.mu.Lock()
	if l := r.size.last; l != nil && l.Generation == desc.GetGeneration() && l.AppliedRev == applied {
		r.size.mu.Unlock()
		return *l, nil
	}
	r.size.mu.Unlock()
	st, err := measureSpan(ctx, snap, desc.GetStartKey(), desc.GetEndKey())
	if err != nil {
		return SizeStats{}, fmt.Errorf("shard: range %d: measure size: %w", r.group, err)
	}
	st.Generation, st.AppliedRev, st.At = desc.GetGeneration(), applied, time.Now()
	r.size.mu.Lock()
	r.size.last = &st
	r.size.mu.Unlock()
	return st, nil
}

// maxSizeMarks bounds the key marks a measurement keeps to find the middle
// key: the middle is found within 2/maxSizeMarks of the bytes.
const maxSizeMarks = 1024

// measureSpan scans the versions of [start, end) once. To find the middle
// without a second pass it keeps a mark (bytes before the key, key) every
// step bytes, and doubles step (dropping every other mark) when the marks
// pass maxSizeMarks.
func measureSpan(ctx context.Context, rd engine.Reader, start, end []byte) (SizeStats, error) {
	it, err := rd.NewIter(engine.DataSpan(start, end))
	if err != nil {
		return SizeStats{}, err
	}
	defer it.Close()
	type mark struct {
		before int64
		key    []byte
	}
	var (
		st       SizeStats
		marks    []mark
		step     = int64(4096)
		nextMark int64
		prev     []byte
	)
	for ok := it.First(); ok; ok = it.Next() {
		uk, isData := engine.UserKeyOfDataKey(it.Key())
		if !isData {
			return SizeStats{}, fmt.Errorf("not a data key: %q", it.Key())
		}
		v, err := it.Value()
		if err != nil {
			return SizeStats{}, err
		}
		if prev == nil || !bytes.Equal(uk, prev) {
			// A new user key; its newest version comes first.
			if st.Versions%4096 == 0 {
				if err := ctx.Err(); err != nil {
					return SizeStats{}, err
				}
			}
			prev = bytes.Clone(uk)
			if val, err := engine.DecodeValue(v, true); err != nil {
				return SizeStats{}, err
			} else if !val.Tombstone {
				st.Keys++
			}
			if st.Bytes >= nextMark && !bytes.Equal(prev, start) {
				marks = append(marks, mark{before: st.Bytes, key: prev})
				nextMark = st.Bytes + step
				if len(marks) > maxSizeMarks {
					kept := marks[:0]
					for i := 0; i < len(marks); i += 2 {
						kept = append(kept, marks[i])
					}
					marks = kept
					step *= 2
					nextMark = marks[len(marks)-1].before + step
				}
			}
		}
		st.Versions++
		st.Bytes += int64(len(uk) + len(v))
	}
	if err := it.Error(); err != nil {
		return SizeStats{}, err
	}
	half := st.Bytes / 2
	best := int64(-1)
	for _, m := range marks {
		if m.before == 0 {
			continue // the first key: nothing would stay left
		}
		d := m.before - half
		if d < 0 {
			d = -d
		}
		if best < 0 || d < best {
			best, st.MidKey = d, m.key
		}
	}
	return st, nil
}
