package watchhub

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sync"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/protobuf/proto"

	"github.com/tesseradb/tessera/engine"
	"github.com/tesseradb/tessera/placement"
)

// etcd's texts for watch creations it refuses (mvcc package errors).
const (
	reasonEmptyRange  = "mvcc: watcher range is empty"
	reasonDuplicateID = "mvcc: duplicate watch ID provided on the WatchStream"
)

// watcher is one watch of a stream.
type watcher struct {
	id int64
	s  *stream
	// [key, end); end nil: no upper bound.
	key, end       []byte
	start          engine.Revision
	prevKV         bool
	noPut          bool
	noDelete       bool
	progressNotify bool
	fragment       bool

	// Guarded by Hub.mu.
	subs        []*rangeSub
	synced      bool
	removed     bool
	sentEvents  bool // events sent since the last progress tick
	stopCatchUp context.CancelFunc

	// Guarded by stream.mu: nothing is queued for the watcher once gone.
	gone bool
}

// validFrom is the lowest revision every subscription of w still follows.
func (w *watcher) validFrom() engine.Revision {
	var v engine.Revision
	for _, rs := range w.subs {
		v = max(v, rs.validFrom)
	}
	return v
}

func (w *watcher) matches(ev *mvccpb.Event) bool {
	k := ev.GetKv().GetKey()
	if bytes.Compare(k, w.key) < 0 || w.end != nil && bytes.Compare(k, w.end) >= 0 {
		return false
	}
	if ev.GetType() == mvccpb.PUT {
		return !w.noPut
	}
	return !w.noDelete
}

// filter returns the events of revs above after and at or above the
// watcher's start that it wants, in order.
func (w *watcher) filter(revs []releasedRev, after engine.Revision) []*mvccpb.Event {
	var out []*mvccpb.Event
	for _, r := range revs {
		if r.rev <= after || r.rev < w.start {
			continue
		}
		for _, ev := range r.events {
			if !w.matches(ev) {
				continue
			}
			if !w.prevKV && ev.PrevKv != nil {
				ev = &mvccpb.Event{Type: ev.Type, Kv: ev.Kv}
			}
			out = append(out, ev)
		}
	}
	return out
}

// stream is one Watch gRPC stream.
type stream struct {
	h   *Hub
	srv pb.Watch_WatchServer
	ctx context.Context

	mu struct {
		sync.Mutex
		q        []outItem
		watchers map[int64]*watcher
		nextID   int64
		closed   bool
	}
	queued  chan struct{} // something was queued
	drained chan struct{} // the queue was taken by the sender
}

type outItem struct {
	resp     *pb.WatchResponse
	fragment bool
}

type pushResult int

const (
	pushed pushResult = iota
	pushFull
	pushGone
)

// push queues a response for w (nil: a stream-level response). Without
// block it fails with pushFull when the queue is full; with block it waits
// for room (a watcher catching up).
func (s *stream) push(w *watcher, resp *pb.WatchResponse, block bool) pushResult {
	for {
		s.mu.Lock()
		if s.mu.closed || w != nil && w.gone {
			s.mu.Unlock()
			return pushGone
		}
		if len(s.mu.q) < s.h.cfg.StreamQueue {
			s.mu.q = append(s.mu.q, outItem{resp: resp, fragment: w != nil && w.fragment})
			s.mu.Unlock()
			signal(s.queued)
			return pushed
		}
		s.mu.Unlock()
		if !block {
			return pushFull
		}
		select {
		case <-s.drained:
		case <-s.ctx.Done():
			return pushGone
		}
	}
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// finish queues w's last response (canceled), whatever the queue holds,
// and marks it gone. It reports false when w was already gone.
func (s *stream) finish(w *watcher, resp *pb.WatchResponse) bool {
	s.mu.Lock()
	if w.gone {
		s.mu.Unlock()
		return false
	}
	w.gone = true
	delete(s.mu.watchers, w.id)
	if !s.mu.closed {
		s.mu.q = append(s.mu.q, outItem{resp: resp})
	}
	s.mu.Unlock()
	signal(s.queued)
	return true
}

func (s *stream) cancelCompacted(w *watcher, rev engine.Revision) {
	if s.finish(w, &pb.WatchResponse{Header: s.h.header(rev), WatchId: w.id, Canceled: true, CompactRevision: int64(rev)}) {
		s.h.remove(w)
	}
}

func (s *stream) closed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mu.closed
}

// allSynced reports whether every watcher of the stream is synced (Hub.mu
// held).
func (s *stream) allSynced() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, w := range s.mu.watchers {
		if !w.synced && !w.removed {
			return false
		}
	}
	return true
}

// Watch implements etcd's Watch service.
func (h *Hub) Watch(srv pb.Watch_WatchServer) error {
	ctx, cancel := context.WithCancel(srv.Context())
	defer cancel()
	s := &stream{h: h, srv: srv, ctx: ctx, queued: make(chan struct{}, 1), drained: make(chan struct{}, 1)}
	s.mu.watchers = map[int64]*watcher{}
	h.m.streams.Inc()
	defer h.m.streams.Dec()

	sendErr := make(chan error, 1)
	go func() { sendErr <- s.sendLoop() }()
	recvErr := make(chan error, 1)
	go func() { recvErr <- s.recvLoop() }()

	var err error
	select {
	case err = <-sendErr:
	case err = <-recvErr:
		if err == nil {
			// The client closed its side: keep sending, as etcd does,
			// until the stream ends.
			select {
			case err = <-sendErr:
			case <-ctx.Done():
			}
		}
	case <-ctx.Done():
	}
	cancel()
	s.mu.Lock()
	s.mu.closed = true
	ws := make([]*watcher, 0, len(s.mu.watchers))
	for _, w := range s.mu.watchers {
		w.gone = true
		ws = append(ws, w)
	}
	s.mu.watchers = nil
	s.mu.Unlock()
	for _, w := range ws {
		h.remove(w)
	}
	return err
}

func (s *stream) recvLoop() error {
	for {
		req, err := s.srv.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		switch r := req.GetRequestUnion().(type) {
		case *pb.WatchRequest_CreateRequest:
			if r.CreateRequest != nil {
				s.create(r.CreateRequest)
			}
		case *pb.WatchRequest_CancelRequest:
			if r.CancelRequest != nil {
				s.cancelWatch(r.CancelRequest.GetWatchId())
			}
		case *pb.WatchRequest_ProgressRequest:
			if r.ProgressRequest != nil {
				s.requestProgress()
			}
		}
		// Unknown request kinds are ignored, as etcd does.
	}
}

// create handles a WatchCreateRequest.
func (s *stream) create(req *pb.WatchCreateRequest) {
	h := s.h
	refuse := func(reason string) {
		s.push(nil, &pb.WatchResponse{Header: h.header(0), WatchId: -1, Created: true, Canceled: true, CancelReason: reason}, true)
	}
	if authorize := h.cfg.AuthorizeCreate; authorize != nil {
		if err := authorize(s.ctx, req); err != nil {
			refuse(err.Error())
			return
		}
	}
	key := req.GetKey()
	var end []byte
	switch re := req.GetRangeEnd(); {
	case len(re) == 0:
		end = append(append([]byte(nil), key...), 0)
	case len(re) == 1 && re[0] == 0:
		end = nil
	default:
		if bytes.Compare(key, re) >= 0 {
			refuse(reasonEmptyRange)
			return
		}
		end = re
	}
	// A watch without a start revision watches what is written after now;
	// its created response names the latest write (revision.go).
	cur, now, err := h.current(s.ctx)
	if err != nil {
		refuse(err.Error())
		return
	}
	w := &watcher{
		s: s, key: append([]byte(nil), key...), end: end,
		prevKV: req.GetPrevKv(), progressNotify: req.GetProgressNotify(), fragment: req.GetFragment(),
	}
	for _, f := range req.GetFilters() {
		switch f {
		case pb.WatchCreateRequest_NOPUT:
			w.noPut = true
		case pb.WatchCreateRequest_NODELETE:
			w.noDelete = true
		}
	}
	switch sr := req.GetStartRevision(); {
	case sr == 0:
		w.start = now + 1
	case sr < 0:
		w.start = 1
	default:
		w.start = engine.Revision(sr)
	}

	s.mu.Lock()
	if id := req.GetWatchId(); id != 0 {
		if _, dup := s.mu.watchers[id]; dup {
			s.mu.Unlock()
			refuse(reasonDuplicateID)
			return
		}
		w.id = id
	} else {
		for s.mu.watchers[s.mu.nextID] != nil {
			s.mu.nextID++
		}
		w.id = s.mu.nextID
		s.mu.nextID++
	}
	s.mu.watchers[w.id] = w
	s.mu.Unlock()
	// The ranges to follow, with no gap: a split's right half this node
	// has not seen yet is looked up in the range directory.
	descs, err := h.cfg.Ranges.Cover(s.ctx, w.key, req.GetRangeEnd())
	if err != nil {
		h.log.Warn("watch: ranges of the span not all known; following the known ones", "err", err)
		descs = h.cfg.Ranges.Overlapping(w.key, req.GetRangeEnd())
	}
	// The created response goes out before any event of the watcher.
	if s.push(nil, &pb.WatchResponse{Header: h.header(cur), WatchId: w.id, Created: true}, true) != pushed {
		return
	}
	h.add(w, descs, now)
}

func (s *stream) cancelWatch(id int64) {
	s.mu.Lock()
	w := s.mu.watchers[id]
	s.mu.Unlock()
	if w == nil {
		return // etcd sends nothing for an unknown id
	}
	if s.finish(w, &pb.WatchResponse{Header: s.h.header(s.h.releasedRev()), WatchId: id, Canceled: true}) {
		s.h.remove(w)
	}
}

func (h *Hub) releasedRev() engine.Revision {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.mu.released
}

// requestProgress handles RequestProgress: once every event up to a fresh
// revision has been sent to the stream's watchers, a progress response
// (watch id -1) carries it.
func (s *stream) requestProgress() {
	cur, now, err := s.h.current(s.ctx)
	if err != nil {
		return
	}
	s.h.mu.Lock()
	s.h.mu.progress = append(s.h.mu.progress, progressReq{s: s, rev: now, cur: cur})
	s.h.mu.Unlock()
	s.h.wake()
}

// sendLoop sends what is queued, in order.
func (s *stream) sendLoop() error {
	for {
		s.mu.Lock()
		items := s.mu.q
		s.mu.q = nil
		s.mu.Unlock()
		if len(items) == 0 {
			select {
			case <-s.queued:
				continue
			case <-s.ctx.Done():
				return nil
			}
		}
		signal(s.drained)
		for i, it := range items {
			if err := s.send(it); err != nil {
				return err
			}
			items[i] = outItem{}
		}
	}
}

func (s *stream) send(it outItem) error {
	resp := it.resp
	if len(resp.Events) > 0 {
		now := time.Now()
		for _, ev := range resp.Events {
			ms := ev.GetKv().GetModRevision() >> placement.LogicalBits
			s.h.m.eventLatency.Observe(now.Sub(time.UnixMilli(ms)).Seconds())
		}
		s.h.m.eventsSent.Add(float64(len(resp.Events)))
	}
	if !it.fragment || len(resp.Events) < 2 || proto.Size(resp) < s.h.cfg.MaxRequestBytes {
		return s.srv.Send(resp)
	}
	// Split into fragments, each under the limit (or one event), all but
	// the last marked as fragments, as etcd does.
	events := resp.Events
	for len(events) > 0 {
		frag := &pb.WatchResponse{Header: resp.Header, WatchId: resp.WatchId}
		size := proto.Size(frag)
		n := 0
		for n < len(events) {
			es := proto.Size(events[n]) + 8
			if n > 0 && size+es >= s.h.cfg.MaxRequestBytes {
				break
			}
			size += es
			n++
		}
		frag.Events = events[:n]
		events = events[n:]
		frag.Fragment = len(events) > 0
		if err := s.srv.Send(frag); err != nil {
			return err
		}
	}
	return nil
}

// chunks splits a watcher's events into the event lists of its responses:
// at revision boundaries, each under maxBytes unless one revision alone is
// larger (the fragment option splits that one further when sent).
func chunks(evs []*mvccpb.Event, maxBytes int) [][]*mvccpb.Event {
	var out [][]*mvccpb.Event
	start, size := 0, 0
	for i, ev := range evs {
		es := proto.Size(ev) + 8
		if i > start && size+es > maxBytes && ev.GetKv().GetModRevision() != evs[i-1].GetKv().GetModRevision() {
			out = append(out, evs[start:i])
			start, size = i, 0
		}
		size += es
	}
	if start < len(evs) {
		out = append(out, evs[start:])
	}
	return out
}

// pushEvents queues a watcher's events as one or more responses. On
// failure it also returns the revision up to which events were queued (0:
// none).
func (s *stream) pushEvents(w *watcher, rev engine.Revision, evs []*mvccpb.Event, block bool) (pushResult, engine.Revision) {
	var done engine.Revision
	if n := len(evs); n > 0 {
		// The header names the newest event's revision, a write's (etcd's
		// synced watchers get their event's revision).
		rev = engine.Revision(evs[n-1].GetKv().GetModRevision())
	}
	for _, c := range chunks(evs, s.h.cfg.MaxRequestBytes) {
		if r := s.push(w, &pb.WatchResponse{Header: s.h.header(rev), WatchId: w.id, Events: c}, block); r != pushed {
			return r, done
		}
		done = engine.Revision(c[len(c)-1].GetKv().GetModRevision())
	}
	return pushed, done
}
