package shard

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"

	"google.golang.org/protobuf/proto"

	"github.com/tesseradb/tessera/engine"
	"github.com/tesseradb/tessera/proto/tesserapb"
	"github.com/tesseradb/tessera/raftgroup"
)

// HashResult is a content hash of a replica's replicated state, with the
// applied index and revisions it was computed at.
type HashResult struct {
	// AppliedIndex is the raft index the hashed state is exactly at.
	AppliedIndex uint64
	// Hash is a CRC-32 (Castagnoli, as etcd's HashKV) of the descriptor,
	// the range state and the MVCC history the range still serves.
	Hash uint32
	// Revision is the highest revision applied; CompactRevision the
	// range's compaction revision.
	Revision        engine.Revision
	CompactRevision engine.Revision
}

// hashCheckEvery is how many versions are hashed between two checks of the
// context.
const hashCheckEvery = 4096

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Hash computes the content hash of this replica from one engine snapshot
// (see HashState). Replicas of a range that report the same applied index
// must report the same hash.
func (r *Replica) Hash(ctx context.Context) (HashResult, error) {
	r.mu.Lock()
	closed := r.mu.closed
	r.mu.Unlock()
	if closed {
		return HashResult{}, ErrReplicaClosed
	}
	snap := r.cfg.Engine.NewSnapshot()
	defer snap.Close()
	return HashState(ctx, snap, r.group)
}

// HashState hashes the replicated state of range group as rd holds it (an
// engine snapshot, so that the state and the applied index agree even while
// the range applies). What it hashes is what every replica holds at the
// same applied index:
//
//   - the range descriptor;
//   - the range state (compaction revision, highest applied revision);
//   - the MVCC versions of the descriptor's span as history reads see
//     them: every version above the compaction revision and, per key, the
//     newest version at or below it unless that is a tombstone.
//
// Versions below that are left out: physical compaction runs in the
// background after the compaction applied and may lag differently on each
// replica (it drops exactly those versions). The raft log and HardState
// (one replica's own) and local kinds this function does not know (the
// change log) are not hashed either.
func HashState(ctx context.Context, rd engine.Reader, group raftgroup.GroupID) (HashResult, error) {
	var res HashResult
	var err error
	if res.AppliedIndex, err = raftgroup.AppliedIndex(rd, group); err != nil {
		return res, err
	}
	h := crc32.New(castagnoli)

	g := uint64(group)
	db, err := rd.Get(engine.LocalGroupKey(g, engine.KindDescriptor))
	if err != nil {
		return res, fmt.Errorf("shard: range %d: hash: read descriptor: %w", g, err)
	}
	desc := &tesserapb.RangeDescriptor{}
	if err := proto.Unmarshal(db, desc); err != nil {
		return res, fmt.Errorf("shard: range %d: hash: decode descriptor: %w", g, err)
	}
	// Re-encoded deterministically: the bytes stored may come from another
	// node's encoder.
	canon, err := proto.MarshalOptions{Deterministic: true}.Marshal(desc)
	if err != nil {
		return res, fmt.Errorf("shard: range %d: hash: encode descriptor: %w", g, err)
	}
	writeField(h, canon)

	sb, err := rd.Get(engine.LocalGroupKey(g, engine.KindRangeState))
	switch {
	case errors.Is(err, engine.ErrNotFound):
		sb = nil // never written: nothing applied yet
	case err != nil:
		return res, fmt.Errorf("shard: range %d: hash: read range state: %w", g, err)
	default:
		st, err := decodeRangeState(sb)
		if err != nil {
			return res, fmt.Errorf("shard: range %d: hash: %w", g, err)
		}
		res.CompactRevision, res.Revision = st.compact, st.applied
	}
	writeField(h, sb)

	if err := hashHistory(ctx, h, rd, desc, res.CompactRevision); err != nil {
		return res, fmt.Errorf("shard: range %d: hash: %w", g, err)
	}
	res.Hash = h.Sum32()
	return res, nil
}

// hashHistory adds the versions of the descriptor's span that survive a
// compaction at compactRev (every version when it is 0) to h, in engine
// order: key, then newest first.
func hashHistory(ctx context.Context, h hash.Hash32, rd engine.Reader, desc *tesserapb.RangeDescriptor, compactRev engine.Revision) error {
	it, err := rd.NewIter(engine.DataSpan(desc.GetStartKey(), desc.GetEndKey()))
	if err != nil {
		return err
	}
	defer it.Close()
	var revBuf [8]byte
	n := 0
	for valid := it.First(); valid; {
		if n++; n%hashCheckEvery == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		key := it.Key()
		prefix, rev, err := engine.DecodeKey(key)
		if err != nil {
			return err
		}
		if rev == 0 {
			valid = it.Next()
			continue
		}
		raw, err := it.Value()
		if err != nil {
			return fmt.Errorf("read %q: %w", key, err)
		}
		atOrBelow := compactRev > 0 && rev <= compactRev
		if atOrBelow {
			// The newest version at or below the compaction revision: what
			// compaction keeps of the key's past, unless it is a deletion.
			v, err := engine.DecodeValue(raw, true)
			if err != nil {
				return fmt.Errorf("decode %q: %w", key, err)
			}
			if v.Tombstone {
				valid = it.NextPrefix()
				continue
			}
		}
		writeField(h, prefix)
		binary.BigEndian.PutUint64(revBuf[:], uint64(rev))
		_, _ = h.Write(revBuf[:])
		writeField(h, raw)
		if atOrBelow {
			// Older versions of this key may or may not have been dropped
			// yet: skip them.
			valid = it.NextPrefix()
		} else {
			valid = it.Next()
		}
	}
	return it.Error()
}

// writeField writes a length-prefixed field, so that fields cannot run into
// one another.
func writeField(h hash.Hash32, b []byte) {
	var lb [binary.MaxVarintLen64]byte
	_, _ = h.Write(lb[:binary.PutUvarint(lb[:], uint64(len(b)))])
	_, _ = h.Write(b)
}
