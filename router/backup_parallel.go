package router

import (
	"context"
	"fmt"

	"go.etcd.io/etcd/api/v3/mvccpb"

	"github.com/tesseradb/tessera/engine"
	"github.com/tesseradb/tessera/proto/tesserapb"
)

// rangeAhead is one range being read ahead of the backup's writer.
type rangeAhead struct {
	pages chan []*mvccpb.KeyValue
	done  chan struct{} // closed after pages, once err is set
	err   error
}

// snapshotRanges writes the ranges' keys at rev in order, reading up to
// cfg.Parallel ranges at once. Readers start in range order and a range's
// slot is freed only when the writer has written all of it, so the range
// the writer waits for always has a reader: no reader can starve it.
// progress is called after each range with its index and key count.
func (m *Maintenance) snapshotRanges(ctx context.Context, cfg SnapshotConfig, bw *BackupWriter, ranges []*tesserapb.RangeDescriptor, rev engine.Revision, progress func(i, keys int)) error {
	parallel, ahead := max(cfg.Parallel, 1), max(cfg.ReadAhead, 1)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	slots := make(chan struct{}, parallel)
	readers := make([]*rangeAhead, len(ranges))
	for i := range readers {
		readers[i] = &rangeAhead{pages: make(chan []*mvccpb.KeyValue, ahead), done: make(chan struct{})}
	}
	dispatched := make(chan struct{})
	go func() {
		defer close(dispatched)
		for i, d := range ranges {
			select {
			case slots <- struct{}{}:
			case <-ctx.Done():
				return
			}
			ra := readers[i]
			go func() {
				defer close(ra.done)
				defer close(ra.pages)
				ra.err = m.readRange(ctx, cfg, d, rev, func(kvs []*mvccpb.KeyValue) error {
					select {
					case ra.pages <- kvs:
						return nil
					case <-ctx.Done():
						return ctx.Err()
					}
				})
			}()
		}
	}()
	defer func() {
		cancel()
		<-dispatched
	}()
	for i, d := range ranges {
		ra := readers[i]
		n := 0
	read:
		for {
			select {
			case kvs, ok := <-ra.pages:
				if !ok {
					break read
				}
				if err := bw.KVs(d.GetRangeId(), kvs); err != nil {
					return err
				}
				n += len(kvs)
			case <-ctx.Done():
				// The client went away (or the dispatcher stopped with it).
				return fmt.Errorf("router: snapshot at revision %d: %w", rev, ctx.Err())
			}
		}
		<-ra.done
		if ra.err != nil {
			return fmt.Errorf("router: snapshot of range %d at revision %d: %w", d.GetRangeId(), rev, ra.err)
		}
		<-slots
		progress(i, n)
	}
	return nil
}
