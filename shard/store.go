package shard

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"

	"google.golang.org/protobuf/proto"

	"github.com/tesseradb/tessera/engine"
	"github.com/tesseradb/tessera/proto/tesserapb"
	"github.com/tesseradb/tessera/raftgroup"
)

// StoreHost is what a Store needs from the node's raft host.
type StoreHost interface {
	RaftHost
	// CreateGroup starts hosting replica self of a group with its
	// persisted raft state; peers maps the group's replicas to nodes.
	CreateGroup(id raftgroup.GroupID, self raftgroup.ReplicaID, peers []raftgroup.Peer, sm raftgroup.StateMachine) error
	// RemoveGroup stops hosting a group, deletes its raft state and
	// tombstones replica ids below tombstone.
	RemoveGroup(id raftgroup.GroupID, tombstone raftgroup.ReplicaID) error
}

var _ StoreHost = (*raftgroup.Host)(nil)

// StoreConfig configures a Store.
type StoreConfig struct {
	// Engine is the node's engine; Host its raft host.
	Engine *engine.Engine
	Host   StoreHost
	// Replica is the configuration every replica of the node gets (its
	// NodeID, Clock, Limits, Metrics, ...). Engine, Raft and OnSplit are
	// set by the Store.
	Replica Config
	// OnSplit, if set, is called after a split of a local replica applied
	// and the right half was opened (the node updates its router's cache).
	OnSplit func(SplitResult)
	// OnMerge, if set, is called after a merge into a local replica applied
	// and the right's replica was destroyed.
	OnMerge func(merged *tesserapb.RangeDescriptor)
	Knobs   *StoreKnobs
	Logger  *slog.Logger
}

// StoreKnobs are test hooks.
type StoreKnobs struct {
	// SkipSplitOpen, when it returns true, leaves the right half of a split
	// unopened after the split's batch committed: a crash test closes the
	// node there and checks that a restart finds the right half.
	SkipSplitOpen func(SplitResult) bool
}

// Validate checks the configuration.
func (c *StoreConfig) Validate() error {
	switch {
	case c.Engine == nil:
		return errors.New("shard: store: no engine")
	case c.Host == nil:
		return errors.New("shard: store: no raft host")
	case c.Replica.NodeID == 0:
		return errors.New("shard: store: no node id")
	}
	return nil
}

// Store owns the replicas of one node: it opens every replica whose
// descriptor is in the engine at start, creates the right half of every
// split a local replica applies, and closes them all at the end. It is safe
// for concurrent use; the router finds replicas through it.
//
// The engine is the truth: a replica exists on this node exactly when its
// descriptor (a replicated local key of its group) does, which the batch
// that bootstraps, splits (or, later, receives a snapshot of) the range
// writes atomically with the rest of its state. The cluster's bootstrap
// record is only the first layout.
type Store struct {
	cfg StoreConfig
	log *slog.Logger

	// wg tracks the destruction of merged replicas (mergeApplied).
	wg sync.WaitGroup

	mu struct {
		sync.RWMutex
		replicas map[raftgroup.GroupID]*Replica
		// retired: replicas of ranges merged away, closed, kept so that
		// requests for them learn where their keys went (until restart).
		retired map[raftgroup.GroupID]*Replica
		// removing: replicas being destroyed after their removal
		// (store_replicas.go).
		removing map[raftgroup.GroupID]bool
		closed   bool
	}
}

// NewStore returns a store with no replica open yet (Start opens them).
func NewStore(cfg StoreConfig) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Store{cfg: cfg, log: cfg.Logger}
	s.mu.replicas = make(map[raftgroup.GroupID]*Replica)
	s.mu.retired = make(map[raftgroup.GroupID]*Replica)
	s.mu.removing = make(map[raftgroup.GroupID]bool)
	return s, nil
}

// BootstrapRange writes the initial state of a range of the bootstrap
// layout on this node: its descriptor and its raft state. Every initial
// replica writes the same.
func BootstrapRange(eng *engine.Engine, d *tesserapb.RangeDescriptor) error {
	if err := WriteInitialState(eng, d); err != nil {
		return err
	}
	return raftgroup.Bootstrap(eng, raftgroup.GroupID(d.GetRangeId()), RaftVoters(d))
}

// Start opens every replica found in the engine and starts its raft group.
func (s *Store) Start() error {
	if err := s.collectTombstoned(); err != nil {
		return err
	}
	ids, err := LocalRanges(s.cfg.Engine)
	if err != nil {
		return err
	}
	for _, id := range ids {
		if err := s.open(id); err != nil {
			return err
		}
	}
	return nil
}

// LocalRanges lists the ranges with a descriptor in the engine, in id
// order: one seek per group.
func LocalRanges(eng *engine.Engine) ([]raftgroup.GroupID, error) {
	all := engine.Span{Start: engine.LocalGroupSpan(0).Start, End: engine.LocalGroupSpan(^uint64(0)).End}
	it, err := eng.NewIter(all)
	if err != nil {
		return nil, fmt.Errorf("shard: store: scan ranges: %w", err)
	}
	defer it.Close()
	var ids []raftgroup.GroupID
	for ok := it.First(); ok; {
		k := it.Key()
		if len(k) < 9 {
			return nil, fmt.Errorf("shard: store: malformed local key %q", k)
		}
		g := binary.BigEndian.Uint64(k[1:9])
		_, err := eng.Get(engine.LocalGroupKey(g, engine.KindDescriptor))
		switch {
		case err == nil:
			ids = append(ids, raftgroup.GroupID(g))
		case !errors.Is(err, engine.ErrNotFound):
			return nil, fmt.Errorf("shard: store: read descriptor of range %d: %w", g, err)
		}
		if g == ^uint64(0) {
			break
		}
		ok = it.SeekGE(engine.LocalGroupSpan(g + 1).Start)
	}
	if err := it.Error(); err != nil {
		return nil, fmt.Errorf("shard: store: scan ranges: %w", err)
	}
	return ids, nil
}

// open opens one replica from the engine and creates its raft group.
func (s *Store) open(id raftgroup.GroupID) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.closed {
		return ErrReplicaClosed
	}
	if _, ok := s.mu.replicas[id]; ok {
		return nil
	}
	rep, err := s.newReplica(id) // store_replicas.go
	if err != nil {
		return err
	}
	desc := rep.Descriptor()
	self := ReplicaOn(desc, s.cfg.Replica.NodeID)
	if self == nil {
		rep.Close()
		return fmt.Errorf("shard: store: range %d has no replica on node %d", id, s.cfg.Replica.NodeID)
	}
	if err := s.cfg.Host.CreateGroup(id, raftgroup.ReplicaID(self.GetReplicaId()), RaftPeers(desc), rep); err != nil {
		rep.Close()
		if errors.Is(err, raftgroup.ErrTombstoned) {
			// A crash in the middle of destroying a removed replica:
			// finish it (store_replicas.go).
			return s.finishDestroyLocked(id, desc)
		}
		return fmt.Errorf("shard: store: start raft group of range %d: %w", id, err)
	}
	s.mu.replicas[id] = rep
	return nil
}

// splitApplied opens the right half of a split a local replica applied
// (its batch committed).
func (s *Store) splitApplied(res SplitResult, trigger string) {
	CrashPoint(CrashSplitAfterApply)
	if k := s.cfg.Knobs; k != nil && k.SkipSplitOpen != nil && k.SkipSplitOpen(res) {
		return
	}
	id := raftgroup.GroupID(res.Right.GetRangeId())
	if err := s.open(id); err != nil {
		if errors.Is(err, ErrReplicaClosed) {
			return // shutting down: the next start opens it
		}
		// The split is durable; the right half is served after a restart.
		s.log.Error("could not open the right half of a split", "left", res.Left.GetRangeId(), "right", uint64(id), "err", err)
		return
	}
	s.log.Debug("opened the right half of a split", "left", res.Left.GetRangeId(), "right", uint64(id), "trigger", trigger)
	if s.cfg.OnSplit != nil {
		s.cfg.OnSplit(res)
	}
}

// Replica returns the local replica of a range, or nil (router.Replicas).
func (s *Store) Replica(rangeID uint64) *Replica {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if r := s.mu.replicas[raftgroup.GroupID(rangeID)]; r != nil {
		return r
	}
	return s.mu.retired[raftgroup.GroupID(rangeID)]
}

// Replicas returns the local replicas in range id order.
func (s *Store) Replicas() []*Replica {
	s.mu.RLock()
	out := make([]*Replica, 0, len(s.mu.replicas))
	for _, r := range s.mu.replicas {
		out = append(out, r)
	}
	s.mu.RUnlock()
	slices.SortFunc(out, func(a, b *Replica) int {
		switch {
		case a.group < b.group:
			return -1
		case a.group > b.group:
			return 1
		}
		return 0
	})
	return out
}

// Len returns the number of local replicas.
func (s *Store) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.mu.replicas)
}

// Close closes every replica (the raft host is stopped by its owner,
// before). Later splits open nothing.
func (s *Store) Close() {
	s.mu.Lock()
	s.mu.closed = true
	reps := make([]*Replica, 0, len(s.mu.replicas))
	for _, r := range s.mu.replicas {
		reps = append(reps, r)
	}
	s.mu.Unlock()
	s.wg.Wait()
	for _, r := range reps {
		r.Close()
	}
}

// ReadDescriptor reads a range's descriptor from a reader (nil, nil: none).
func ReadDescriptor(rd engine.Reader, id raftgroup.GroupID) (*tesserapb.RangeDescriptor, error) {
	v, err := rd.Get(engine.LocalGroupKey(uint64(id), engine.KindDescriptor))
	switch {
	case errors.Is(err, engine.ErrNotFound):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("shard: read descriptor of range %d: %w", id, err)
	}
	d := &tesserapb.RangeDescriptor{}
	if err := proto.Unmarshal(v, d); err != nil {
		return nil, fmt.Errorf("shard: decode descriptor of range %d: %w", id, err)
	}
	return d, nil
}

// mergeApplied destroys the replica of a range merged into a local one (the
// merge's batch committed: the right's replicated state is gone and its
// tombstone written): its raft group stops, the replica retires (it sends
// requests to the merged range), and its raft state is removed.
func (s *Store) mergeApplied(merged *tesserapb.RangeDescriptor, rightID uint64) {
	// Called from the left's apply callback: the raft host must not be
	// asked to remove a group from there (it waits for the worker that may
	// hold the right's group in this very round).
	CrashPoint(CrashMergeAfterApply)
	s.mu.Lock()
	if s.mu.closed {
		s.mu.Unlock()
		return
	}
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		s.destroyMerged(merged, rightID)
	}()
}

// destroyMerged is mergeApplied's work.
func (s *Store) destroyMerged(merged *tesserapb.RangeDescriptor, rightID uint64) {
	id := raftgroup.GroupID(rightID)
	s.mu.Lock()
	rep := s.mu.replicas[id]
	delete(s.mu.replicas, id)
	if rep != nil {
		s.mu.retired[id] = rep
	}
	s.mu.Unlock()
	var tomb raftgroup.ReplicaID
	if rep != nil {
		tomb = raftgroup.ReplicaID(rep.Descriptor().GetNextReplicaId())
	}
	if rep != nil {
		// Requests go to the merged range from now on.
		rep.retire(merged)
	}
	if err := s.cfg.Host.RemoveGroup(id, tomb); err != nil && !errors.Is(err, raftgroup.ErrGroupNotFound) {
		s.log.Error("could not stop the raft group of a merged range", "range", rightID, "err", err)
	}
	if err := s.deleteGroup(id); err != nil {
		// The tombstone is durable: the next start removes the rest.
		s.log.Error("could not remove a merged range's raft state", "range", rightID, "err", err)
	}
	s.log.Debug("destroyed the replica of a merged range", "range", rightID, "into", merged.GetRangeId())
	if s.cfg.OnMerge != nil {
		s.cfg.OnMerge(merged)
	}
}

// deleteGroup removes every local key of a group.
func (s *Store) deleteGroup(id raftgroup.GroupID) error {
	b := s.cfg.Engine.NewWriteBatch()
	defer b.Close()
	if err := b.DeleteRange(engine.LocalGroupSpan(uint64(id))); err != nil {
		return err
	}
	return b.Commit(false)
}

// tombstoneSpan covers every tombstone key.
func tombstoneSpan() engine.Span {
	start := tombstoneKey(0)
	start = start[:len(start)-21] // the prefix before the id and sentinel
	end := append(start[:len(start)-1:len(start)-1], '/'+1)
	return engine.Span{Start: start, End: end}
}

// collectTombstoned removes what is left of destroyed ranges (a crash
// between a merge's commit and the removal of the right's raft state, or
// a raft round that wrote the right's state after its removal).
func (s *Store) collectTombstoned() error {
	it, err := s.cfg.Engine.NewIter(tombstoneSpan())
	if err != nil {
		return fmt.Errorf("shard: store: scan tombstones: %w", err)
	}
	var ids []raftgroup.GroupID
	for ok := it.First(); ok; ok = it.Next() {
		k := it.Key()
		if len(k) < 21 {
			continue
		}
		var id uint64
		if _, err := fmt.Sscanf(string(k[len(k)-21:len(k)-1]), "%d", &id); err != nil {
			continue
		}
		ids = append(ids, raftgroup.GroupID(id))
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return fmt.Errorf("shard: store: scan tombstones: %w", err)
	}
	for _, id := range ids {
		if err := s.deleteGroup(id); err != nil {
			return fmt.Errorf("shard: store: remove destroyed range %d: %w", id, err)
		}
	}
	return nil
}

// Tombstoned reports whether a range was destroyed on this node.
func (s *Store) Tombstoned(id raftgroup.GroupID) bool {
	_, err := s.cfg.Engine.Get(tombstoneKey(uint64(id)))
	return err == nil
}
