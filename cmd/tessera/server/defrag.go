package server

import (
	"context"
	"fmt"
	"slices"

	"github.com/tesseradb/tessera/engine"
)

// defragment compacts the node's engine: each local range's data span in
// turn (several smaller manual compactions rather than one over the whole
// store, so no single one holds Pebble's compaction slots for long), then
// the whole key space for what remains (raft logs, local and system keys).
func (s *Server) defragment(ctx context.Context) error {
	before := s.eng.DiskUsage()
	ids := make([]uint64, 0, len(s.replicas))
	for id := range s.replicas {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		d := s.replicas[id].Descriptor()
		if err := s.eng.Compact(ctx, engine.DataSpan(d.GetStartKey(), d.GetEndKey())); err != nil {
			return fmt.Errorf("server: defragment range %d: %w", id, err)
		}
	}
	if err := s.eng.Compact(ctx, engine.WholeSpan); err != nil {
		return fmt.Errorf("server: defragment: %w", err)
	}
	s.log.Info("defragmented", "disk_bytes_before", before, "disk_bytes_after", s.eng.DiskUsage())
	return nil
}
