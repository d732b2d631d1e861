package engine

import (
	"encoding/binary"
	"errors"
	"fmt"
)

const (
	valueKindPut       byte = 1
	valueKindTombstone byte = 2
)

// Value is what one version of a user key holds.
type Value struct {
	// Tombstone marks a deletion; the other fields are then zero.
	Tombstone bool
	// CreateRev is the revision that created the key (its first version
	// since it last did not exist).
	CreateRev Revision
	// Version counts the versions since creation (1 for the creating put).
	Version int64
	// Lease is the lease the key is attached to, 0 for none.
	Lease int64
	// Data is the user's value.
	Data []byte
}

// EncodeValue appends the encoding of v to dst.
func EncodeValue(dst []byte, v Value) []byte {
	if v.Tombstone {
		return append(dst, valueKindTombstone)
	}
	dst = append(dst, valueKindPut)
	dst = binary.AppendVarint(dst, int64(v.CreateRev))
	dst = binary.AppendVarint(dst, v.Version)
	dst = binary.AppendVarint(dst, v.Lease)
	return append(dst, v.Data...)
}

// DecodeValue decodes a version's value. With keysOnly, Data is left nil.
// Data aliases b.
func DecodeValue(b []byte, keysOnly bool) (Value, error) {
	if len(b) == 0 {
		return Value{}, errors.New("engine: empty MVCC value")
	}
	switch b[0] {
	case valueKindTombstone:
		return Value{Tombstone: true}, nil
	case valueKindPut:
	default:
		return Value{}, fmt.Errorf("engine: unknown MVCC value kind %d", b[0])
	}
	b = b[1:]
	var v Value
	var n int
	var fields [3]int64
	for i := range fields {
		fields[i], n = binary.Varint(b)
		if n <= 0 {
			return Value{}, errors.New("engine: corrupt MVCC value header")
		}
		b = b[n:]
	}
	v.CreateRev, v.Version, v.Lease = Revision(fields[0]), fields[1], fields[2]
	if !keysOnly {
		v.Data = b
	}
	return v, nil
}

// KeyValue is one visible version of a user key, as returned by reads.
type KeyValue struct {
	Key    []byte
	ModRev Revision
	Value
}

// MVCCPut writes version rev of a user key. The caller computes CreateRev and
// Version (it has read the previous version to decide them).
func MVCCPut(w Writer, key []byte, rev Revision, v Value) error {
	if rev <= 0 {
		return fmt.Errorf("engine: put %q at invalid revision %d", key, rev)
	}
	if err := w.Set(DataKey(key, rev), EncodeValue(nil, v)); err != nil {
		return fmt.Errorf("engine: put %q@%d: %w", key, rev, err)
	}
	return nil
}

// MVCCDelete writes a tombstone for a user key at rev.
func MVCCDelete(w Writer, key []byte, rev Revision) error {
	return MVCCPut(w, key, rev, Value{Tombstone: true})
}

// MVCCGet returns the newest version of key at or below rev. A key whose
// newest such version is a tombstone is not found.
func MVCCGet(r Reader, key []byte, rev Revision) (KeyValue, bool, error) {
	it, err := r.NewIter(DataSpan(key, append(append([]byte(nil), key...), 0)))
	if err != nil {
		return KeyValue{}, false, err
	}
	defer it.Close()
	if !it.SeekGE(DataKey(key, rev)) {
		return KeyValue{}, false, it.Error()
	}
	kv, err := decodeKV(it, false)
	if err != nil || kv.Tombstone {
		return KeyValue{}, false, err
	}
	return kv, true, nil
}

// decodeKV copies the iterator's current version out.
func decodeKV(it *Iter, keysOnly bool) (KeyValue, error) {
	prefix, rev, err := DecodeKey(it.Key())
	if err != nil {
		return KeyValue{}, err
	}
	uk, ok := userKeyOf(prefix)
	if !ok || rev == 0 {
		return KeyValue{}, fmt.Errorf("engine: not a data version: %q", it.Key())
	}
	raw, err := it.Value()
	if err != nil {
		return KeyValue{}, fmt.Errorf("engine: read value: %w", err)
	}
	v, err := DecodeValue(raw, keysOnly)
	if err != nil {
		return KeyValue{}, fmt.Errorf("engine: key %q@%d: %w", uk, rev, err)
	}
	kv := KeyValue{Key: append([]byte(nil), uk...), ModRev: rev, Value: v}
	if v.Data != nil {
		kv.Data = append([]byte(nil), v.Data...)
	}
	return kv, nil
}

// ScanOptions select what MVCCScan returns.
type ScanOptions struct {
	// KeysOnly leaves Value.Data nil (the value is not copied).
	KeysOnly bool
}

// MVCCScan visits, in key order, the newest live version at or below rev of
// each user key in [start, end) (end empty: to the end of the keyspace). fn
// returns false to stop. Tombstoned keys are skipped. Each key costs one seek
// at most, never a walk over its older versions.
func MVCCScan(r Reader, start, end []byte, rev Revision, opts ScanOptions, fn func(KeyValue) bool) error {
	it, err := r.NewIter(DataSpan(start, end))
	if err != nil {
		return err
	}
	defer it.Close()
	valid := it.SeekGE(DataKey(start, rev))
	for valid {
		prefix, krev, err := DecodeKey(it.Key())
		if err != nil {
			return err
		}
		if krev == 0 {
			valid = it.Next()
			continue
		}
		if krev > rev {
			// Newer than the read: jump to this key's newest version <= rev.
			valid = it.SeekGE(EncodeKey(nil, prefix, rev))
			continue
		}
		kv, err := decodeKV(it, opts.KeysOnly)
		if err != nil {
			return err
		}
		if !kv.Tombstone && !fn(kv) {
			return nil
		}
		valid = it.NextPrefix()
	}
	if err := it.Error(); err != nil {
		return fmt.Errorf("engine: scan: %w", err)
	}
	return nil
}

// MVCCCount counts the live keys in [start, end) at rev without copying them.
func MVCCCount(r Reader, start, end []byte, rev Revision) (int64, error) {
	var n int64
	err := MVCCScan(r, start, end, rev, ScanOptions{KeysOnly: true}, func(KeyValue) bool {
		n++
		return true
	})
	return n, err
}

// MVCCVersions visits every version (tombstones included) of the user keys in
// [start, end) whose revision is in [minRev, maxRev], in key order and newest
// first within a key. It serves history reads (watch catch-up).
func MVCCVersions(r Reader, start, end []byte, minRev, maxRev Revision, fn func(KeyValue) bool) error {
	it, err := r.NewIter(DataSpan(start, end))
	if err != nil {
		return err
	}
	defer it.Close()
	valid := it.SeekGE(DataKey(start, maxRev))
	for valid {
		prefix, krev, err := DecodeKey(it.Key())
		if err != nil {
			return err
		}
		switch {
		case krev == 0:
			valid = it.Next()
		case krev > maxRev:
			valid = it.SeekGE(EncodeKey(nil, prefix, maxRev))
		case krev < minRev:
			valid = it.NextPrefix()
		default:
			kv, err := decodeKV(it, false)
			if err != nil {
				return err
			}
			if !fn(kv) {
				return nil
			}
			valid = it.Next()
		}
	}
	if err := it.Error(); err != nil {
		return fmt.Errorf("engine: versions scan: %w", err)
	}
	return nil
}

// CompactStats reports what MVCCCompact removed.
type CompactStats struct {
	KeysSeen        int64
	VersionsDeleted int64
}

// MVCCCompact drops the history of [start, end) below rev, as etcd's
// compaction does: for each key, the newest version at or below rev is kept
// unless it is a tombstone, and every older version is deleted. It streams
// through the span and commits a batch every batchSize deletions, so memory is
// bounded whatever the span's size. Versions above rev are untouched. Reads
// below rev must be refused by the caller before this runs: the deletion is
// not atomic across batches. Every state between two batches reads, at and
// above rev, as the state before: a tombstone is deleted only after every
// version it hides (deleted first, it would bring the key back to life until
// the next batch, or for good if the process stopped in between).
func (e *Engine) MVCCCompact(start, end []byte, rev Revision, batchSize int) (CompactStats, error) {
	return e.MVCCCompactWithProgress(start, end, rev, batchSize, nil)
}

// MVCCCompactWithProgress is MVCCCompact, calling progress (if not nil) with
// the deletions of each batch once it is committed, so that a long
// compaction reports its progress as it goes.
func (e *Engine) MVCCCompactWithProgress(start, end []byte, rev Revision, batchSize int, progress func(deleted int)) (CompactStats, error) {
	var st CompactStats
	if batchSize <= 0 {
		batchSize = 1024
	}
	snap := e.NewSnapshot()
	defer snap.Close()
	it, err := snap.NewIter(DataSpan(start, end))
	if err != nil {
		return st, err
	}
	defer it.Close()
	b := e.NewWriteBatch()
	defer func() { b.Close() }()
	flush := func(force bool) error {
		if b.Empty() || (!force && int(b.Count()) < batchSize) {
			return nil
		}
		n := int(b.Count())
		if err := b.Commit(false); err != nil {
			return err
		}
		if progress != nil {
			progress(n)
		}
		b.Close()
		b = e.NewWriteBatch()
		return nil
	}
	del := func(key []byte) error {
		if err := b.Delete(key); err != nil {
			return err
		}
		st.VersionsDeleted++
		return flush(false)
	}
	var lastPrefix []byte
	keptOrDropped := false // for lastPrefix: the version at or below rev was handled
	// tombstone is lastPrefix's tombstone to delete once the versions it
	// hides are (nil: none).
	var tombstone []byte
	for valid := it.First(); valid; valid = it.Next() {
		prefix, krev, err := DecodeKey(it.Key())
		if err != nil {
			return st, err
		}
		if krev == 0 {
			continue
		}
		if lastPrefix == nil || string(prefix) != string(lastPrefix) {
			if tombstone != nil {
				if err := del(tombstone); err != nil {
					return st, err
				}
				tombstone = nil
			}
			lastPrefix = append(lastPrefix[:0], prefix...)
			keptOrDropped = false
			st.KeysSeen++
		}
		if krev > rev {
			continue
		}
		if keptOrDropped {
			if err := del(it.Key()); err != nil {
				return st, err
			}
			continue
		}
		keptOrDropped = true
		raw, err := it.Value()
		if err != nil {
			return st, fmt.Errorf("engine: compact: %w", err)
		}
		v, err := DecodeValue(raw, true)
		if err != nil {
			return st, err
		}
		if v.Tombstone {
			tombstone = append([]byte(nil), it.Key()...)
		}
	}
	if err := it.Error(); err != nil {
		return st, fmt.Errorf("engine: compact: %w", err)
	}
	if tombstone != nil {
		if err := del(tombstone); err != nil {
			return st, err
		}
	}
	return st, flush(true)
}
