package raftgroup

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/tesseradb/tessera/engine"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// appliedState is the replicated record of how far a group's state machine
// has applied its log: written in the same batch as the applied entries'
// effects, and shipped inside replica snapshots.
type appliedState struct {
	Index, Term uint64
	ConfState   *raftpb.ConfState
}

func encodeAppliedState(s appliedState) ([]byte, error) {
	cs, err := proto.Marshal(s.ConfState)
	if err != nil {
		return nil, fmt.Errorf("raftgroup: encode conf state: %w", err)
	}
	b := make([]byte, 16, 16+len(cs))
	binary.BigEndian.PutUint64(b, s.Index)
	binary.BigEndian.PutUint64(b[8:], s.Term)
	return append(b, cs...), nil
}

func decodeAppliedState(b []byte) (appliedState, error) {
	if len(b) < 16 {
		return appliedState{}, errors.New("raftgroup: applied state too short")
	}
	s := appliedState{
		Index:     binary.BigEndian.Uint64(b),
		Term:      binary.BigEndian.Uint64(b[8:]),
		ConfState: &raftpb.ConfState{},
	}
	if err := proto.Unmarshal(b[16:], s.ConfState); err != nil {
		return appliedState{}, fmt.Errorf("raftgroup: decode conf state: %w", err)
	}
	return s, nil
}

// readAppliedState reads a group's applied state; a group that has never
// applied anything (a new, empty replica) has the zero state.
func readAppliedState(r engine.Reader, g GroupID) (appliedState, error) {
	b, err := r.Get(engine.LocalGroupKey(uint64(g), engine.KindAppliedState))
	if errors.Is(err, engine.ErrNotFound) {
		return appliedState{ConfState: &raftpb.ConfState{}}, nil
	}
	if err != nil {
		return appliedState{}, err
	}
	return decodeAppliedState(b)
}

func encodeIndexTerm(index, term uint64) []byte {
	b := make([]byte, 16)
	binary.BigEndian.PutUint64(b, index)
	binary.BigEndian.PutUint64(b[8:], term)
	return b
}

func decodeIndexTerm(b []byte) (uint64, uint64, error) {
	if len(b) != 16 {
		return 0, 0, fmt.Errorf("raftgroup: bad index/term record of %d bytes", len(b))
	}
	return binary.BigEndian.Uint64(b), binary.BigEndian.Uint64(b[8:]), nil
}

// AppliedIndex reads a group's applied index from r. Read from an engine
// snapshot it is the index of exactly the replicated state that snapshot
// holds: the host writes both in one batch.
func AppliedIndex(r engine.Reader, g GroupID) (uint64, error) {
	s, err := readAppliedState(r, g)
	if err != nil {
		return 0, fmt.Errorf("raftgroup: %s: read applied state: %w", g, err)
	}
	return s.Index, nil
}
