package engine

import (
	"fmt"

	"github.com/cockroachdb/pebble/v2/objstorage/objstorageprovider"
	"github.com/cockroachdb/pebble/v2/sstable"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// SSTWriter builds one SST file that can be ingested into an engine. Keys
// must be added in Comparer order.
type SSTWriter struct {
	w    *sstable.Writer
	path string
	n    int
}

// NewSSTWriter creates an SST at path in the engine's format.
func (e *Engine) NewSSTWriter(path string) (*SSTWriter, error) {
	f, err := vfs.Default.Create(path, vfs.WriteCategoryUnspecified)
	if err != nil {
		return nil, fmt.Errorf("engine: create sst %s: %w", path, err)
	}
	opts := e.opts.MakeWriterOptions(0, e.db.FormatMajorVersion().MaxTableFormat())
	return &SSTWriter{w: sstable.NewWriter(objstorageprovider.NewFileWritable(f), opts), path: path}, nil
}

// Set adds a key.
func (w *SSTWriter) Set(key, value []byte) error {
	w.n++
	if err := w.w.Set(key, value); err != nil {
		return fmt.Errorf("engine: sst %s: set: %w", w.path, err)
	}
	return nil
}

// ClearSpan adds a range deletion of span. Ingested with the file, it removes
// whatever the engine held in the span, but not the file's own keys (they get
// the same sequence number as the deletion, which only hides older keys).
func (w *SSTWriter) ClearSpan(span Span) error {
	if err := w.w.DeleteRange(span.Start, span.End); err != nil {
		return fmt.Errorf("engine: sst %s: clear span: %w", w.path, err)
	}
	return nil
}

// Keys returns how many keys were added.
func (w *SSTWriter) Keys() int { return w.n }

// Finish completes the file.
func (w *SSTWriter) Finish() error {
	if err := w.w.Close(); err != nil {
		return fmt.Errorf("engine: finish sst %s: %w", w.path, err)
	}
	return nil
}

// ExportSpan writes every key of span as read from r into a new SST at path,
// preceded by a deletion of the whole span, so that ingesting the file makes
// the span on the receiving engine exactly what r had. It returns the number
// of keys written.
func (e *Engine) ExportSpan(r Reader, span Span, path string) (int, error) {
	w, err := e.NewSSTWriter(path)
	if err != nil {
		return 0, err
	}
	abort := func(err error) (int, error) {
		_ = w.w.Close()
		return 0, err
	}
	if err := w.ClearSpan(span); err != nil {
		return abort(err)
	}
	it, err := r.NewIter(span)
	if err != nil {
		return abort(err)
	}
	for valid := it.First(); valid; valid = it.Next() {
		v, err := it.Value()
		if err != nil {
			it.Close()
			return abort(fmt.Errorf("engine: export: %w", err))
		}
		if err := w.Set(it.Key(), v); err != nil {
			it.Close()
			return abort(err)
		}
	}
	if err := it.Error(); err != nil {
		it.Close()
		return abort(fmt.Errorf("engine: export: %w", err))
	}
	if err := it.Close(); err != nil {
		return abort(fmt.Errorf("engine: export: %w", err))
	}
	return w.Keys(), w.Finish()
}
