package shard

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"go.etcd.io/etcd/api/v3/mvccpb"

	"github.com/tesseradb/tessera/engine"
	"github.com/tesseradb/tessera/proto/tesserapb"
)

// The change feed of a range.
//
// Every applied write records, next to its MVCC versions and in the same
// batch, a change-log entry: the revision -> the user keys it wrote. The log
// is replicated state (it travels in snapshots, so it moves with the range)
// and is cut at the compaction revision together with the history it
// indexes. A feed reads the log in revision order and turns each entry into
// etcd events by reading the versions at that revision (and the one before,
// for prev_kv), so catch-up from history and live delivery are one loop: a
// feed is a reader that follows the log as it grows.

// changeLogKey is the key of the change-log entry of one revision.
func changeLogKey(group uint64, rev engine.Revision) []byte {
	return engine.LocalGroupIndexKey(group, engine.KindChangeLog, uint64(rev))
}

// changeLogSpan covers the entries of revisions in [from, to).
func changeLogSpan(group uint64, from, to engine.Revision) engine.Span {
	return engine.Span{Start: changeLogKey(group, from), End: changeLogKey(group, to)}
}

// encodeChangeLog encodes the user keys a revision wrote, each once, in the
// order of their first write.
func encodeChangeLog(keys [][]byte) []byte {
	var b []byte
	seen := make(map[string]struct{}, len(keys))
	for _, k := range keys {
		if _, dup := seen[string(k)]; dup {
			continue
		}
		seen[string(k)] = struct{}{}
		b = binary.AppendUvarint(b, uint64(len(k)))
		b = append(b, k...)
	}
	return b
}

// lastChangeLogRev returns the revision of the newest change-log entry in
// span (0: none).
func lastChangeLogRev(rd engine.Reader, span engine.Span) (engine.Revision, error) {
	it, err := rd.NewIter(span)
	if err != nil {
		return 0, err
	}
	defer it.Close()
	if !it.Last() {
		return 0, it.Error()
	}
	idx, err := engine.DecodeLocalGroupIndexKey(it.Key())
	return engine.Revision(idx), err
}

func decodeChangeLog(b []byte) ([][]byte, error) {
	var keys [][]byte
	for len(b) > 0 {
		n, w := binary.Uvarint(b)
		if w <= 0 || uint64(len(b)-w) < n {
			return nil, errors.New("shard: corrupt change-log entry")
		}
		keys = append(keys, b[w:w+int(n)])
		b = b[w+int(n):]
	}
	return keys, nil
}

// FeedRevision is every event of one revision of a range.
type FeedRevision struct {
	Rev    engine.Revision
	Events []*mvccpb.Event
}

// FeedOptions says what a feed delivers.
type FeedOptions struct {
	// Generation of the descriptor the subscriber knows (0: any).
	Generation uint64
	// Start is the first revision delivered (>= 1).
	Start engine.Revision
	// End, when > 0, ends the feed once every revision <= End is delivered.
	End engine.Revision
	// PrevKV attaches each event's previous version when it still exists.
	PrevKV bool
	// MaxBatch bounds the revisions per send (64 when 0).
	MaxBatch int
}

// FeedSink receives a feed. Send gets revisions in order, then (resolved >
// 0) a checkpoint: every event of the range at or below resolved was sent.
type FeedSink func(revs []FeedRevision, resolved engine.Revision) error

// CompactedError ends a feed whose position fell below the compaction
// revision: the history it needs is gone.
type CompactedError struct {
	CompactRev engine.Revision
}

func (e *CompactedError) Error() string {
	return fmt.Sprintf("shard: feed position compacted (compact revision %d)", e.CompactRev)
}

// Feed streams the range's events from opts.Start in revision order, with
// resolved-revision checkpoints, until ctx ends, an error occurs (not the
// leader any more: a RoutingError; history compacted: a CompactedError) or,
// with opts.End, the end is reached (nil). Each revision received on
// resolveReqs (a TSO timestamp) makes the range resolved at it, then
// checkpointed. Only the leader serves feeds.
func (r *Replica) Feed(ctx context.Context, opts FeedOptions, resolveReqs <-chan engine.Revision, send FeedSink) error {
	if opts.Start < 1 {
		opts.Start = 1
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 64
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	resolveErr := make(chan error, 1)
	var resolving bool
	startResolve := func(rev engine.Revision) {
		resolving = true
		go func() {
			resolveErr <- r.resolveForFeed(ctx, rev)
		}()
	}

	cursor := opts.Start - 1 // every event <= cursor was sent
	var checkpointed engine.Revision
	// A history read waits for the range to be resolved at its end.
	wantResolve := opts.End
	for {
		r.mu.Lock()
		if err := r.checkRoutingLocked(opts.Generation); err != nil {
			r.mu.Unlock()
			return err
		}
		if !r.mu.isLeader {
			err := r.notLeaderLocked()
			r.mu.Unlock()
			return err
		}
		published, resolved, changed := r.mu.publishedRev, r.mu.resolved, r.mu.changed
		gen := r.mu.desc.GetGeneration()
		r.mu.Unlock()

		upTo := published
		if opts.End > 0 {
			upTo = min(upTo, opts.End)
		}
		if upTo > cursor {
			if err := r.sendLog(opts, gen, cursor, upTo, send); err != nil {
				return err
			}
			cursor = upTo
		}
		// Everything published is sent; resolved says nothing more can
		// appear up to it.
		frontier := cursor
		if upTo == published {
			frontier = max(cursor, resolved)
		}
		if opts.End > 0 && frontier >= opts.End {
			return send(nil, opts.End)
		}
		if frontier > checkpointed {
			if err := send(nil, frontier); err != nil {
				return err
			}
			checkpointed = frontier
		}
		if !resolving && wantResolve > frontier {
			startResolve(wantResolve)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
		case rev, ok := <-resolveReqs:
			if !ok {
				resolveReqs = nil
				continue
			}
			if rev > wantResolve {
				wantResolve = rev
			}
		case err := <-resolveErr:
			resolving = false
			if err != nil {
				return err
			}
		}
	}
}

// sendLog sends the events of the revisions in (from, to].
func (r *Replica) sendLog(opts FeedOptions, gen uint64, from, to engine.Revision, send FeedSink) error {
	snap := r.cfg.Engine.NewSnapshot()
	defer snap.Close()
	// A split or merge between the check of the generation and this
	// snapshot moved change-log entries to another range: end the feed
	// (the subscriber follows the new layout from its position) rather
	// than read a log that lacks them.
	// (An older snapshot is fine: the apply changes the descriptor in
	// memory before its batch commits, and the log it holds is complete.)
	if d, err := ReadDescriptor(snap, r.group); err != nil {
		return err
	} else if d.GetGeneration() > gen {
		return &RoutingError{Code: tesserapb.RoutingError_STALE_GENERATION, Descriptor: d,
			Msg: fmt.Sprintf("range %d changed to generation %d under a feed", r.group, d.GetGeneration())}
	}
	// The snapshot is older than this check: if no entry above from was
	// cut yet, the snapshot still holds them and the versions they name.
	// A history read (End set) follows etcd: any start below the
	// compaction revision is compacted. A live feed only fails when it
	// lost events, so a compaction ahead of an idle range's position does
	// not end it.
	r.mu.Lock()
	compact, cut := r.mu.compactRev, r.mu.logCut
	r.mu.Unlock()
	if opts.End > 0 && from+1 < compact || from < cut {
		return &CompactedError{CompactRev: compact}
	}
	it, err := snap.NewIter(changeLogSpan(uint64(r.group), from+1, to+1))
	if err != nil {
		return fmt.Errorf("shard: range %d: feed: %w", r.group, err)
	}
	defer it.Close()
	var batch []FeedRevision
	for valid := it.First(); valid; valid = it.Next() {
		idx, err := engine.DecodeLocalGroupIndexKey(it.Key())
		if err != nil {
			return fmt.Errorf("shard: range %d: feed: %w", r.group, err)
		}
		raw, err := it.Value()
		if err != nil {
			return fmt.Errorf("shard: range %d: feed: %w", r.group, err)
		}
		keys, err := decodeChangeLog(raw)
		if err != nil {
			return fmt.Errorf("shard: range %d: revision %d: %w", r.group, idx, err)
		}
		rev := engine.Revision(idx)
		fr := FeedRevision{Rev: rev, Events: make([]*mvccpb.Event, 0, len(keys))}
		for _, k := range keys {
			ev, err := eventAt(snap, k, rev, opts.PrevKV)
			if err != nil {
				return fmt.Errorf("shard: range %d: event of %q at %d: %w", r.group, k, rev, err)
			}
			fr.Events = append(fr.Events, ev)
		}
		batch = append(batch, fr)
		if len(batch) >= opts.MaxBatch {
			if err := send(batch, 0); err != nil {
				return err
			}
			batch = nil
		}
	}
	if err := it.Error(); err != nil {
		return fmt.Errorf("shard: range %d: feed: %w", r.group, err)
	}
	if len(batch) > 0 {
		return send(batch, 0)
	}
	return nil
}

// eventAt builds the etcd event of the version of key written at rev.
func eventAt(rd engine.Reader, key []byte, rev engine.Revision, prevKV bool) (*mvccpb.Event, error) {
	var cur *engine.KeyValue
	err := engine.MVCCVersions(rd, key, append(append([]byte(nil), key...), 0), rev, rev, func(kv engine.KeyValue) bool {
		cur = &kv
		return false
	})
	if err != nil {
		return nil, err
	}
	if cur == nil {
		return nil, errors.New("version named by the change log is missing")
	}
	ev := &mvccpb.Event{}
	if cur.Tombstone {
		ev.Type = mvccpb.DELETE
		ev.Kv = &mvccpb.KeyValue{Key: cur.Key, ModRevision: int64(rev)}
	} else {
		ev.Type = mvccpb.PUT
		ev.Kv = toKeyValue(*cur)
	}
	if prevKV && rev > 1 {
		prev, ok, err := engine.MVCCGet(rd, key, rev-1)
		if err != nil {
			return nil, err
		}
		if ok {
			ev.PrevKv = toKeyValue(prev)
		}
	}
	return ev, nil
}
