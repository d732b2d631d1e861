package server

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/tesseradb/tessera/engine"
)

// defragment compacts the node's engine in steps: each local range's data
// span in turn, then the key space around the data (raft logs, local and
// system keys). Smaller manual compactions rather than one over the whole
// store, with a pause after each (DefragIdleRatio times as long as the step
// took), so that foreground requests get the disk and CPU back between
// steps; a node with many ranges takes longer to defragment, never longer
// to answer.
func (s *Server) defragment(ctx context.Context) error {
	before := s.eng.DiskUsage()
	ids := make([]uint64, 0, len(s.replicas))
	for id := range s.replicas {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	all := engine.DataSpan(nil, nil)
	var spans []engine.Span
	for _, id := range ids {
		d := s.replicas[id].Descriptor()
		spans = append(spans, engine.DataSpan(d.GetStartKey(), d.GetEndKey()))
	}
	spans = append(spans,
		engine.Span{Start: engine.WholeSpan.Start, End: all.Start},
		engine.Span{Start: all.End, End: engine.WholeSpan.End})
	for _, sp := range spans {
		start := time.Now()
		if err := s.eng.Compact(ctx, sp); err != nil {
			return fmt.Errorf("server: defragment: %w", err)
		}
		if pause := time.Duration(float64(time.Since(start)) * s.cfg.DefragIdleRatio); pause > 0 {
			t := time.NewTimer(pause)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			}
		}
	}
	s.log.Info("defragmented", "disk_bytes_before", before, "disk_bytes_after", s.eng.DiskUsage())
	return nil
}
