package placement

import (
	"encoding/binary"
	"fmt"

	"github.com/tesseradb/tessera/engine"
)

// SetTSOFloor makes the TSO of a cluster restored from a backup start above
// rev (a timestamp of the cluster the backup came from): it records rev's
// physical milliseconds + 1 as the high-water mark, which every TSO leader
// starts above. Written once, offline, after WriteMetaInitialState.
func SetTSOFloor(eng *engine.Engine, rev engine.Revision) error {
	ms := int64(rev)>>LogicalBits + 1
	b := eng.NewWriteBatch()
	defer b.Close()
	if err := b.Set(keyTSOHigh, binary.BigEndian.AppendUint64(nil, uint64(ms))); err != nil {
		return err
	}
	if err := b.Commit(true); err != nil {
		return fmt.Errorf("placement: write TSO floor: %w", err)
	}
	return nil
}
