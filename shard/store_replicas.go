package shard

import (
	"errors"
	"fmt"
	"sync"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/tesseradb/tessera/engine"
	"github.com/tesseradb/tessera/proto/tesserapb"
	"github.com/tesseradb/tessera/raftgroup"
)

// Replicas arriving and leaving through replica changes.
//
// Arriving: the raft host creates a group for an unknown range when its
// leader talks to it and no tombstone forbids the replica id
// (raftgroup.Config.NewReplica = Store.NewReplica). The Store answers with
// an uninitialized replica: it holds no descriptor and serves nothing
// until a snapshot brings the range's state; only then is a Replica opened
// and listed (so a router never finds a replica without a span). The
// choice (create on the first message, as CockroachDB, rather than on the
// snapshot only) keeps raft's own flow: the leader's first MsgApp is
// refused by the empty log, which makes raft send the snapshot; no message
// has to be special-cased. An uninitialized replica never votes in a way
// that matters: it is a learner until promoted, and it has no log.
//
// Leaving: a replica that applies a change removing its own node, or that
// is told by its range's leader that a newer descriptor leaves it out
// (GCReplica), is destroyed: its raft group stops, its state is deleted and
// a tombstone (the descriptor's next_replica_id, above every id this node's
// replica had) keeps a late message from recreating it.

// NewReplica implements raftgroup.Config.NewReplica: an uninitialized
// replica of range id, replica self, that opens itself when its first
// snapshot applied. It refuses ranges destroyed here (tombstone) and
// ranges already open.
func (s *Store) NewReplica(id raftgroup.GroupID, self raftgroup.ReplicaID) (raftgroup.StateMachine, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.mu.closed {
		return nil, false
	}
	if _, ok := s.mu.replicas[id]; ok {
		return nil, false
	}
	// The engine already holds the range (a split's right half this node
	// applied and has not opened yet, or whose open a crash skipped): it
	// is opened from there (splitApplied, or Start after a restart), never
	// as an uninitialized replica, which would refuse the log entries the
	// split's initial state expects (a storage failure).
	if d, err := ReadDescriptor(s.cfg.Engine, id); err != nil || d != nil {
		return nil, false
	}
	return &uninitReplica{s: s, id: id, self: self}, true
}

// uninitReplica is the state machine of a replica created by a message,
// until its first snapshot; then it forwards to the opened Replica.
type uninitReplica struct {
	s    *Store
	id   raftgroup.GroupID
	self raftgroup.ReplicaID

	mu  sync.Mutex
	rep *Replica
}

func (u *uninitReplica) replica() *Replica {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.rep
}

// DataSpan implements raftgroup.StateMachine (empty until initialized: an
// uninitialized replica never sends a snapshot).
func (u *uninitReplica) DataSpan() engine.Span {
	if r := u.replica(); r != nil {
		return r.DataSpan()
	}
	return engine.Span{}
}

// Apply implements raftgroup.StateMachine.
func (u *uninitReplica) Apply(b *engine.Batch, ents []*raftpb.Entry) error {
	if r := u.replica(); r != nil {
		return r.Apply(b, ents)
	}
	for _, e := range ents {
		if len(e.GetData()) > 0 {
			return fmt.Errorf("shard: range %d: entry %d to apply before the replica's first snapshot", u.id, e.GetIndex())
		}
	}
	return nil
}

// Applied implements raftgroup.StateMachine.
func (u *uninitReplica) Applied(index uint64) {
	if r := u.replica(); r != nil {
		r.Applied(index)
	}
}

// LeaderChanged implements raftgroup.StateMachine.
func (u *uninitReplica) LeaderChanged(leader raftgroup.NodeID, term uint64, isLeader bool) {
	if r := u.replica(); r != nil {
		r.LeaderChanged(leader, term, isLeader)
	}
}

// SnapshotApplied implements raftgroup.StateMachine: the first snapshot
// brought the descriptor; the replica opens and the Store lists it. A
// snapshot whose descriptor does not list this node with this replica id
// is kept out of the Store (the range's leader moved on; GC removes it).
func (u *uninitReplica) SnapshotApplied(index uint64) error {
	if r := u.replica(); r != nil {
		return r.SnapshotApplied(index)
	}
	s := u.s
	desc, err := ReadDescriptor(s.cfg.Engine, u.id)
	if err != nil {
		return err
	}
	if desc == nil {
		return fmt.Errorf("shard: range %d: snapshot at %d brought no descriptor", u.id, index)
	}
	if self := ReplicaOn(desc, s.cfg.Replica.NodeID); self == nil || raftgroup.ReplicaID(self.GetReplicaId()) != u.self {
		s.log.Warn("snapshot's descriptor does not list this replica", "range", uint64(u.id), "replica", uint64(u.self))
		return nil
	}
	rep, err := s.newReplica(u.id)
	if err != nil {
		return err
	}
	s.mu.Lock()
	if s.mu.closed {
		s.mu.Unlock()
		rep.Close()
		return nil
	}
	s.mu.replicas[u.id] = rep
	s.mu.Unlock()
	u.mu.Lock()
	u.rep = rep
	u.mu.Unlock()
	s.log.Debug("replica initialized by snapshot", "range", uint64(u.id), "replica", uint64(u.self), "index", index)
	return rep.SnapshotApplied(index)
}

// newReplica opens a Replica of range id with the Store's callbacks.
func (s *Store) newReplica(id raftgroup.GroupID) (*Replica, error) {
	cfg := s.cfg.Replica
	cfg.Engine, cfg.Raft = s.cfg.Engine, s.cfg.Host
	cfg.OnSplit = s.splitApplied
	cfg.OnMerge = s.mergeApplied
	cfg.OnRemoved = func(d *tesserapb.RangeDescriptor) { s.removedApplied(id, d) }
	rep, err := Open(cfg, id)
	if err != nil {
		return nil, fmt.Errorf("shard: store: open range %d: %w", id, err)
	}
	return rep, nil
}

// removedApplied destroys a replica whose own removal it applied (called
// from its apply callback: the work runs on a goroutine the Store owns, as
// a merge's destruction).
func (s *Store) removedApplied(id raftgroup.GroupID, desc *tesserapb.RangeDescriptor) {
	s.mu.Lock()
	if s.mu.closed || s.mu.replicas[id] == nil || s.mu.removing[id] {
		s.mu.Unlock()
		return
	}
	s.mu.removing[id] = true
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		if err := s.destroyReplica(id, desc); err != nil {
			s.log.Error("could not destroy a removed replica", "range", uint64(id), "err", err)
		}
	}()
}

// GCReplica destroys the local replica of a range when desc (the range's
// descriptor as its leader or the directory knows it) is newer than the
// local one and does not list this node. It reports whether it destroyed
// one. This is how a replica that missed the commit of its own removal (the
// leader stops talking to it at once) learns it.
func (s *Store) GCReplica(id raftgroup.GroupID, desc *tesserapb.RangeDescriptor) (bool, error) {
	rep := s.Replica(uint64(id))
	if rep == nil {
		return false, nil
	}
	local := rep.Descriptor()
	if desc.GetGeneration() <= local.GetGeneration() || HasReplicaOn(desc, s.cfg.Replica.NodeID) {
		return false, nil
	}
	s.mu.Lock()
	if s.mu.removing[id] {
		s.mu.Unlock()
		return false, nil
	}
	s.mu.removing[id] = true
	s.mu.Unlock()
	if err := s.destroyReplica(id, desc); err != nil {
		return false, err
	}
	return true, nil
}

// destroyReplica stops a replica's raft group with a tombstone above every
// replica id desc (or the local descriptor) gave out, closes it and deletes
// its state: its data span, then its local keys.
func (s *Store) destroyReplica(id raftgroup.GroupID, desc *tesserapb.RangeDescriptor) error {
	defer func() {
		s.mu.Lock()
		delete(s.mu.removing, id)
		s.mu.Unlock()
	}()
	s.mu.Lock()
	rep := s.mu.replicas[id]
	delete(s.mu.replicas, id)
	s.mu.Unlock()
	if rep == nil {
		return nil
	}
	local := rep.Descriptor()
	tomb := raftgroup.ReplicaID(max(desc.GetNextReplicaId(), local.GetNextReplicaId()))
	if self := ReplicaOn(local, s.cfg.Replica.NodeID); self != nil {
		tomb = max(tomb, raftgroup.ReplicaID(self.GetReplicaId()+1))
	}
	span := rep.DataSpan()
	if err := s.cfg.Host.RemoveGroup(id, tomb); err != nil && !errors.Is(err, raftgroup.ErrGroupNotFound) {
		return fmt.Errorf("shard: store: stop raft group of range %d: %w", id, err)
	}
	rep.Close()
	b := s.cfg.Engine.NewWriteBatch()
	defer b.Close()
	if err := b.DeleteRange(span); err != nil {
		return fmt.Errorf("shard: store: clear data of range %d: %w", id, err)
	}
	if err := b.DeleteRange(engine.LocalGroupSpan(uint64(id))); err != nil {
		return fmt.Errorf("shard: store: clear state of range %d: %w", id, err)
	}
	if err := b.Commit(false); err != nil {
		return fmt.Errorf("shard: store: destroy range %d: %w", id, err)
	}
	s.log.Debug("destroyed a removed replica", "range", uint64(id), "tombstone", uint64(tomb))
	return nil
}

// finishDestroyLocked removes what a crash left of a destroyed replica: its
// raft group is tombstoned but its descriptor and data are still there.
func (s *Store) finishDestroyLocked(id raftgroup.GroupID, desc *tesserapb.RangeDescriptor) error {
	b := s.cfg.Engine.NewWriteBatch()
	defer b.Close()
	if err := b.DeleteRange(engine.DataSpan(desc.GetStartKey(), desc.GetEndKey())); err != nil {
		return fmt.Errorf("shard: store: clear data of range %d: %w", id, err)
	}
	if err := b.DeleteRange(engine.LocalGroupSpan(uint64(id))); err != nil {
		return fmt.Errorf("shard: store: clear state of range %d: %w", id, err)
	}
	if err := b.Commit(false); err != nil {
		return fmt.Errorf("shard: store: finish destroying range %d: %w", id, err)
	}
	s.log.Info("finished destroying a removed replica", "range", uint64(id))
	return nil
}
