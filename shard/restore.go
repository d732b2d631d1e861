package shard

import (
	"fmt"

	"go.etcd.io/etcd/api/v3/mvccpb"

	"github.com/tesseradb/tessera/engine"
	"github.com/tesseradb/tessera/proto/tesserapb"
)

// restoreBatchBytes is the size at which a restore commits its batch: big
// batches, few commits, bounded memory.
const restoreBatchBytes = 16 << 20

// RestoreWriter writes the state of a range restored from a cluster backup
// into a new data dir, before the node starts: one version per key (the
// key as it was at the backup's revision, with its create and mod
// revisions, version and lease), then the range state with the backup's
// revision as both the compaction revision (no history below it survives
// a backup) and the highest applied revision. Every replica of the range
// writes exactly the same, so their content hashes agree.
type RestoreWriter struct {
	eng  *engine.Engine
	desc *tesserapb.RangeDescriptor
	b    *engine.Batch
	keys int
}

// NewRestoreWriter starts restoring a range; WriteInitialState is done by
// Finish.
func NewRestoreWriter(eng *engine.Engine, desc *tesserapb.RangeDescriptor) *RestoreWriter {
	return &RestoreWriter{eng: eng, desc: desc, b: eng.NewWriteBatch()}
}

// Add writes one key-value; keys outside the range are refused.
func (w *RestoreWriter) Add(kv *mvccpb.KeyValue) error {
	if !ContainsKey(w.desc, kv.GetKey()) {
		return fmt.Errorf("shard: restore range %d: key %q outside [%q, %q)", w.desc.GetRangeId(), kv.GetKey(), w.desc.GetStartKey(), w.desc.GetEndKey())
	}
	err := engine.MVCCPut(w.b, kv.GetKey(), engine.Revision(kv.GetModRevision()), engine.Value{
		CreateRev: engine.Revision(kv.GetCreateRevision()), Version: kv.GetVersion(), Lease: kv.GetLease(), Data: kv.GetValue(),
	})
	if err == nil && kv.GetLease() != 0 {
		// The restored version is the key's live one: index it (see
		// lease_index.go).
		err = w.b.Set(engine.LeaseKeyKey(w.desc.GetRangeId(), kv.GetLease(), kv.GetKey()), nil)
	}
	if err != nil {
		return fmt.Errorf("shard: restore range %d: %w", w.desc.GetRangeId(), err)
	}
	w.keys++
	if w.b.Len() >= restoreBatchBytes {
		if err := w.b.Commit(false); err != nil {
			return fmt.Errorf("shard: restore range %d: %w", w.desc.GetRangeId(), err)
		}
		w.b.Close()
		w.b = w.eng.NewWriteBatch()
	}
	return nil
}

// Finish writes the descriptor and the range state at rev and syncs.
func (w *RestoreWriter) Finish(rev engine.Revision) error {
	st := encodeRangeState(rangeState{compact: rev, applied: rev, logCut: rev})
	if err := w.b.Set(engine.LocalGroupKey(w.desc.GetRangeId(), engine.KindRangeState), st); err != nil {
		return err
	}
	if err := w.b.Commit(true); err != nil {
		return fmt.Errorf("shard: restore range %d: %w", w.desc.GetRangeId(), err)
	}
	return WriteInitialState(w.eng, w.desc)
}

// Keys is the number of keys added.
func (w *RestoreWriter) Keys() int { return w.keys }

// Close releases the writer's batch (after Finish too); once.
func (w *RestoreWriter) Close() {
	if w.b != nil {
		_ = w.b.Close()
		w.b = nil
	}
}
