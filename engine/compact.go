package engine

import (
	"context"
	"errors"
	"fmt"
)

// ErrClosed is returned by maintenance on a closed engine.
var ErrClosed = errors.New("engine: closed")

// WholeSpan covers every key of the engine.
var WholeSpan = Span{Start: []byte{0x00}, End: []byte{0xff}}

// Compact runs a manual compaction of span: Pebble rewrites the tables
// overlapping it down to the bottom level, dropping deleted and overwritten
// data (etcd's defragmentation frees space the same way). It runs in
// Pebble's background compaction machinery: writes and reads go on, with
// a memtable flush first when one overlaps the span. Close waits for it.
func (e *Engine) Compact(ctx context.Context, span Span) error {
	e.maint.RLock()
	defer e.maint.RUnlock()
	if e.maint.closed {
		return ErrClosed
	}
	if err := e.db.Compact(ctx, span.Start, span.End, false); err != nil {
		return fmt.Errorf("engine: compact %v: %w", span, err)
	}
	return nil
}

// DiskUsage returns the bytes of the engine's files (tables, WAL, blobs).
func (e *Engine) DiskUsage() uint64 {
	return e.db.Metrics().DiskSpaceUsage()
}
