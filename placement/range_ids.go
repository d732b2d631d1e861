package placement

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/tesseradb/tessera/engine"
	"github.com/tesseradb/tessera/proto/tesserapb"
	"github.com/tesseradb/tessera/raftgroup"
)

// Range ids.
//
// Every range id is handed out once by the meta group: the next free id is
// replicated state (one system key), raised by an allocate command in the
// meta log, so two splits never get the same id and an id is never reused,
// whatever the leader changes. Before the first allocation the next id is
// one above the highest id of the bootstrap layout (the meta group and the
// initial ranges).

var keyNextRangeID = engine.SystemKey("meta/next-range-id")

// maxAllocateRangeIDs bounds one allocation (a split needs one id).
const maxAllocateRangeIDs = 1024

// nextRangeIDLocked returns the next free range id as applied.
func (m *Meta) nextRangeIDLocked(r engine.Reader) (uint64, error) {
	v, err := r.Get(keyNextRangeID)
	switch {
	case err == nil && len(v) == 8:
		return binary.BigEndian.Uint64(v), nil
	case err == nil:
		return 0, errors.New("placement: corrupt next range id")
	case !errors.Is(err, engine.ErrNotFound):
		return 0, fmt.Errorf("placement: read next range id: %w", err)
	}
	next := uint64(MetaRangeID) + 1
	if b := m.mu.bootstrap; b != nil {
		for _, d := range b.GetRanges() {
			next = max(next, d.GetRangeId()+1)
		}
	}
	return next, nil
}

// applyAllocateRangeIDsLocked allocates n ids and returns the first.
func (m *Meta) applyAllocateRangeIDsLocked(b *engine.Batch, n uint32) (uint64, error) {
	first, err := m.nextRangeIDLocked(b)
	if err != nil {
		return 0, err
	}
	if err := b.Set(keyNextRangeID, binary.BigEndian.AppendUint64(nil, first+uint64(n))); err != nil {
		return 0, fmt.Errorf("placement: write next range id: %w", err)
	}
	return first, nil
}

// AllocateRangeIDs allocates n (1..1024) new range ids through the meta
// log and returns the first; only the meta leader serves it
// (raftgroup.ErrNotLeader otherwise).
func (m *Meta) AllocateRangeIDs(ctx context.Context, n uint32) (uint64, error) {
	if n == 0 || n > maxAllocateRangeIDs {
		return 0, fmt.Errorf("placement: allocate %d range ids: want 1..%d", n, maxAllocateRangeIDs)
	}
	m.mu.Lock()
	leader := m.mu.isLeader
	m.mu.Unlock()
	if !leader {
		return 0, raftgroup.ErrNotLeader
	}
	res, err := m.propose(ctx, &tesserapb.MetaCommand{AllocateRangeIds: n})
	if err != nil {
		return 0, fmt.Errorf("placement: allocate range ids: %w", err)
	}
	if res.firstRangeID == 0 {
		return 0, errors.New("placement: allocate range ids: no id allocated")
	}
	return res.firstRangeID, nil
}
