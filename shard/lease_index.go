package shard

import (
	"bytes"
	"fmt"
	"slices"

	"github.com/tesseradb/tessera/engine"
)

// The lease index of a range.
//
// For every live key of the range attached to a lease the range keeps a
// replicated local key (engine.KindLeaseKey: lease id, user key) with an
// empty value. It is written at apply, in the batch of the command that
// changed the key, from the key's live version before and after the command:
// a put with a lease adds (lease, key); a put that replaces a leased version
// with another lease or none, a delete and a revocation remove it. It is
// thus a function of the live versions alone, identical on every replica at
// the same applied index, carried in raft snapshots with the other
// replicated local keys, and untouched by compaction (which drops no live
// version). It is not hashed (see HashState): the MVCC versions it is
// derived from are.
//
// A revocation reads the index of each lease instead of scanning the range,
// and TimeToLive lists a lease's keys from it. An index entry whose key's
// live version no longer names the lease is skipped by both (it cannot
// arise from apply; the check keeps a stale entry harmless).

// updateLeaseIndex brings the lease index up to date for the user keys a
// command at rev wrote (every version it wrote is at rev, so the live
// version before it is the one at rev-1).
func updateLeaseIndex(b *engine.Batch, group uint64, written [][]byte, rev engine.Revision) error {
	keys := written
	if len(keys) > 1 {
		keys = slices.Clone(keys)
		slices.SortFunc(keys, bytes.Compare)
		keys = slices.CompactFunc(keys, bytes.Equal)
	}
	for _, k := range keys {
		before, hadBefore, err := engine.MVCCGet(b, k, rev-1)
		if err != nil {
			return fmt.Errorf("shard: range %d: lease index: read %q@%d: %w", group, k, rev-1, err)
		}
		after, hasAfter, err := engine.MVCCGet(b, k, rev)
		if err != nil {
			return fmt.Errorf("shard: range %d: lease index: read %q@%d: %w", group, k, rev, err)
		}
		var oldLease, newLease int64
		if hadBefore {
			oldLease = before.Lease
		}
		if hasAfter {
			newLease = after.Lease
		}
		if oldLease == newLease {
			continue
		}
		if oldLease != 0 {
			if err := b.Delete(engine.LeaseKeyKey(group, oldLease, k)); err != nil {
				return fmt.Errorf("shard: range %d: lease index: %w", group, err)
			}
		}
		if newLease != 0 {
			if err := b.Set(engine.LeaseKeyKey(group, newLease, k), nil); err != nil {
				return fmt.Errorf("shard: range %d: lease index: %w", group, err)
			}
		}
	}
	return nil
}

// leaseKeys returns, in key order, the live keys of the range attached to
// lease at rev as the index lists them (checked against their versions).
func leaseKeys(r engine.Reader, group uint64, lease int64, rev engine.Revision) ([][]byte, error) {
	it, err := r.NewIter(engine.LeaseKeySpan(group, lease))
	if err != nil {
		return nil, fmt.Errorf("shard: range %d: lease index: %w", group, err)
	}
	var cand [][]byte
	for ok := it.First(); ok; ok = it.Next() {
		k, err := engine.UserKeyOfLeaseKey(it.Key())
		if err != nil {
			it.Close()
			return nil, fmt.Errorf("shard: range %d: %w", group, err)
		}
		cand = append(cand, bytes.Clone(k))
	}
	if err := it.Error(); err != nil {
		it.Close()
		return nil, fmt.Errorf("shard: range %d: lease index: %w", group, err)
	}
	if err := it.Close(); err != nil {
		return nil, fmt.Errorf("shard: range %d: lease index: %w", group, err)
	}
	keys := cand[:0]
	for _, k := range cand {
		kv, ok, err := engine.MVCCGet(r, k, rev)
		if err != nil {
			return nil, fmt.Errorf("shard: range %d: lease index: read %q@%d: %w", group, k, rev, err)
		}
		if ok && kv.Lease == lease {
			keys = append(keys, k)
		}
	}
	return keys, nil
}

// leasesKeys returns the live keys of the range attached to any of leases
// at rev, as the index lists them (checked against their versions), lease
// by lease in id order. It reads the index through one iterator, seeking
// to each lease: a revocation names up to RevokeBatch leases, most of them
// with no key on this range.
func leasesKeys(r engine.Reader, group uint64, leases []int64, rev engine.Revision) ([][]byte, error) {
	ids := slices.Clone(leases)
	slices.Sort(ids)
	ids = slices.Compact(ids)
	it, err := r.NewIter(engine.LocalGroupKindSpan(group, engine.KindLeaseKey))
	if err != nil {
		return nil, fmt.Errorf("shard: range %d: lease index: %w", group, err)
	}
	type cand struct {
		lease int64
		key   []byte
	}
	var cands []cand
	for _, id := range ids {
		span := engine.LeaseKeySpan(group, id)
		for ok := it.SeekGE(span.Start); ok && bytes.Compare(it.Key(), span.End) < 0; ok = it.Next() {
			k, err := engine.UserKeyOfLeaseKey(it.Key())
			if err != nil {
				it.Close()
				return nil, fmt.Errorf("shard: range %d: %w", group, err)
			}
			cands = append(cands, cand{id, bytes.Clone(k)})
		}
	}
	if err := it.Error(); err != nil {
		it.Close()
		return nil, fmt.Errorf("shard: range %d: lease index: %w", group, err)
	}
	if err := it.Close(); err != nil {
		return nil, fmt.Errorf("shard: range %d: lease index: %w", group, err)
	}
	var keys [][]byte
	for _, c := range cands {
		kv, ok, err := engine.MVCCGet(r, c.key, rev)
		if err != nil {
			return nil, fmt.Errorf("shard: range %d: lease index: read %q@%d: %w", group, c.key, rev, err)
		}
		if ok && kv.Lease == c.lease {
			keys = append(keys, c.key)
		}
	}
	return keys, nil
}
