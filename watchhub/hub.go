package watchhub

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/grpc"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tesseradb/tessera/engine"
	"github.com/tesseradb/tessera/internal/backoff"
	"github.com/tesseradb/tessera/proto/tesserapb"
	"github.com/tesseradb/tessera/raftgroup"
	"github.com/tesseradb/tessera/shard"
)

// Ranges is the node's view of the range layout (the router's range cache).
type Ranges interface {
	// Overlapping returns the ranges holding keys of the etcd span [key,
	// end) (end empty: key alone; "\x00": every key from key on).
	Overlapping(key, end []byte) []*tesserapb.RangeDescriptor
	// Cover is Overlapping with no gap: parts of the span the node does
	// not know a range for are looked up in the range directory.
	Cover(ctx context.Context, key, end []byte) ([]*tesserapb.RangeDescriptor, error)
	// Update learns a descriptor (a routing error's), under the
	// generation rule.
	Update(d *tesserapb.RangeDescriptor) bool
	// Replacement returns the ranges now covering d's span and true when d
	// split or merged (rangesub_layout.go).
	Replacement(ctx context.Context, d *tesserapb.RangeDescriptor) ([]*tesserapb.RangeDescriptor, bool, error)
	Leader(rangeID uint64) raftgroup.NodeID
	SetLeader(rangeID uint64, n raftgroup.NodeID)
}

// Peers gives connections to the nodes' peer ports (placement.Nodes).
type Peers interface {
	Conn(id raftgroup.NodeID) (*grpc.ClientConn, error)
}

// Config configures a Hub.
type Config struct {
	ClusterID uint64
	NodeID    raftgroup.NodeID
	Ranges    Ranges
	Peers     Peers
	// Clock hands out fresh revisions (the node's TSO client): the "now" of
	// a watch without a start revision and of progress requests.
	Clock shard.Clock
	// Current returns etcd's current revision (the cluster's latest write at
	// or below a fresh timestamp) and that timestamp: what created and
	// progress responses name (revision.go; the router's CurrentRevision).
	// Nil: the fresh timestamp itself.
	Current func(ctx context.Context) (cur, at engine.Revision, err error)
	// ProgressNotifyInterval is how often watchers that asked for progress
	// notifications get one (etcd's
	// --experimental-watch-progress-notify-interval, 10 minutes).
	ProgressNotifyInterval time.Duration
	// MaxRequestBytes is the size above which a response to a watcher that
	// allows fragments is split (etcd's --max-request-bytes, 1.5 MiB).
	MaxRequestBytes int
	// StreamQueue bounds the responses waiting to be sent on one stream
	// (1024). A synced watcher whose response finds the queue full becomes
	// unsynced and catches up on its own.
	StreamQueue int
	// RingRevisions is how many released revisions the hub keeps in memory
	// for watchers catching up (4096).
	RingRevisions int
	// AuthorizeCreate, if set, is asked before a watch is created (auth:
	// the caller must be allowed to read the watched range). A refusal
	// answers the creation as etcd does: created and canceled at once,
	// watch id -1, the error's text as the cancel reason. Nil allows all.
	AuthorizeCreate func(ctx context.Context, req *pb.WatchCreateRequest) error
	Registerer      prometheus.Registerer
	Logger          *slog.Logger
}

// Hub is a node's etcd Watch service.
type Hub struct {
	pb.UnimplementedWatchServer

	cfg  Config
	m    *metrics
	log  *slog.Logger
	kick chan struct{}
	stop chan struct{}
	wg   sync.WaitGroup

	mu struct {
		sync.Mutex
		// released is G: every event <= G of every subscribed range has
		// been given to the synced watchers covering it.
		released engine.Revision
		// subs: the range subscriptions by range and generation (a range
		// that split or merged may have an ending subscription at its old
		// generation besides one at the new).
		subs map[subKey]*rangeSub
		// orphans: events received by subscriptions replaced after a split
		// or merge, not yet released (rangesub_layout.go).
		orphans []releasedRev
		synced  map[*watcher]struct{}
		// ring holds the most recently released revisions, ascending; it
		// holds every released revision in (ringFloor, released].
		ring      []releasedRev
		ringFloor engine.Revision
		pending   int // events received, not yet released
		// progress requests waiting for G to reach their revision.
		progress     []progressReq
		notifyTarget engine.Revision // per-watcher progress notifications due at it
		notifyCur    engine.Revision // the latest write at or below notifyTarget
		lastEvent    engine.Revision // the newest event released (revision.go)
		closed       bool
	}
}

// releasedRev is the events of one revision.
type releasedRev struct {
	rev    engine.Revision
	events []*mvccpb.Event
}

type progressReq struct {
	s   *stream
	rev engine.Revision
	cur engine.Revision // the latest write at or below rev
}

var _ pb.WatchServer = (*Hub)(nil)

// New returns a running hub; Close stops it.
func New(cfg Config) *Hub {
	if cfg.ProgressNotifyInterval <= 0 {
		cfg.ProgressNotifyInterval = 10 * time.Minute
	}
	if cfg.MaxRequestBytes <= 0 {
		cfg.MaxRequestBytes = shard.DefaultLimits().MaxRequestBytes
	}
	if cfg.StreamQueue <= 0 {
		cfg.StreamQueue = 1024
	}
	if cfg.RingRevisions <= 0 {
		cfg.RingRevisions = 4096
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	h := &Hub{
		cfg:  cfg,
		m:    newMetrics(cfg.Registerer),
		log:  cfg.Logger,
		kick: make(chan struct{}, 1),
		stop: make(chan struct{}),
	}
	h.mu.subs = map[subKey]*rangeSub{}
	h.mu.synced = map[*watcher]struct{}{}
	h.wg.Add(2)
	go func() {
		defer h.wg.Done()
		h.loop()
	}()
	go func() {
		defer h.wg.Done()
		h.notifyLoop()
	}()
	return h
}

// Close stops the hub and its range subscriptions. Open watch streams end
// when the gRPC server stops.
func (h *Hub) Close() {
	h.mu.Lock()
	if h.mu.closed {
		h.mu.Unlock()
		return
	}
	h.mu.closed = true
	subs := h.mu.subs
	h.mu.subs = map[subKey]*rangeSub{}
	h.mu.Unlock()
	close(h.stop)
	for _, rs := range subs {
		rs.cancel()
		<-rs.done
	}
	h.wg.Wait()
}

func (h *Hub) header(rev engine.Revision) *pb.ResponseHeader {
	return &pb.ResponseHeader{ClusterId: h.cfg.ClusterID, MemberId: uint64(h.cfg.NodeID), Revision: int64(rev)}
}

// wake asks the loop for a round.
func (h *Hub) wake() {
	select {
	case h.kick <- struct{}{}:
	default:
	}
}

// now returns a fresh revision, retrying while the TSO is unavailable (an
// election) until ctx ends.
func (h *Hub) now(ctx context.Context) (engine.Revision, error) {
	retry := backoff.New(tsoRetryBackoff)
	for {
		tctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		rev, err := h.cfg.Clock.Timestamps(tctx, 1)
		cancel()
		if err == nil {
			return rev, nil
		}
		if retry.Wait(ctx) != nil {
			return 0, fmt.Errorf("watchhub: fresh revision: %w", err)
		}
	}
}

// tsoRetryBackoff paces the hub's retries of a fresh revision while the TSO
// is unavailable: 50 ms, doubling up to 500 ms (an election takes about 1 s).
var tsoRetryBackoff = backoff.Config{Min: 50 * time.Millisecond, Max: 500 * time.Millisecond}

func (h *Hub) loop() {
	for {
		select {
		case <-h.stop:
			return
		case <-h.kick:
		}
		h.round()
	}
}

// notifyLoop makes per-watcher progress notifications due every interval,
// at a fresh revision (sent once G reaches it).
func (h *Hub) notifyLoop() {
	t := time.NewTicker(h.cfg.ProgressNotifyInterval)
	defer t.Stop()
	for {
		select {
		case <-h.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), h.cfg.ProgressNotifyInterval)
		cur, rev, err := h.current(ctx)
		cancel()
		if err != nil {
			continue
		}
		h.mu.Lock()
		h.mu.notifyTarget = max(h.mu.notifyTarget, rev)
		h.mu.notifyCur = max(h.mu.notifyCur, cur)
		h.mu.Unlock()
		h.wake()
	}
}

// round releases what every subscription has received, answers progress
// requests that can be answered, and asks lagging ranges to resolve.
func (h *Hub) round() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.mu.subs) > 0 {
		g := engine.Revision(1<<63 - 1)
		for _, rs := range h.mu.subs {
			g = min(g, rs.frontier)
		}
		if g > h.mu.released {
			h.releaseLocked(g)
		}
	}
	h.answerProgressLocked()

	// Ranges behind the newest event received, or behind a progress
	// request, are asked to resolve up to it.
	var target engine.Revision
	for _, rs := range h.mu.subs {
		if n := len(rs.pending); n > 0 {
			target = max(target, rs.pending[n-1].rev)
		}
	}
	for _, p := range h.mu.progress {
		target = max(target, p.rev)
	}
	target = max(target, h.mu.notifyTarget)
	for _, rs := range h.mu.subs {
		if rs.frontier < target && rs.want < target {
			rs.want = target
			rs.wakeResolve()
		}
	}
	h.m.pendingEvents.Set(float64(h.mu.pending))
}

// releaseLocked releases every received revision <= g in revision order to
// the synced watchers.
func (h *Hub) releaseLocked(g engine.Revision) {
	var revs []releasedRev
	for _, rs := range h.mu.subs {
		i := 0
		for i < len(rs.pending) && rs.pending[i].rev <= g {
			h.mu.pending -= len(rs.pending[i].events)
			i++
		}
		if i > 0 {
			revs = append(revs, rs.pending[:i]...)
			rs.pending = append([]releasedRev(nil), rs.pending[i:]...)
		}
	}
	kept := h.mu.orphans[:0]
	for _, o := range h.mu.orphans {
		if o.rev <= g {
			h.mu.pending -= len(o.events)
			revs = append(revs, o)
		} else {
			kept = append(kept, o)
		}
	}
	h.mu.orphans = kept
	// A revision belongs to one range (each TSO timestamp is handed out
	// once), so sorting the ranges' ordered runs gives the one order.
	// Around a split or merge, two subscriptions may both have received
	// a revision (the old range and a new one): it is released once.
	sortRevs(revs)
	revs = dedupeRevs(revs)
	prev := h.mu.released
	h.mu.released = g
	if n := len(revs); n > 0 {
		h.mu.lastEvent = max(h.mu.lastEvent, revs[n-1].rev)
	}
	h.mu.ring = append(h.mu.ring, revs...)
	if over := len(h.mu.ring) - h.cfg.RingRevisions; over > 0 {
		h.mu.ringFloor = h.mu.ring[over-1].rev
		h.mu.ring = append([]releasedRev(nil), h.mu.ring[over:]...)
	}
	if len(revs) == 0 {
		return
	}
	for w := range h.mu.synced {
		evs := w.filter(revs, prev)
		if len(evs) == 0 {
			continue
		}
		switch res, done := w.s.pushEvents(w, g, evs, false); res {
		case pushFull:
			// The stream cannot take more: this watcher catches up on its
			// own from what it was last given.
			delete(h.mu.synced, w)
			w.synced = false
			h.m.unsynced.Inc()
			h.startCatchUpLocked(w, max(prev, w.start-1, done))
		case pushed:
			w.sentEvents = true
		}
	}
}

// answerProgressLocked sends the progress responses that are due: a stream's
// RequestProgress once G reached its revision and all its watchers are
// synced; per-watcher notifications once G reached the notify target.
func (h *Hub) answerProgressLocked() {
	g := h.mu.released
	kept := h.mu.progress[:0]
	for _, p := range h.mu.progress {
		if !p.s.closed() && (g < p.rev && len(h.mu.subs) > 0 || !p.s.allSynced()) {
			kept = append(kept, p)
			continue
		}
		// Every event up to p.rev was sent (or nothing is subscribed: no
		// event can be owed). etcd answers with watch id -1.
		p.s.push(nil, &pb.WatchResponse{Header: h.header(h.progressRevLocked(p.cur)), WatchId: -1}, false)
	}
	for i := len(kept); i < len(h.mu.progress); i++ {
		h.mu.progress[i] = progressReq{}
	}
	h.mu.progress = kept
	if t := h.mu.notifyTarget; t > 0 && (g >= t || len(h.mu.subs) == 0) {
		rev := h.progressRevLocked(h.mu.notifyCur)
		h.mu.notifyTarget, h.mu.notifyCur = 0, 0
		for w := range h.mu.synced {
			if !w.progressNotify {
				continue
			}
			if w.sentEvents {
				// etcd skips watchers that got events since the last tick.
				w.sentEvents = false
				continue
			}
			w.s.push(w, &pb.WatchResponse{Header: h.header(rev), WatchId: w.id}, false)
		}
	}
}

// add registers a new watcher: it subscribes the ranges it covers and
// becomes synced, or unsynced with a catch-up when it starts at or below G.
// now is a fresh revision taken when the watch was created.
func (h *Hub) add(w *watcher, descs []*tesserapb.RangeDescriptor, now engine.Revision) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.mu.subs) == 0 && now > h.mu.released {
		// Nothing was followed: G may jump to now (no watcher is owed an
		// event of the revisions skipped), and the ring starts afresh.
		h.mu.released = now
		h.mu.ring = nil
		h.mu.ringFloor = now
	}
	for _, d := range descs {
		rs := h.mu.subs[keyOf(d)]
		if rs == nil {
			rs = h.newRangeSubLocked(d, h.mu.released, h.mu.released, 0)
		}
		rs.refs++
		rs.watchers[w] = struct{}{}
		w.subs = append(w.subs, rs)
	}
	h.m.subscriptions.Set(float64(len(h.mu.subs)))
	h.m.watchers.Inc()
	if w.start > h.mu.released && w.start >= w.validFrom() {
		w.synced = true
		h.mu.synced[w] = struct{}{}
		return
	}
	h.startCatchUpLocked(w, w.start-1)
}

// remove drops a watcher (canceled, or its stream ended).
func (h *Hub) remove(w *watcher) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if w.removed {
		return
	}
	w.removed = true
	delete(h.mu.synced, w)
	if w.stopCatchUp != nil {
		w.stopCatchUp()
	}
	for _, rs := range w.subs {
		rs.refs--
		delete(rs.watchers, w)
		if rs.refs == 0 {
			if h.mu.subs[keyOf(rs.desc)] == rs {
				delete(h.mu.subs, keyOf(rs.desc))
			}
			h.mu.pending -= rs.pendingEvents()
			rs.cancel()
		}
	}
	h.m.subscriptions.Set(float64(len(h.mu.subs)))
	h.m.watchers.Dec()
}
