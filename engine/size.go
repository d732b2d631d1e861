package engine

import "fmt"

// EstimateSpanSize returns an estimate of the bytes on disk of a span's
// keys (Pebble's estimate from the sstables overlapping it; memtable data
// is not counted).
func (e *Engine) EstimateSpanSize(span Span) (uint64, error) {
	n, err := e.db.EstimateDiskUsage(span.Start, span.End)
	if err != nil {
		return 0, fmt.Errorf("engine: estimate size of span: %w", err)
	}
	return n, nil
}
