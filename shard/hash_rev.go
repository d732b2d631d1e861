package shard

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/protobuf/proto"

	"github.com/tesseradb/tessera/engine"
	"github.com/tesseradb/tessera/proto/tesserapb"
	"github.com/tesseradb/tessera/raftgroup"
)

// readDescAndState reads a range's descriptor and range state from rd.
func readDescAndState(rd engine.Reader, group raftgroup.GroupID) (*tesserapb.RangeDescriptor, rangeState, error) {
	g := uint64(group)
	db, err := rd.Get(engine.LocalGroupKey(g, engine.KindDescriptor))
	if err != nil {
		return nil, rangeState{}, fmt.Errorf("shard: range %d: read descriptor: %w", g, err)
	}
	desc := &tesserapb.RangeDescriptor{}
	if err := proto.Unmarshal(db, desc); err != nil {
		return nil, rangeState{}, fmt.Errorf("shard: range %d: decode descriptor: %w", g, err)
	}
	sb, err := rd.Get(engine.LocalGroupKey(g, engine.KindRangeState))
	switch {
	case errors.Is(err, engine.ErrNotFound):
		return desc, rangeState{}, nil
	case err != nil:
		return nil, rangeState{}, fmt.Errorf("shard: range %d: read range state: %w", g, err)
	}
	st, err := decodeRangeState(sb)
	if err != nil {
		return nil, rangeState{}, fmt.Errorf("shard: range %d: %w", g, err)
	}
	return desc, st, nil
}

// HashAt hashes the range's state at revision rev: every key live at rev
// with its value, create and mod revisions, version and lease, in key order
// (CRC-32 Castagnoli, as etcd's HashKV). The state at a revision does not
// change once the range is resolved there, so replicas agree whatever they
// applied since and whatever compaction at or below rev they ran;
// corruption of the data shows as a difference (etcdctl endpoint hashkv,
// the periodic corruption check).
//
// With minApplied 0 the replica must lead the range: it resolves rev (no
// write at or below it can still appear) and reports its applied index
// after that. A follower is given that index as minApplied and waits until
// it has applied that far, which covers every write at or below rev.
func (r *Replica) HashAt(ctx context.Context, rev engine.Revision, minApplied uint64) (HashResult, error) {
	if minApplied == 0 {
		if err := r.resolve(ctx, rev); err != nil {
			return HashResult{}, err
		}
	} else {
		r.mu.Lock()
		err := r.waitLocked(ctx, func() bool { return r.mu.applied >= minApplied })
		r.mu.Unlock()
		if err != nil {
			return HashResult{}, fmt.Errorf("shard: range %d: hash at %d: wait for applied index %d: %w", r.group, rev, minApplied, err)
		}
	}
	snap := r.cfg.Engine.NewSnapshot()
	defer snap.Close()
	return HashStateAt(ctx, snap, r.group, rev)
}

// HashStateAt is HashAt on an engine reader (an engine snapshot).
func HashStateAt(ctx context.Context, rd engine.Reader, group raftgroup.GroupID, rev engine.Revision) (HashResult, error) {
	res := HashResult{Revision: rev}
	var err error
	if res.AppliedIndex, err = raftgroup.AppliedIndex(rd, group); err != nil {
		return res, err
	}
	desc, st, err := readDescAndState(rd, group)
	if err != nil {
		return res, err
	}
	res.CompactRevision = st.compact
	if rev < st.compact {
		return res, rpctypes.ErrGRPCCompacted
	}
	h := crc32.New(castagnoli)
	writeField(h, desc.GetStartKey())
	writeField(h, desc.GetEndKey())
	var num [8 * 4]byte
	n := 0
	var cerr error
	err = engine.MVCCScan(rd, desc.GetStartKey(), desc.GetEndKey(), rev, engine.ScanOptions{}, func(kv engine.KeyValue) bool {
		if n++; n%hashCheckEvery == 0 {
			if cerr = ctx.Err(); cerr != nil {
				return false
			}
		}
		writeField(h, kv.Key)
		binary.BigEndian.PutUint64(num[0:], uint64(kv.CreateRev))
		binary.BigEndian.PutUint64(num[8:], uint64(kv.ModRev))
		binary.BigEndian.PutUint64(num[16:], uint64(kv.Version))
		binary.BigEndian.PutUint64(num[24:], uint64(kv.Lease))
		_, _ = h.Write(num[:])
		writeField(h, kv.Data)
		return true
	})
	if err == nil {
		err = cerr
	}
	if err != nil {
		return res, fmt.Errorf("shard: range %d: hash at %d: %w", group, rev, err)
	}
	res.Hash = h.Sum32()
	return res, nil
}
