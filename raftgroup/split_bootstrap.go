package raftgroup

import (
	"fmt"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/tesseradb/tessera/engine"
)

// WriteSplitBootstrap writes, into b, the initial raft state of a group
// created by a split: the same truncated log (index 10, term 5) as a group
// created at bootstrap, with the given voters. Every replica of the range
// that splits writes it in the batch that applies the split, so the new
// group exists exactly when the split is durable, identical on every
// replica (CockroachDB's RaftInitialLogIndex). A replica that applies the
// split late finds the others ahead and is caught up by appends or a
// snapshot, as a replica added to a group is.
//
// The group must have no raft state on this engine: range ids are never
// reused, so an existing state means a corrupted store.
func WriteSplitBootstrap(b *engine.Batch, id GroupID, voters []ReplicaID) error {
	if _, err := b.Get(engine.LocalGroupKey(uint64(id), engine.KindHardState)); err == nil {
		return fmt.Errorf("raftgroup: split bootstrap %s: group already has raft state", id)
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
	for _, kv := range []struct{ k, v []byte }{
		{engine.LocalGroupKey(uint64(id), engine.KindHardState), hs},
		{engine.LocalGroupKey(uint64(id), engine.KindTruncated), encodeIndexTerm(bootstrapIndex, bootstrapTerm)},
		{engine.LocalGroupKey(uint64(id), engine.KindAppliedState), as},
	} {
		if err := b.Set(kv.k, kv.v); err != nil {
			return fmt.Errorf("raftgroup: split bootstrap %s: %w", id, err)
		}
	}
	return nil
}
