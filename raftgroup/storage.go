package raftgroup

import (
	"errors"
	"fmt"
	"sync"

	"github.com/tesseradb/tessera/engine"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// Bootstrap state of a group created with initial voters: every initial
// replica starts from the same truncated log at this index and term, so a
// replica added later (empty) is always behind the first index and receives a
// snapshot. Same convention as CockroachDB's initial raft state.
const (
	bootstrapIndex = 10
	bootstrapTerm  = 5
)

// logStorage is one group's raft log and state on the node's engine. It
// implements raft.Storage. Writes go through batches prepared by the host's
// Ready round; the in-memory view (last index, entry cache) moves forward only
// after those batches commit.
type logStorage struct {
	eng   *engine.Engine
	group GroupID

	mu struct {
		sync.Mutex
		hardState             *raftpb.HardState
		truncIndex, truncTerm uint64 // first index = truncIndex+1
		lastIndex, lastTerm   uint64
		applied               appliedState
		// cache holds the most recent entries, contiguous, ending at
		// lastIndex; raft reads them to build appends and to apply.
		cache    []*raftpb.Entry
		cacheMax int
	}
}

var _ raft.Storage = (*logStorage)(nil)

// writeBootstrap writes the initial state of a group with the given voters.
// It fails if the group already has state.
func writeBootstrap(eng *engine.Engine, g GroupID, voters []ReplicaID) error {
	if _, err := eng.Get(engine.LocalGroupKey(uint64(g), engine.KindHardState)); err == nil {
		return fmt.Errorf("raftgroup: bootstrap %s: group already has state", g)
	}
	cs := &raftpb.ConfState{}
	for _, v := range voters {
		cs.Voters = append(cs.Voters, uint64(v))
	}
	hs, err := proto.Marshal(&raftpb.HardState{Term: proto.Uint64(bootstrapTerm), Commit: proto.Uint64(bootstrapIndex)})
	if err != nil {
		return err
	}
	as, err := encodeAppliedState(appliedState{Index: bootstrapIndex, Term: bootstrapTerm, ConfState: cs})
	if err != nil {
		return err
	}
	b := eng.NewWriteBatch()
	defer b.Close()
	for _, kv := range []struct{ k, v []byte }{
		{engine.LocalGroupKey(uint64(g), engine.KindHardState), hs},
		{engine.LocalGroupKey(uint64(g), engine.KindTruncated), encodeIndexTerm(bootstrapIndex, bootstrapTerm)},
		{engine.LocalGroupKey(uint64(g), engine.KindAppliedState), as},
	} {
		if err := b.Set(kv.k, kv.v); err != nil {
			return err
		}
	}
	if err := b.Commit(true); err != nil {
		return fmt.Errorf("raftgroup: bootstrap %s: %w", g, err)
	}
	return nil
}

// loadStorage reads a group's persisted raft state. A group with no state is
// an empty replica waiting for a snapshot.
func loadStorage(eng *engine.Engine, g GroupID, cacheMax int) (*logStorage, error) {
	s := &logStorage{eng: eng, group: g}
	s.mu.cacheMax = cacheMax
	s.mu.hardState = &raftpb.HardState{}
	if b, err := eng.Get(engine.LocalGroupKey(uint64(g), engine.KindHardState)); err == nil {
		if err := proto.Unmarshal(b, s.mu.hardState); err != nil {
			return nil, fmt.Errorf("raftgroup: %s: decode hard state: %w", g, err)
		}
	} else if !errors.Is(err, engine.ErrNotFound) {
		return nil, err
	}
	if b, err := eng.Get(engine.LocalGroupKey(uint64(g), engine.KindTruncated)); err == nil {
		if s.mu.truncIndex, s.mu.truncTerm, err = decodeIndexTerm(b); err != nil {
			return nil, err
		}
	} else if !errors.Is(err, engine.ErrNotFound) {
		return nil, err
	}
	applied, err := readAppliedState(eng, g)
	if err != nil {
		return nil, err
	}
	s.mu.applied = applied
	// The last index is the last log entry, or the truncation point.
	s.mu.lastIndex, s.mu.lastTerm = s.mu.truncIndex, s.mu.truncTerm
	it, err := eng.NewIter(engine.LocalGroupKindSpan(uint64(g), engine.KindLogEntry))
	if err != nil {
		return nil, err
	}
	defer it.Close()
	if it.Last() {
		v, err := it.Value()
		if err != nil {
			return nil, err
		}
		var e raftpb.Entry
		if err := proto.Unmarshal(v, &e); err != nil {
			return nil, fmt.Errorf("raftgroup: %s: decode last entry: %w", g, err)
		}
		s.mu.lastIndex, s.mu.lastTerm = e.GetIndex(), e.GetTerm()
	}
	if err := it.Error(); err != nil {
		return nil, err
	}
	// A snapshot ingested just before a crash can leave the applied index
	// ahead of the log and commit index; the snapshot's truncated state and
	// hard state travel in the same atomic ingest, so this only guards
	// against a corrupted store.
	if s.mu.applied.Index > s.mu.lastIndex {
		return nil, fmt.Errorf("raftgroup: %s: applied index %d beyond last log index %d", g, s.mu.applied.Index, s.mu.lastIndex)
	}
	return s, nil
}

// InitialState implements raft.Storage.
func (s *logStorage) InitialState() (*raftpb.HardState, *raftpb.ConfState, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return proto.Clone(s.mu.hardState).(*raftpb.HardState), proto.Clone(s.mu.applied.ConfState).(*raftpb.ConfState), nil
}

// FirstIndex implements raft.Storage.
func (s *logStorage) FirstIndex() (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mu.truncIndex + 1, nil
}

// LastIndex implements raft.Storage.
func (s *logStorage) LastIndex() (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mu.lastIndex, nil
}

// Term implements raft.Storage.
func (s *logStorage) Term(i uint64) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case i == s.mu.truncIndex:
		return s.mu.truncTerm, nil
	case i < s.mu.truncIndex:
		return 0, raft.ErrCompacted
	case i > s.mu.lastIndex:
		return 0, raft.ErrUnavailable
	case i == s.mu.lastIndex:
		return s.mu.lastTerm, nil
	}
	if e := s.cachedLocked(i); e != nil {
		return e.GetTerm(), nil
	}
	ents, err := s.readEntriesLocked(i, i+1, 0)
	if err != nil {
		return 0, err
	}
	return ents[0].GetTerm(), nil
}

// Entries implements raft.Storage.
func (s *logStorage) Entries(lo, hi, maxSize uint64) ([]*raftpb.Entry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if lo <= s.mu.truncIndex {
		return nil, raft.ErrCompacted
	}
	if hi > s.mu.lastIndex+1 {
		return nil, fmt.Errorf("raftgroup: %s: entries [%d,%d) beyond last index %d: %w", s.group, lo, hi, s.mu.lastIndex, raft.ErrUnavailable)
	}
	if len(s.mu.cache) > 0 && lo >= s.mu.cache[0].GetIndex() {
		first := s.mu.cache[0].GetIndex()
		return limitSize(append([]*raftpb.Entry(nil), s.mu.cache[lo-first:hi-first]...), maxSize), nil
	}
	return s.readEntriesLocked(lo, hi, maxSize)
}

func limitSize(ents []*raftpb.Entry, maxSize uint64) []*raftpb.Entry {
	if maxSize == 0 || len(ents) == 0 {
		return ents
	}
	size := uint64(proto.Size(ents[0]))
	for i := 1; i < len(ents); i++ {
		size += uint64(proto.Size(ents[i]))
		if size > maxSize {
			return ents[:i]
		}
	}
	return ents
}

func (s *logStorage) cachedLocked(i uint64) *raftpb.Entry {
	if len(s.mu.cache) == 0 || i < s.mu.cache[0].GetIndex() || i > s.mu.lastIndex {
		return nil
	}
	return s.mu.cache[i-s.mu.cache[0].GetIndex()]
}

func (s *logStorage) readEntriesLocked(lo, hi, maxSize uint64) ([]*raftpb.Entry, error) {
	span := engine.Span{
		Start: engine.LocalGroupIndexKey(uint64(s.group), engine.KindLogEntry, lo),
		End:   engine.LocalGroupIndexKey(uint64(s.group), engine.KindLogEntry, hi),
	}
	it, err := s.eng.NewIter(span)
	if err != nil {
		return nil, err
	}
	defer it.Close()
	var out []*raftpb.Entry
	var size uint64
	next := lo
	for valid := it.First(); valid; valid = it.Next() {
		v, err := it.Value()
		if err != nil {
			return nil, err
		}
		e := &raftpb.Entry{}
		if err := proto.Unmarshal(v, e); err != nil {
			return nil, fmt.Errorf("raftgroup: %s: decode entry: %w", s.group, err)
		}
		if e.GetIndex() != next {
			return nil, fmt.Errorf("raftgroup: %s: log gap: want index %d, found %d", s.group, next, e.GetIndex())
		}
		size += uint64(proto.Size(e))
		if maxSize > 0 && size > maxSize && len(out) > 0 {
			return out, nil
		}
		out = append(out, e)
		next++
	}
	if err := it.Error(); err != nil {
		return nil, err
	}
	if next != hi {
		return nil, fmt.Errorf("raftgroup: %s: log entries [%d,%d) missing from %d: %w", s.group, lo, hi, next, raft.ErrUnavailable)
	}
	return out, nil
}

// Snapshot implements raft.Storage. It describes the applied state; the data
// is read from an engine snapshot when the MsgSnap is sent (see snapshot.go),
// at an applied index at least this one.
func (s *logStorage) Snapshot() (*raftpb.Snapshot, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.applied.Index == 0 {
		return nil, raft.ErrSnapshotTemporarilyUnavailable
	}
	return &raftpb.Snapshot{Metadata: &raftpb.SnapshotMetadata{
		Index:     proto.Uint64(s.mu.applied.Index),
		Term:      proto.Uint64(s.mu.applied.Term),
		ConfState: proto.Clone(s.mu.applied.ConfState).(*raftpb.ConfState),
	}}, nil
}

// stageAppend writes entries (and deletes the conflicting tail they replace)
// into b. The in-memory view moves after b commits, in appended.
func (s *logStorage) stageAppend(b *engine.Batch, ents []*raftpb.Entry) error {
	if len(ents) == 0 {
		return nil
	}
	for _, e := range ents {
		v, err := proto.Marshal(e)
		if err != nil {
			return fmt.Errorf("raftgroup: %s: encode entry: %w", s.group, err)
		}
		if err := b.Set(engine.LocalGroupIndexKey(uint64(s.group), engine.KindLogEntry, e.GetIndex()), v); err != nil {
			return err
		}
	}
	s.mu.Lock()
	oldLast := s.mu.lastIndex
	s.mu.Unlock()
	newLast := ents[len(ents)-1].GetIndex()
	if newLast < oldLast {
		return b.DeleteRange(engine.Span{
			Start: engine.LocalGroupIndexKey(uint64(s.group), engine.KindLogEntry, newLast+1),
			End:   engine.LocalGroupIndexKey(uint64(s.group), engine.KindLogEntry, oldLast+1),
		})
	}
	return nil
}

// appended moves the in-memory view after a batch with stageAppend committed.
func (s *logStorage) appended(ents []*raftpb.Entry, hs *raftpb.HardState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if hs != nil {
		s.mu.hardState = proto.Clone(hs).(*raftpb.HardState)
	}
	if len(ents) == 0 {
		return
	}
	first := ents[0].GetIndex()
	// Drop the cached tail that the new entries replace.
	if len(s.mu.cache) > 0 {
		c0 := s.mu.cache[0].GetIndex()
		switch {
		case first <= c0:
			s.mu.cache = s.mu.cache[:0]
		case first <= c0+uint64(len(s.mu.cache)):
			s.mu.cache = s.mu.cache[:first-c0]
		default:
			s.mu.cache = s.mu.cache[:0]
		}
	}
	s.mu.cache = append(s.mu.cache, ents...)
	if over := len(s.mu.cache) - s.mu.cacheMax; over > 0 {
		s.mu.cache = append(s.mu.cache[:0:0], s.mu.cache[over:]...)
	}
	last := ents[len(ents)-1]
	s.mu.lastIndex, s.mu.lastTerm = last.GetIndex(), last.GetTerm()
}

// stageHardState writes hs into b.
func (s *logStorage) stageHardState(b *engine.Batch, hs *raftpb.HardState) error {
	v, err := proto.Marshal(hs)
	if err != nil {
		return fmt.Errorf("raftgroup: %s: encode hard state: %w", s.group, err)
	}
	return b.Set(engine.LocalGroupKey(uint64(s.group), engine.KindHardState), v)
}

// stageApplied writes the applied state into b.
func (s *logStorage) stageApplied(b *engine.Batch, as appliedState) error {
	v, err := encodeAppliedState(as)
	if err != nil {
		return err
	}
	return b.Set(engine.LocalGroupKey(uint64(s.group), engine.KindAppliedState), v)
}

func (s *logStorage) setApplied(as appliedState) {
	s.mu.Lock()
	s.mu.applied = as
	s.mu.Unlock()
}

func (s *logStorage) appliedState() appliedState {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mu.applied
}

// stageTruncate deletes the log up to and including index (which must be
// applied) and records the truncation point, if the log holds more than
// threshold applied entries; keep entries below the applied index stay for
// followers that are slightly behind. It returns the new truncation index and
// its term, or 0 if nothing was truncated.
func (s *logStorage) stageTruncate(b *engine.Batch, applied uint64, threshold, keep uint64) (uint64, uint64, error) {
	s.mu.Lock()
	trunc := s.mu.truncIndex
	s.mu.Unlock()
	if applied < trunc+threshold || applied <= keep {
		return 0, 0, nil
	}
	newTrunc := applied - keep
	if newTrunc <= trunc {
		return 0, 0, nil
	}
	term, err := s.Term(newTrunc)
	if err != nil {
		return 0, 0, fmt.Errorf("raftgroup: %s: term of truncation point %d: %w", s.group, newTrunc, err)
	}
	if err := b.DeleteRange(engine.Span{
		Start: engine.LocalGroupIndexKey(uint64(s.group), engine.KindLogEntry, trunc+1),
		End:   engine.LocalGroupIndexKey(uint64(s.group), engine.KindLogEntry, newTrunc+1),
	}); err != nil {
		return 0, 0, err
	}
	if err := b.Set(engine.LocalGroupKey(uint64(s.group), engine.KindTruncated), encodeIndexTerm(newTrunc, term)); err != nil {
		return 0, 0, err
	}
	return newTrunc, term, nil
}

// truncated moves the in-memory truncation point after its batch committed.
func (s *logStorage) truncated(index, term uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if index <= s.mu.truncIndex {
		return
	}
	s.mu.truncIndex, s.mu.truncTerm = index, term
	drop := 0
	for drop < len(s.mu.cache) && s.mu.cache[drop].GetIndex() <= index {
		drop++
	}
	s.mu.cache = append(s.mu.cache[:0:0], s.mu.cache[drop:]...)
}

// restored resets the in-memory view to a snapshot just ingested.
func (s *logStorage) restored(hs *raftpb.HardState, as appliedState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mu.hardState = proto.Clone(hs).(*raftpb.HardState)
	s.mu.truncIndex, s.mu.truncTerm = as.Index, as.Term
	s.mu.lastIndex, s.mu.lastTerm = as.Index, as.Term
	s.mu.applied = as
	s.mu.cache = nil
}
