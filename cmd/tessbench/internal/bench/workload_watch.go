package bench

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/metadata"
)

// watchStampSize is the size of the send time at the start of each value
// the watch workload writes: 16 hex digits of nanoseconds since the run's
// epoch.
const watchStampSize = 16

// watchEventOp names the histogram of put→event latencies; its throughput
// is events delivered per second across all watchers.
const watchEventOp = "watch-event"

// watchWorkload opens Watchers watch streams on one prefix and puts to keys
// under it (each client is a putter; one client is the classic setup). Every
// value carries its send time, so each watcher measures put→event latency
// on the receiving side. After the last put the workload waits up to
// WatchDrainTimeout for every watcher to have seen every event, and counts
// the events still missing, and any delivered out of revision order, as
// errors.
type watchWorkload struct {
	cfg      WorkloadConfig
	env      *Env
	keys     KeyGen
	val      []byte
	epoch    time.Time
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	watchers []*watcher
	stopOnce sync.Once
	stopping atomic.Bool
}

var _ Workload = (*watchWorkload)(nil)

// watcher is one watch stream's receiving side.
type watcher struct {
	received atomic.Int64
	mu       struct {
		sync.Mutex
		hist       *Histogram
		lastRev    int64
		lastEvent  time.Time
		outOfOrder int64
		badValues  int64
		errs       map[string]int64
	}
}

func (w *watchWorkload) Name() string { return "watch" }

func (w *watchWorkload) Params() map[string]any {
	p := map[string]any{
		"key-size": w.cfg.KeySize, "val-size": w.cfg.ValueSize, "key-space": w.cfg.KeySpace,
		"watchers": w.cfg.Watchers,
	}
	if w.env != nil {
		p["putters"] = w.env.Run.Clients
	}
	return p
}

func (w *watchWorkload) Setup(ctx context.Context, env *Env) error {
	w.env = env
	keys, err := w.cfg.keyGen(w.Name())
	if err != nil {
		return err
	}
	w.keys = keys
	w.val = value(w.cfg.ValueSize)
	w.epoch = env.Clock.Now()
	wctx, cancel := context.WithCancel(ctx)
	w.cancel = cancel
	for i := range w.cfg.Watchers {
		// Distinct metadata gives each watcher its own gRPC stream, as N
		// independent watching processes would have; clientv3 would
		// otherwise multiplex all watches of a connection on one stream.
		sctx := metadata.AppendToOutgoingContext(wctx, "tessbench-watcher", strconv.Itoa(i))
		wch := env.Client(i).Watch(sctx, keys.Prefix(), clientv3.WithPrefix(), clientv3.WithCreatedNotify())
		if err := w.awaitCreated(ctx, wch); err != nil {
			return fmt.Errorf("bench: watcher %d: %w", i, err)
		}
		wt := &watcher{}
		wt.mu.hist = NewHistogram()
		wt.mu.errs = map[string]int64{}
		w.watchers = append(w.watchers, wt)
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			w.receive(wt, wch)
		}()
	}
	return nil
}

func (w *watchWorkload) awaitCreated(ctx context.Context, wch clientv3.WatchChan) error {
	timer := time.NewTimer(w.env.Run.Timeout)
	defer timer.Stop()
	select {
	case resp, ok := <-wch:
		switch {
		case !ok:
			return fmt.Errorf("watch closed before it was created: %w", ctx.Err())
		case resp.Err() != nil:
			return fmt.Errorf("create watch: %w", resp.Err())
		case !resp.Created:
			return fmt.Errorf("first watch response is not the creation (%d events)", len(resp.Events))
		}
		return nil
	case <-timer.C:
		return fmt.Errorf("watch not created within %s", w.env.Run.Timeout)
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (w *watchWorkload) receive(wt *watcher, wch clientv3.WatchChan) {
	for resp := range wch {
		now := w.env.Clock.Now()
		wt.mu.Lock()
		if err := resp.Err(); err != nil {
			if !w.stopping.Load() {
				wt.mu.errs[Classify(err)]++
			}
		}
		for _, ev := range resp.Events {
			if ev.Type != mvccpb.PUT {
				continue
			}
			if ev.Kv.ModRevision <= wt.mu.lastRev {
				wt.mu.outOfOrder++
			}
			wt.mu.lastRev = ev.Kv.ModRevision
			sent, ok := parseStamp(ev.Kv.Value)
			if !ok {
				wt.mu.badValues++
				continue
			}
			wt.mu.hist.Record(now.Sub(w.epoch) - sent)
		}
		if len(resp.Events) > 0 {
			wt.mu.lastEvent = now
		}
		wt.mu.Unlock()
		wt.received.Add(int64(len(resp.Events)))
	}
}

func (w *watchWorkload) Worker(i int) (Worker, error) {
	cli := w.env.Client(i)
	pick := newKeyPicker(w.keys.Space(), nil, w.env.Rand(i))
	buf := append([]byte(nil), w.val...)
	return WorkerFunc(func(ctx context.Context) (string, error) {
		putStamp(buf, w.env.Clock.Now().Sub(w.epoch))
		_, err := cli.Put(ctx, w.keys.Key(pick.next()), string(buf))
		return "put", err
	}), nil
}

func (w *watchWorkload) Finish(ctx context.Context, span RunSpan, rec *Recorder, res *Result) error {
	want := rec.Histogram("put").Count()
	deadline := time.NewTimer(w.cfg.WatchDrainTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
drain:
	for _, wt := range w.watchers {
		for wt.received.Load() < want {
			select {
			case <-tick.C:
			case <-deadline.C:
				break drain
			case <-ctx.Done():
				break drain
			}
		}
	}
	w.stop()

	var last time.Time
	for _, wt := range w.watchers {
		wt.mu.Lock()
		rec.Histogram(watchEventOp).Merge(wt.mu.hist)
		if n := want - wt.received.Load(); n > 0 {
			rec.RecordError(watchEventOp, "Client: watch: events missing after drain", n)
		}
		if wt.mu.outOfOrder > 0 {
			rec.RecordError(watchEventOp, "Client: watch: event revisions out of order", wt.mu.outOfOrder)
		}
		if wt.mu.badValues > 0 {
			rec.RecordError(watchEventOp, "Client: watch: event value without send time", wt.mu.badValues)
		}
		for k, n := range wt.mu.errs {
			rec.RecordError(watchEventOp, k, n)
		}
		if wt.mu.lastEvent.After(last) {
			last = wt.mu.lastEvent
		}
		wt.mu.Unlock()
	}
	if !last.IsZero() {
		rec.SetSpan(watchEventOp, last.Sub(span.Start))
	}
	res.Counters["watchers"] = int64(len(w.watchers))
	return nil
}

// stop ends every watch and waits for the receivers.
func (w *watchWorkload) stop() {
	w.stopOnce.Do(func() {
		w.stopping.Store(true)
		if w.cancel != nil {
			w.cancel()
		}
		w.wg.Wait()
	})
}

func (w *watchWorkload) Close(context.Context) error {
	w.stop()
	return nil
}

// putStamp writes d at the start of buf as 16 hex digits.
func putStamp(buf []byte, d time.Duration) {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(d))
	hex.Encode(buf[:watchStampSize], b[:])
}

// parseStamp reads what putStamp wrote.
func parseStamp(v []byte) (time.Duration, bool) {
	if len(v) < watchStampSize {
		return 0, false
	}
	var b [8]byte
	if _, err := hex.Decode(b[:], v[:watchStampSize]); err != nil {
		return 0, false
	}
	return time.Duration(binary.BigEndian.Uint64(b[:])), true
}
