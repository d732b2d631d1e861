package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/prometheus/client_golang/prometheus"
)

// ErrNotFound is returned by Get for a missing key.
var ErrNotFound = errors.New("engine: key not found")

// Config configures an Engine.
type Config struct {
	// Dir is the directory of the Pebble database; created if missing.
	Dir string
	// CacheBytes is the block cache size. 64 MiB is enough for the working set
	// of a development node; production nodes raise it.
	CacheBytes int64
	// MemTableBytes is the size of one memtable. 64 MiB keeps flushes rare
	// under the batched raft log write load.
	MemTableBytes uint64
	// WALMinSyncInterval is the least time between two fsyncs of the
	// write-ahead log while two or more synced commits are in flight: sync
	// requests arriving sooner wait and share the next fsync (group commit),
	// so the Ready rounds of several workers share one fsync. It applies
	// only under load: when two synced commits are in flight, or the last
	// two were asked for less than the interval apart. A lone writer is
	// never delayed, which keeps single-client latency at its lowest. 500µs, the value Pebble's documentation
	// suggests: it halved fsyncs per proposal in BenchmarkProposeManyGroups
	// (0.12 -> 0.05). 0 disables the delay.
	WALMinSyncInterval time.Duration
	// FS is the filesystem; nil means the OS filesystem. Tests inject
	// fault-injecting filesystems here.
	FS vfs.FS
	// Registerer receives the engine's metrics; nil registers nothing.
	Registerer prometheus.Registerer
	// Logger receives Pebble's errors; nil discards.
	Logger *slog.Logger
}

// DefaultConfig returns a Config for dir with the defaults above.
func DefaultConfig(dir string) Config {
	return Config{Dir: dir, CacheBytes: 64 << 20, MemTableBytes: 64 << 20, WALMinSyncInterval: 500 * time.Microsecond}
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	if c.Dir == "" {
		return errors.New("engine: Config.Dir is empty")
	}
	if c.WALMinSyncInterval < 0 || c.WALMinSyncInterval > time.Second {
		return fmt.Errorf("engine: Config.WALMinSyncInterval %v out of [0, 1s]", c.WALMinSyncInterval)
	}
	if c.CacheBytes < 0 {
		return fmt.Errorf("engine: Config.CacheBytes %d is negative", c.CacheBytes)
	}
	return nil
}

// Engine is one Pebble database holding every group of a node.
type Engine struct {
	db      *pebble.DB
	opts    *pebble.Options
	syncs   *syncCounter
	metrics *metrics
	// syncCommits counts synced commits in flight, lastSyncReq is when the
	// latest one was asked for and syncBusy whether it came within the group
	// commit interval of the one before (for group commit).
	syncCommits atomic.Int64
	lastSyncReq atomic.Int64
	syncBusy    atomic.Bool
	minSync     time.Duration
	// maint guards manual compactions against Close (compact.go): Pebble
	// panics on a compaction of a closed DB.
	maint struct {
		sync.RWMutex
		closed bool
	}
}

// Open opens (creating if needed) the engine in cfg.Dir.
func Open(cfg Config) (*Engine, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	m := newMetrics(cfg.Registerer)
	fs := cfg.FS
	if fs == nil {
		fs = vfs.Default
	}
	sc := &syncCounter{observe: m.observeSync}
	cache := pebble.NewCache(max(cfg.CacheBytes, 1<<20))
	defer cache.Unref()
	opts := &pebble.Options{
		Comparer:           Comparer,
		FS:                 countingFS{FS: fs, c: sc},
		Cache:              cache,
		MemTableSize:       max(cfg.MemTableBytes, 4<<20),
		FormatMajorVersion: pebble.FormatNewest,
		Logger:             pebbleLogger{log: logger.Error},
	}
	e := &Engine{opts: opts, syncs: sc, metrics: m, minSync: cfg.WALMinSyncInterval}
	if d := cfg.WALMinSyncInterval; d > 0 {
		opts.WALMinSyncInterval = func() time.Duration {
			if e.syncCommits.Load() > 1 || e.syncBusy.Load() {
				return d
			}
			return 0
		}
	}
	opts.EnsureDefaults()
	db, err := pebble.Open(cfg.Dir, opts)
	if err != nil {
		return nil, fmt.Errorf("engine: open %s: %w", cfg.Dir, err)
	}
	e.db = db
	return e, nil
}

// Close closes the database.
func (e *Engine) Close() error {
	e.maint.Lock()
	e.maint.closed = true
	e.maint.Unlock()
	if err := e.db.Close(); err != nil {
		return fmt.Errorf("engine: close: %w", err)
	}
	return nil
}

// WALSyncs returns how many times the write-ahead log has been fsynced since
// Open.
func (e *Engine) WALSyncs() uint64 { return e.syncs.walSyncs.Load() }

// DiskSpaceUsage returns the bytes the engine's files take on disk (SSTs,
// WAL, manifest), as Pebble accounts them.
func (e *Engine) DiskSpaceUsage() uint64 { return e.db.Metrics().DiskSpaceUsage() }

// Flush flushes memtables to SSTs (tests and shutdown).
func (e *Engine) Flush() error {
	if err := e.db.Flush(); err != nil {
		return fmt.Errorf("engine: flush: %w", err)
	}
	return nil
}

// Reader reads encoded keys. Engine, Snapshot and Batch implement it; a Batch
// reads its own writes over the engine.
type Reader interface {
	// Get returns a copy of the value of an encoded key, or ErrNotFound.
	Get(key []byte) ([]byte, error)
	// NewIter returns an iterator bounded to span.
	NewIter(span Span) (*Iter, error)
}

// Writer writes encoded keys.
type Writer interface {
	Set(key, value []byte) error
	Delete(key []byte) error
	DeleteRange(span Span) error
}

var (
	_ Reader = (*Engine)(nil)
	_ Reader = (*Snapshot)(nil)
	_ Reader = (*Batch)(nil)
	_ Writer = (*Batch)(nil)
)

func get(r pebble.Reader, key []byte) ([]byte, error) {
	v, closer, err := r.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("engine: get: %w", err)
	}
	out := append([]byte(nil), v...)
	if err := closer.Close(); err != nil {
		return nil, fmt.Errorf("engine: get: %w", err)
	}
	return out, nil
}

func newIter(r pebble.Reader, span Span) (*Iter, error) {
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: span.Start, UpperBound: span.End})
	if err != nil {
		return nil, fmt.Errorf("engine: new iterator: %w", err)
	}
	return &Iter{it: it}, nil
}

// Get implements Reader.
func (e *Engine) Get(key []byte) ([]byte, error) { return get(e.db, key) }

// NewIter implements Reader.
func (e *Engine) NewIter(span Span) (*Iter, error) { return newIter(e.db, span) }

// Iter is a bounded iterator over encoded keys.
type Iter struct{ it *pebble.Iterator }

func (i *Iter) First() bool            { return i.it.First() }
func (i *Iter) Last() bool             { return i.it.Last() }
func (i *Iter) Next() bool             { return i.it.Next() }
func (i *Iter) Prev() bool             { return i.it.Prev() }
func (i *Iter) NextPrefix() bool       { return i.it.NextPrefix() }
func (i *Iter) SeekGE(key []byte) bool { return i.it.SeekGE(key) }
func (i *Iter) SeekLT(key []byte) bool { return i.it.SeekLT(key) }
func (i *Iter) Valid() bool            { return i.it.Valid() }
func (i *Iter) Key() []byte            { return i.it.Key() }
func (i *Iter) Value() ([]byte, error) { return i.it.ValueAndErr() }
func (i *Iter) Error() error           { return i.it.Error() }
func (i *Iter) Close() error           { return i.it.Close() }

// Snapshot is a consistent point-in-time view of the engine. Close it.
type Snapshot struct{ s *pebble.Snapshot }

// NewSnapshot returns a snapshot of the engine.
func (e *Engine) NewSnapshot() *Snapshot { return &Snapshot{s: e.db.NewSnapshot()} }

// Get implements Reader.
func (s *Snapshot) Get(key []byte) ([]byte, error) { return get(s.s, key) }

// NewIter implements Reader.
func (s *Snapshot) NewIter(span Span) (*Iter, error) { return newIter(s.s, span) }

// Close releases the snapshot.
func (s *Snapshot) Close() error { return s.s.Close() }

// Batch is an atomic group of writes that also reads its own writes.
type Batch struct {
	e *Engine
	b *pebble.Batch
	// track, when set, records the user keys of data versions written (for
	// a range's change log); see TrackDataWrites.
	track   bool
	written [][]byte
}

// TrackDataWrites makes the batch record the user key of every data version
// it sets from now on, until TakeDataWrites.
func (b *Batch) TrackDataWrites() { b.track = true }

// TakeDataWrites returns the user keys of the data versions set since
// tracking began or the last call, in write order (a key written twice
// appears twice), and resets the list.
func (b *Batch) TakeDataWrites() [][]byte {
	w := b.written
	b.written = nil
	return w
}

// NewBatch returns an indexed batch.
func (e *Engine) NewBatch() *Batch { return &Batch{e: e, b: e.db.NewIndexedBatch()} }

// NewWriteBatch returns a write-only batch (cheaper; Get/NewIter fail).
func (e *Engine) NewWriteBatch() *Batch { return &Batch{e: e, b: e.db.NewBatch()} }

func (b *Batch) Set(key, value []byte) error {
	if err := b.b.Set(key, value, nil); err != nil {
		return fmt.Errorf("engine: batch set: %w", err)
	}
	if b.track {
		if uk, ok := UserKeyOfDataKey(key); ok {
			b.written = append(b.written, append([]byte(nil), uk...))
		}
	}
	return nil
}

func (b *Batch) Delete(key []byte) error {
	if err := b.b.Delete(key, nil); err != nil {
		return fmt.Errorf("engine: batch delete: %w", err)
	}
	return nil
}

func (b *Batch) DeleteRange(span Span) error {
	if err := b.b.DeleteRange(span.Start, span.End, nil); err != nil {
		return fmt.Errorf("engine: batch delete range: %w", err)
	}
	return nil
}

// Get implements Reader (indexed batches only).
func (b *Batch) Get(key []byte) ([]byte, error) { return get(b.b, key) }

// NewIter implements Reader (indexed batches only).
func (b *Batch) NewIter(span Span) (*Iter, error) { return newIter(b.b, span) }

// Empty reports whether the batch holds no writes.
func (b *Batch) Empty() bool { return b.b.Empty() }

// Len returns the size of the batch's representation in bytes.
func (b *Batch) Len() int { return b.b.Len() }

// Count returns the number of writes in the batch.
func (b *Batch) Count() uint32 { return b.b.Count() }

// Commit applies the batch atomically; with sync it is durable on return.
func (b *Batch) Commit(sync bool) error {
	start := time.Now()
	opts := pebble.NoSync
	if sync {
		opts = pebble.Sync
		now := start.UnixNano()
		prev := b.e.lastSyncReq.Swap(now)
		b.e.syncBusy.Store(now-prev < int64(b.e.minSync))
		b.e.syncCommits.Add(1)
		defer b.e.syncCommits.Add(-1)
	}
	if err := b.b.Commit(opts); err != nil {
		return fmt.Errorf("engine: commit: %w", err)
	}
	b.e.metrics.observeCommit(sync, time.Since(start))
	return nil
}

// Close releases the batch (after Commit, or to abandon it).
func (b *Batch) Close() error { return b.b.Close() }

// Ingest atomically adds the given SST files to the engine (see sst.go).
func (e *Engine) Ingest(ctx context.Context, paths []string) error {
	if len(paths) == 0 {
		return nil
	}
	if err := e.db.Ingest(ctx, paths); err != nil {
		return fmt.Errorf("engine: ingest %d files: %w", len(paths), err)
	}
	return nil
}
