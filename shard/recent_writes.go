package shard

import (
	"fmt"
	"math"

	"github.com/tesseradb/tessera/engine"
)

// RecentWrites returns the revisions of the range's newest writes as this
// replica applied them (its change log: one entry per write revision),
// newest first, at most limit. Revisions compacted away are not listed.
func (r *Replica) RecentWrites(limit int) ([]engine.Revision, error) {
	snap := r.cfg.Engine.NewSnapshot()
	defer snap.Close()
	it, err := snap.NewIter(changeLogSpan(uint64(r.group), 0, math.MaxInt64))
	if err != nil {
		return nil, err
	}
	defer it.Close()
	var out []engine.Revision
	for valid := it.Last(); valid && len(out) < limit; valid = it.Prev() {
		idx, err := engine.DecodeLocalGroupIndexKey(it.Key())
		if err != nil {
			return nil, fmt.Errorf("shard: range %d: change log: %w", r.group, err)
		}
		out = append(out, engine.Revision(idx))
	}
	return out, it.Error()
}
