package raftgroup

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/tesseradb/tessera/engine"
)

// ErrTombstoned is returned by CreateGroup for a replica id the group's
// tombstone rules out.
var ErrTombstoned = errors.New("raftgroup: replica id is below the group's tombstone")

// A group tombstone is the lowest replica id this node may ever host again
// for a group (CockroachDB's RangeTombstone.NextReplicaID). RemoveGroup
// writes it; CreateGroup refuses a lower replica id, and a message addressed
// to a lower one is dropped, so an old incarnation of a replica is never
// recreated by a stray message. It is a store-local key outside the group's
// local span: clearing a destroyed replica's keys (the Store's job) leaves it.

func tombstoneKey(id GroupID) []byte {
	return engine.StoreKey("raft-tombstone/" + string(binary.BigEndian.AppendUint64(nil, uint64(id))))
}

// ReadTombstone returns group id's tombstone in eng (0: none).
func ReadTombstone(eng engine.Reader, id GroupID) (ReplicaID, error) {
	v, err := eng.Get(tombstoneKey(id))
	switch {
	case errors.Is(err, engine.ErrNotFound):
		return 0, nil
	case err != nil:
		return 0, fmt.Errorf("raftgroup: read tombstone of %s: %w", id, err)
	case len(v) != 8:
		return 0, fmt.Errorf("raftgroup: tombstone of %s: %d bytes, want 8", id, len(v))
	}
	return ReplicaID(binary.BigEndian.Uint64(v)), nil
}

// tombstoneLocked returns group id's tombstone, cached after the first read.
// h.mu must be held for writing.
func (h *Host) tombstoneLocked(id GroupID) (ReplicaID, error) {
	if ts, ok := h.mu.tombstones[id]; ok {
		return ts, nil
	}
	ts, err := ReadTombstone(h.eng, id)
	if err != nil {
		return 0, err
	}
	h.mu.tombstones[id] = ts
	return ts, nil
}

// Tombstone returns group id's tombstone (0: none).
func (h *Host) Tombstone(id GroupID) (ReplicaID, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.tombstoneLocked(id)
}

// RemoveGroup stops hosting group id, deletes its raft state (hard state,
// log, truncated and applied state) and raises the group's tombstone to at
// least tombstone (the lowest replica id this node may host again; pass the
// removed replica's id + 1, or the descriptor's next_replica_id), all in one
// synced batch. Deleting the replica's data and state-machine keys is the
// caller's (the Store's) job; the tombstone survives it. It must not be
// called from a StateMachine callback (it waits for the worker holding the
// group).
func (h *Host) RemoveGroup(id GroupID, tombstone ReplicaID) error {
	h.mu.Lock()
	g, ok := h.mu.groups[id]
	if !ok {
		h.mu.Unlock()
		return fmt.Errorf("%w: %s", ErrGroupNotFound, id)
	}
	old, err := h.tombstoneLocked(id)
	if err != nil {
		h.mu.Unlock()
		return err
	}
	ts := max(old, tombstone, g.self+1)
	// The tombstone holds in memory from the moment the group leaves the
	// map, so a message arriving meanwhile cannot recreate the replica.
	delete(h.mu.groups, id)
	h.mu.tombstones[id] = ts
	h.metrics.groups.Set(float64(len(h.mu.groups)))
	h.mu.Unlock()
	g.mu.Lock()
	g.mu.removed = true
	g.mu.Unlock()
	// A worker that took the group before it left the map may still be
	// persisting its Ready; its writes must land before the deletes.
	h.sched.waitIdle(id)
	h.sched.remove(id)
	g.reads.close()

	b := h.eng.NewWriteBatch()
	defer b.Close()
	for _, span := range []engine.Span{
		engine.LocalGroupUnreplicatedSpan(uint64(id)),
		engine.LocalGroupKindSpan(uint64(id), engine.KindAppliedState),
	} {
		if err := b.DeleteRange(span); err != nil {
			return fmt.Errorf("raftgroup: remove %s: %w", id, err)
		}
	}
	if err := b.Set(tombstoneKey(id), binary.BigEndian.AppendUint64(nil, uint64(ts))); err != nil {
		return fmt.Errorf("raftgroup: remove %s: %w", id, err)
	}
	if err := b.Commit(true); err != nil {
		return fmt.Errorf("raftgroup: remove %s: %w", id, err)
	}
	h.log.Info("raft group removed", "group", id, "replica_id", g.self, "tombstone", ts)
	return nil
}
