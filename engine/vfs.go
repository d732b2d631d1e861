package engine

import (
	"strings"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// syncCounter counts the fsyncs Pebble issues, split by the write-ahead log
// and everything else, and times them. It is how "one fsync for many groups"
// is measured rather than assumed.
type syncCounter struct {
	walSyncs   atomic.Uint64
	otherSyncs atomic.Uint64
	observe    func(wal bool, d time.Duration)
}

type countingFS struct {
	vfs.FS
	c *syncCounter
}

func (fs countingFS) wrap(name string, f vfs.File, err error) (vfs.File, error) {
	if err != nil {
		return f, err
	}
	return countingFile{File: f, c: fs.c, wal: strings.HasSuffix(name, ".log")}, nil
}

func (fs countingFS) Create(name string, cat vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.Create(name, cat)
	return fs.wrap(name, f, err)
}

func (fs countingFS) OpenReadWrite(name string, cat vfs.DiskWriteCategory, opts ...vfs.OpenOption) (vfs.File, error) {
	f, err := fs.FS.OpenReadWrite(name, cat, opts...)
	return fs.wrap(name, f, err)
}

func (fs countingFS) ReuseForWrite(oldname, newname string, cat vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.ReuseForWrite(oldname, newname, cat)
	return fs.wrap(newname, f, err)
}

type countingFile struct {
	vfs.File
	c   *syncCounter
	wal bool
}

func (f countingFile) count(start time.Time) {
	if f.wal {
		f.c.walSyncs.Add(1)
	} else {
		f.c.otherSyncs.Add(1)
	}
	if f.c.observe != nil {
		f.c.observe(f.wal, time.Since(start))
	}
}

func (f countingFile) Sync() error {
	start := time.Now()
	err := f.File.Sync()
	f.count(start)
	return err
}

func (f countingFile) SyncData() error {
	start := time.Now()
	err := f.File.SyncData()
	f.count(start)
	return err
}

func (f countingFile) SyncTo(length int64) (bool, error) {
	start := time.Now()
	full, err := f.File.SyncTo(length)
	f.count(start)
	return full, err
}
