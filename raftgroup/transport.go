package raftgroup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/tesseradb/tessera/proto/raftrpc"
)

// The Transport carries raft messages between nodes.
//
// Outbound, each peer node gets a send queue and one goroutine (started on the
// first Send to it) that owns one long-lived RaftMessages stream to that peer.
// The goroutine drains everything queued into one RaftBatch (up to
// MaxBatchBytes) per stream write, so the messages of all groups bound for a
// node share writes. When a dial or a stream fails, the batch in flight is
// lost and reported through HandleUnreachable; the goroutine reconnects with
// exponential backoff while new messages keep queuing. A full queue drops the
// new message and reports its group: raft retries by itself, a transport that
// blocked its caller would stall every group on the node.
//
// A stream that breaks may have lost whatever was written to it and not yet
// processed by the peer; the transport has no acks and cannot tell which
// messages, so it reports every group that sent on that stream (see
// loseStream). Order is kept within a stream; after a reconnect, the last
// batches of the old stream may still be delivered alongside the first of
// the new one. Raft tolerates both loss and reordering.
//
// Inbound, the RaftMessages handler decodes each batch, drops what is invalid
// (counted and logged, never a panic) and hands the rest to
// MessageHandler.HandleMessages in the order the peer sent it.
//
// Snapshots travel on their own Snapshot stream: the header first, then the
// data in chunks, handed to MessageHandler.HandleSnapshot as an io.Reader;
// the handler's verdict comes back to SendSnapshot.
//
// Ownership: every goroutine the Transport starts, and every inbound RPC it
// serves, is tracked by Transport.wg; Close cancels them all and waits. After
// Close returns no Handler method is running or will be called.

// ErrTransportClosed is returned by SendSnapshot after Close.
var ErrTransportClosed = errors.New("raftgroup: transport closed")

// ErrSnapshotRejected is wrapped by the error SendSnapshot returns when the
// receiving node's handler refused the snapshot; the error's text carries the
// receiver's reason.
var ErrSnapshotRejected = errors.New("raftgroup: snapshot rejected")

// TransportConfig configures a Transport. Start from DefaultTransportConfig
// and fill in NodeID, Resolve, Handler and DialOptions.
type TransportConfig struct {
	// NodeID is this node. Required.
	NodeID NodeID
	// Resolve returns the gRPC address of a peer node. Required. It is called
	// on every (re)dial, so a peer that moved is found again after its old
	// stream breaks. It must be safe for concurrent use and should not block
	// for long (it runs in the peer's send goroutine).
	Resolve func(NodeID) (addr string, err error)
	// Handler receives inbound messages and snapshots and is told about
	// undeliverable messages. Required.
	Handler MessageHandler
	// DialOptions are used for every connection to a peer (transport
	// credentials at least; tests pass insecure credentials).
	DialOptions []grpc.DialOption
	// AuthorizePeer, if set, is asked once per inbound raft stream and per
	// snapshot whether the connection (its gRPC context: peer address, TLS
	// state) may speak for the node the stream claims to come from. A
	// refusal ends the stream with PermissionDenied before anything it
	// carries is delivered. Nil trusts the claim (no peer authentication).
	AuthorizePeer func(ctx context.Context, from NodeID) error
	// DialTimeout bounds how long opening a stream to a peer may take before
	// the attempt counts as failed. Default 5s: several RTTs of a slow
	// cross-zone link plus a TLS handshake, yet short enough that a peer whose
	// address black-holes packets is reported unreachable within a few raft
	// election timeouts.
	DialTimeout time.Duration
	// SendQueueLen is the number of messages that may wait for one peer.
	// Default 4096: a few seconds of heartbeats and appends for thousands of
	// groups during a reconnect, at the cost of a bounded amount of memory per
	// peer (the queue grows only as needed).
	SendQueueLen int
	// MaxBatchBytes bounds the encoded raft messages coalesced into one
	// RaftBatch. A single message larger than this is sent alone. Default
	// 1 MiB: amortizes stream writes over many small messages while staying
	// well under gRPC's default 4 MiB receive limit. The receiving gRPC server
	// must accept messages as large as the largest single raft message
	// (MaxSizePerMsg plus one entry) plus MaxBatchBytes.
	MaxBatchBytes int
	// SnapshotChunkBytes is the size of the data chunks of a snapshot stream.
	// Default 1 MiB: large enough that per-message overhead is negligible,
	// small enough for gRPC's default 4 MiB message limit and for flow control
	// to interleave with other streams.
	SnapshotChunkBytes int
	// ReconnectBackoffMin is the first delay before re-dialing a peer after a
	// failure; the delay doubles up to ReconnectBackoffMax on each consecutive
	// failure (with jitter). Default 100ms: a peer that restarts is reached
	// again almost at once, without spinning on a dead one.
	ReconnectBackoffMin time.Duration
	// ReconnectBackoffMax caps the reconnect delay. A stream that stayed up
	// at least this long resets the delay to ReconnectBackoffMin. Default 2s:
	// below a typical raft election timeout times a few, so a recovered peer
	// gets its heartbeats back before its groups notice, while a dead peer
	// costs one dial every 2s.
	ReconnectBackoffMax time.Duration
	// Registerer receives the Transport's metrics (unregistered again by
	// Close). Nil means the metrics are kept but not registered. Never the
	// global registry by default: a process may run several Transports.
	Registerer prometheus.Registerer
	// Logger is the Transport's logger; nil discards. The Transport logs
	// little: invalid input and peer streams going down and coming back.
	Logger *slog.Logger
	// Knobs are test hooks; nil in production.
	Knobs *TransportKnobs
}

// TransportKnobs are fault-injection hooks for tests.
type TransportKnobs struct {
	// DropMessage, if set, is consulted for every message at both ends: by
	// Send (from is this node) and before delivery to the Handler (to is this
	// node), and for snapshots by SendSnapshot and by the receiver, with the
	// MsgSnap. Returning true drops the message silently, as a lossy network
	// would (no HandleUnreachable, no metric). Because it runs at both ends,
	// installing it on a single node is enough to cut that node off both
	// ways. It must be safe for concurrent use and must neither modify
	// m.Message nor keep it.
	DropMessage func(from, to NodeID, m GroupMessage) bool
}

// DefaultTransportConfig returns a config with every default filled in.
// NodeID, Resolve, Handler and DialOptions are left for the caller.
func DefaultTransportConfig() TransportConfig {
	return TransportConfig{
		DialTimeout:         5 * time.Second,
		SendQueueLen:        4096,
		MaxBatchBytes:       1 << 20,
		SnapshotChunkBytes:  1 << 20,
		ReconnectBackoffMin: 100 * time.Millisecond,
		ReconnectBackoffMax: 2 * time.Second,
	}
}

// Validate reports the first problem with c.
func (c *TransportConfig) Validate() error {
	switch {
	case c.NodeID == 0:
		return errors.New("raftgroup: transport config: NodeID must be set")
	case c.Resolve == nil:
		return errors.New("raftgroup: transport config: Resolve must be set")
	case c.Handler == nil:
		return errors.New("raftgroup: transport config: Handler must be set")
	case c.DialTimeout <= 0:
		return fmt.Errorf("raftgroup: transport config: DialTimeout must be positive, got %s", c.DialTimeout)
	case c.SendQueueLen <= 0:
		return fmt.Errorf("raftgroup: transport config: SendQueueLen must be positive, got %d", c.SendQueueLen)
	case c.MaxBatchBytes <= 0:
		return fmt.Errorf("raftgroup: transport config: MaxBatchBytes must be positive, got %d", c.MaxBatchBytes)
	case c.SnapshotChunkBytes <= 0:
		return fmt.Errorf("raftgroup: transport config: SnapshotChunkBytes must be positive, got %d", c.SnapshotChunkBytes)
	case c.ReconnectBackoffMin <= 0:
		return fmt.Errorf("raftgroup: transport config: ReconnectBackoffMin must be positive, got %s", c.ReconnectBackoffMin)
	case c.ReconnectBackoffMax < c.ReconnectBackoffMin:
		return fmt.Errorf("raftgroup: transport config: ReconnectBackoffMax (%s) is below ReconnectBackoffMin (%s)",
			c.ReconnectBackoffMax, c.ReconnectBackoffMin)
	}
	return nil
}

// Transport sends and receives the raft messages and snapshots of all groups
// of one node. See the comment at the top of transport.go.
type Transport struct {
	cfg     TransportConfig
	log     *slog.Logger
	metrics *transportMetrics

	// ctx is cancelled by Close; every goroutine and inbound RPC watches it.
	ctx    context.Context
	cancel context.CancelFunc
	// wg counts the goroutines the Transport started and the inbound RPCs
	// it is serving. Add is only called under mu (read) while !mu.closed, or
	// by a goroutine that is itself counted, so it never races with Wait.
	wg sync.WaitGroup

	mu struct {
		sync.RWMutex
		closed bool
		peers  map[NodeID]*transportPeer
	}
}

// NewTransport validates cfg and returns a Transport. It starts no goroutine
// until the first Send to a peer.
func NewTransport(cfg TransportConfig) (*Transport, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	t := &Transport{
		cfg:     cfg,
		log:     logger.With("component", "raft-transport"),
		metrics: newTransportMetrics(),
	}
	if cfg.Registerer != nil {
		if err := t.metrics.register(cfg.Registerer); err != nil {
			return nil, fmt.Errorf("raftgroup: register transport metrics: %w", err)
		}
	}
	t.ctx, t.cancel = context.WithCancel(context.Background())
	t.mu.peers = make(map[NodeID]*transportPeer)
	return t, nil
}

// Register registers the RaftTransport service on s (usually the node's peer
// gRPC server, a *grpc.Server).
func (t *Transport) Register(s grpc.ServiceRegistrar) {
	raftrpc.RegisterRaftTransportServer(s, &transportService{t: t})
}

// Send queues msgs for node `to` and returns without blocking. The messages
// are encoded before Send returns, so the caller may reuse them at once.
// Messages that do not fit in the peer's queue are dropped; their groups are
// reported through Handler.HandleUnreachable, later and from the peer's send
// goroutine (never from inside Send, so the caller may hold its own locks).
// Messages to one peer are sent in the order of the Send calls.
func (t *Transport) Send(to NodeID, msgs ...GroupMessage) {
	if len(msgs) == 0 {
		return
	}
	p := t.peer(to)
	if p == nil {
		t.metrics.messagesDropped.WithLabelValues(peerLabel(to), dropReasonClosed).Add(float64(len(msgs)))
		return
	}
	drop := t.dropKnob()
	encoded := make([]*raftrpc.RaftMessage, 0, len(msgs))
	var bad []GroupID
	for i := range msgs {
		m := msgs[i]
		if drop != nil && drop(t.cfg.NodeID, to, m) {
			continue
		}
		if m.Message == nil {
			t.log.Warn("raft transport: nil message", "peer", to, "group", m.Group)
			bad = append(bad, m.Group)
			continue
		}
		b, err := proto.Marshal(m.Message)
		if err != nil {
			t.log.Warn("raft transport: cannot encode message", "peer", to, "group", m.Group, "err", err)
			bad = append(bad, m.Group)
			continue
		}
		encoded = append(encoded, &raftrpc.RaftMessage{GroupId: uint64(m.Group), Message: b})
	}
	if len(bad) > 0 {
		p.metricDropped(dropReasonEncode, len(bad))
	}
	p.enqueue(encoded, bad)
}

// SendSnapshot streams a snapshot to node `to`: the header, then data in
// chunks until io.EOF. It returns once the receiver's handler has accepted
// the snapshot (nil) or refused it (an error wrapping ErrSnapshotRejected
// with the receiver's reason), or the stream failed. Cancelling ctx, or
// closing the Transport, aborts the stream; the receiver then sees an error,
// never a short snapshot.
func (t *Transport) SendSnapshot(ctx context.Context, to NodeID, h SnapshotHeader, data io.Reader) error {
	if t.isClosed() {
		return ErrTransportClosed
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(t.ctx, cancel)
	defer stop()

	if drop := t.dropKnob(); drop != nil && drop(t.cfg.NodeID, to, GroupMessage{Group: h.Group, Message: h.Message}) {
		return fmt.Errorf("raftgroup: snapshot for %s to %s dropped by testing knob", h.Group, to)
	}
	inProgress := t.metrics.snapshotsInProgress.WithLabelValues("send")
	inProgress.Inc()
	err := t.sendSnapshot(ctx, to, &h, data)
	inProgress.Dec()
	switch {
	case err == nil:
		t.metrics.snapshotsSent.WithLabelValues(snapshotResultAccepted).Inc()
	case errors.Is(err, ErrSnapshotRejected):
		t.metrics.snapshotsSent.WithLabelValues(snapshotResultRejected).Inc()
	default:
		t.metrics.snapshotsSent.WithLabelValues(snapshotResultError).Inc()
		if t.isClosed() && ctx.Err() != nil {
			err = fmt.Errorf("%w: %w", ErrTransportClosed, err)
		}
	}
	return err
}

func (t *Transport) sendSnapshot(ctx context.Context, to NodeID, h *SnapshotHeader, data io.Reader) error {
	if h.Message == nil {
		return fmt.Errorf("raftgroup: snapshot for %s without a message", h.Group)
	}
	msg, err := proto.Marshal(h.Message)
	if err != nil {
		return fmt.Errorf("raftgroup: encode snapshot message for %s: %w", h.Group, err)
	}
	addr, err := t.cfg.Resolve(to)
	if err != nil {
		return fmt.Errorf("raftgroup: resolve %s for snapshot: %w", to, err)
	}
	conn, err := grpc.NewClient(addr, t.cfg.DialOptions...)
	if err != nil {
		return fmt.Errorf("raftgroup: dial %s at %s for snapshot: %w", to, addr, err)
	}
	defer conn.Close()
	stream, err := raftrpc.NewRaftTransportClient(conn).Snapshot(ctx)
	if err != nil {
		return fmt.Errorf("raftgroup: open snapshot stream to %s at %s: %w", to, addr, err)
	}
	// A Send error of io.EOF means the receiver already answered (it refused
	// early, or failed): stop sending and read its verdict.
	err = stream.Send(&raftrpc.SnapshotChunk{Header: &raftrpc.SnapshotHeader{
		FromNode: uint64(t.cfg.NodeID),
		ToNode:   uint64(to),
		GroupId:  uint64(h.Group),
		Message:  msg,
	}})
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("raftgroup: send snapshot header for %s to %s: %w", h.Group, to, err)
	}
	if err == nil {
		buf := make([]byte, t.cfg.SnapshotChunkBytes)
		for {
			n, rerr := io.ReadFull(data, buf)
			if n > 0 {
				// gRPC encodes the chunk before Send returns, so buf is reused.
				if err := stream.Send(&raftrpc.SnapshotChunk{Data: buf[:n]}); err != nil {
					if errors.Is(err, io.EOF) {
						break
					}
					return fmt.Errorf("raftgroup: send snapshot data for %s to %s: %w", h.Group, to, err)
				}
				t.metrics.snapshotSentBytes.Add(float64(n))
			}
			if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
				break
			}
			if rerr != nil {
				// Returning cancels ctx: the receiver sees an aborted stream,
				// not a clean end of data.
				return fmt.Errorf("raftgroup: read snapshot data for %s: %w", h.Group, rerr)
			}
		}
	}
	resp, err := stream.CloseAndRecv()
	if err != nil {
		return fmt.Errorf("raftgroup: snapshot for %s to %s: %w", h.Group, to, err)
	}
	if !resp.GetAccepted() {
		return fmt.Errorf("%w by %s for %s: %s", ErrSnapshotRejected, to, h.Group, resp.GetError())
	}
	return nil
}

// Close stops every goroutine of the Transport, aborts its streams and
// waits. Messages still queued are dropped without being reported. Close
// does not wait for unreachable peers: their dials are cancelled. Inbound
// RPCs end with codes.Unavailable. It is safe to call more than once, but
// not from inside a Handler method (Close waits for those to return).
func (t *Transport) Close() error {
	t.mu.Lock()
	already := t.mu.closed
	t.mu.closed = true
	t.mu.Unlock()
	t.cancel()
	t.wg.Wait()
	if !already && t.cfg.Registerer != nil {
		t.metrics.unregister(t.cfg.Registerer)
	}
	return nil
}

func (t *Transport) isClosed() bool {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.mu.closed
}

// track counts one more inbound RPC in wg, unless the Transport is closed.
func (t *Transport) track() bool {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.mu.closed {
		return false
	}
	t.wg.Add(1)
	return true
}

func (t *Transport) dropKnob() func(from, to NodeID, m GroupMessage) bool {
	if t.cfg.Knobs == nil {
		return nil
	}
	return t.cfg.Knobs.DropMessage
}

// peer returns the peer for node id, creating it and starting its send
// goroutine on first use; nil once the Transport is closed.
func (t *Transport) peer(id NodeID) *transportPeer {
	t.mu.RLock()
	p, ok := t.mu.peers[id]
	closed := t.mu.closed
	t.mu.RUnlock()
	if ok || closed {
		return p
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.mu.closed {
		return nil
	}
	if p, ok := t.mu.peers[id]; ok {
		return p
	}
	p = &transportPeer{
		t:     t,
		id:    id,
		label: peerLabel(id),
		log:   t.log.With("peer", id),
		wake:  make(chan struct{}, 1),
	}
	t.mu.peers[id] = p
	// Create the peer's drop series at zero, so that rates and alerts see
	// them before the first drop.
	for _, r := range []string{dropReasonQueueFull, dropReasonSendError, dropReasonEncode, dropReasonClosed} {
		t.metrics.messagesDropped.WithLabelValues(p.label, r)
	}
	t.metrics.sendErrors.WithLabelValues(p.label)
	t.wg.Add(1)
	go p.run(t.ctx)
	return p
}

func peerLabel(id NodeID) string { return strconv.FormatUint(uint64(id), 10) }

// transportPeer is the outbound side for one peer node: a queue filled by
// Send and drained by run, the one goroutine that owns the peer's stream.
type transportPeer struct {
	t     *Transport
	id    NodeID
	label string // metric label
	log   *slog.Logger
	// wake has room for one token: Send leaves one after queuing or dropping.
	wake chan struct{}

	mu struct {
		sync.Mutex
		// queue[head:] are the messages waiting, oldest first; at most
		// cfg.SendQueueLen of them.
		queue []*raftrpc.RaftMessage
		head  int
		// unreachable holds the groups that lost messages since run last
		// reported to the Handler.
		unreachable map[GroupID]struct{}
	}
}

// enqueue appends msgs to the queue, dropping what does not fit, and marks
// the groups in lost (and of dropped messages) for an unreachable report.
func (p *transportPeer) enqueue(msgs []*raftrpc.RaftMessage, lost []GroupID) {
	limit := p.t.cfg.SendQueueLen
	dropped := 0
	p.mu.Lock()
	for _, g := range lost {
		p.markUnreachableLocked(g)
	}
	for _, m := range msgs {
		if len(p.mu.queue)-p.mu.head >= limit {
			dropped++
			p.markUnreachableLocked(GroupID(m.GroupId))
			continue
		}
		if len(p.mu.queue) == cap(p.mu.queue) && p.mu.head > 0 {
			// Slide the live part down instead of growing the array.
			n := copy(p.mu.queue, p.mu.queue[p.mu.head:])
			clear(p.mu.queue[n:])
			p.mu.queue = p.mu.queue[:n]
			p.mu.head = 0
		}
		p.mu.queue = append(p.mu.queue, m)
	}
	p.mu.Unlock()
	if dropped > 0 {
		p.metricDropped(dropReasonQueueFull, dropped)
		p.log.Debug("raft transport: send queue full, dropped messages", "dropped", dropped)
	}
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

func (p *transportPeer) markUnreachableLocked(g GroupID) {
	if p.mu.unreachable == nil {
		p.mu.unreachable = make(map[GroupID]struct{})
	}
	p.mu.unreachable[g] = struct{}{}
}

func (p *transportPeer) queued() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mu.head < len(p.mu.queue)
}

// takeBatch moves the oldest queued messages, up to maxBytes of them (at
// least one if any), onto buf and returns it.
func (p *transportPeer) takeBatch(buf []*raftrpc.RaftMessage, maxBytes int) []*raftrpc.RaftMessage {
	p.mu.Lock()
	defer p.mu.Unlock()
	size := 0
	for p.mu.head < len(p.mu.queue) {
		m := p.mu.queue[p.mu.head]
		sz := proto.Size(m)
		if len(buf) > 0 && size+sz > maxBytes {
			break
		}
		buf = append(buf, m)
		size += sz
		p.mu.queue[p.mu.head] = nil
		p.mu.head++
	}
	if p.mu.head == len(p.mu.queue) {
		p.mu.queue = p.mu.queue[:0]
		p.mu.head = 0
	}
	return buf
}

// reportUnreachable tells the Handler about the groups that lost messages
// since the last report. Called only from run.
func (p *transportPeer) reportUnreachable() {
	p.mu.Lock()
	set := p.mu.unreachable
	p.mu.unreachable = nil
	p.mu.Unlock()
	if len(set) == 0 || p.t.ctx.Err() != nil {
		return
	}
	p.t.cfg.Handler.HandleUnreachable(p.id, slices.Sorted(maps.Keys(set)))
}

func (p *transportPeer) metricDropped(reason string, n int) {
	p.t.metrics.messagesDropped.WithLabelValues(p.label, reason).Add(float64(n))
}

// run is the peer's send goroutine: it owns the stream (and its receive
// goroutine) and is the only caller of HandleUnreachable for this peer.
func (p *transportPeer) run(ctx context.Context) {
	defer p.t.wg.Done()
	cfg := &p.t.cfg
	var (
		s        *peerStream
		batch    []*raftrpc.RaftMessage
		backoff  = cfg.ReconnectBackoffMin
		retryAt  time.Time // no dial before this
		failures int       // consecutive dial/stream failures
		quiet    bool      // the first of these failures was a clean shutdown of the peer
		attempts int       // streams opened or tried
	)
	defer func() {
		if s != nil {
			s.close()
		}
	}()
	// failed tears down after a dial or stream error and schedules the next
	// attempt: a stream that lived long enough was healthy, so the backoff
	// starts over; one that died young (or never opened) doubles it, so a
	// peer that accepts and then rejects us is not hammered.
	failed := func(err error, lived time.Duration) {
		p.t.metrics.sendErrors.WithLabelValues(p.label).Inc()
		if lived >= cfg.ReconnectBackoffMax {
			backoff = cfg.ReconnectBackoffMin
		}
		retryAt = time.Now().Add(backoffJitter(backoff))
		backoff = min(2*backoff, cfg.ReconnectBackoffMax)
		failures++
		switch {
		case failures == 1 && peerClosed(err):
			// The peer shut down cleanly (its transport closed the
			// stream): its own log says so; reconnecting fails quietly
			// until it is back.
			quiet = true
			p.log.Debug("raft transport: peer shut down", "err", err)
		case failures == 1:
			quiet = false
			p.log.Warn("raft transport: peer stream failed", "err", err)
		default:
			p.log.Debug("raft transport: peer stream failed again", "err", err, "failures", failures)
		}
	}
	for {
		p.reportUnreachable()
		if s != nil && s.broken() {
			if ctx.Err() != nil {
				return // we are closing: the stream ended with us
			}
			// The stream ended while we had nothing to send (the peer
			// restarted, closed, or rejected us).
			lived := s.age()
			s.close()
			p.loseStream(s)
			failed(s.recvErr(), lived)
			s = nil
		}
		if !p.queued() {
			var broken <-chan struct{}
			if s != nil {
				broken = s.done
			}
			select {
			case <-ctx.Done():
				return
			case <-p.wake:
			case <-broken:
			}
			continue
		}
		if s == nil {
			if wait := time.Until(retryAt); wait > 0 {
				if !p.sleep(ctx, wait) {
					return
				}
				continue
			}
			attempts++
			if attempts > 1 {
				p.t.metrics.streamReconnects.WithLabelValues(p.label).Inc()
			}
			var err error
			if s, err = p.connect(ctx); err != nil {
				if ctx.Err() != nil {
					return
				}
				// The batch we were about to send is what the failure costs.
				batch = p.takeBatch(batch[:0], cfg.MaxBatchBytes)
				p.lose(batch)
				failed(err, 0)
				continue
			}
			if failures > 0 {
				if quiet {
					p.log.Debug("raft transport: peer stream re-established", "after_failures", failures)
				} else {
					p.log.Info("raft transport: peer stream re-established", "after_failures", failures)
				}
				failures = 0
			}
		}
		batch = p.takeBatch(batch[:0], cfg.MaxBatchBytes)
		rb := &raftrpc.RaftBatch{
			FromNode: uint64(cfg.NodeID),
			ToNode:   uint64(p.id),
			Messages: batch,
		}
		if err := s.send(rb); err != nil {
			if ctx.Err() != nil {
				return
			}
			p.lose(batch)
			lived := s.age()
			s.close()
			p.loseStream(s)
			s = nil
			failed(err, lived)
			continue
		}
		for _, m := range batch {
			s.sent[GroupID(m.GroupId)] = struct{}{}
		}
		p.t.metrics.messagesSent.WithLabelValues(p.label).Add(float64(len(batch)))
		p.t.metrics.batchesSent.WithLabelValues(p.label).Inc()
		p.t.metrics.sentBytes.WithLabelValues(p.label).Add(float64(proto.Size(rb)))
		clear(batch) // let the encoded messages be collected
	}
}

// lose records a batch that will never be delivered: counted, and its
// groups reported at the top of the next loop in run.
func (p *transportPeer) lose(batch []*raftrpc.RaftMessage) {
	if len(batch) == 0 {
		return
	}
	p.metricDropped(dropReasonSendError, len(batch))
	p.mu.Lock()
	for _, m := range batch {
		p.markUnreachableLocked(GroupID(m.GroupId))
	}
	p.mu.Unlock()
	clear(batch)
}

// loseStream marks for an unreachable report every group that sent on a
// broken stream. Any message written to it that the peer had not processed
// yet is lost, and the transport cannot tell which (there are no acks), so
// it over-reports: for raft the report is only a hint that makes the leader
// probe the follower again, while a silent loss would leave it waiting.
func (p *transportPeer) loseStream(s *peerStream) {
	if len(s.sent) == 0 {
		return
	}
	p.mu.Lock()
	for g := range s.sent {
		p.markUnreachableLocked(g)
	}
	p.mu.Unlock()
	s.sent = nil
}

// sleep waits for d, reporting drops meanwhile; false if ctx ended.
func (p *transportPeer) sleep(ctx context.Context, d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-timer.C:
			return true
		case <-p.wake:
			p.reportUnreachable()
		}
	}
}

// backoffJitter returns a duration in [d/2, d].
func backoffJitter(d time.Duration) time.Duration {
	return d/2 + rand.N(d/2+1)
}

// connect resolves the peer, dials it and opens the RaftMessages stream,
// giving up after DialTimeout. A fresh ClientConn per attempt means a new
// Resolve, and our backoff rather than gRPC's internal one.
func (p *transportPeer) connect(ctx context.Context) (*peerStream, error) {
	cfg := &p.t.cfg
	addr, err := cfg.Resolve(p.id)
	if err != nil {
		return nil, fmt.Errorf("raftgroup: resolve %s: %w", p.id, err)
	}
	conn, err := grpc.NewClient(addr, cfg.DialOptions...)
	if err != nil {
		return nil, fmt.Errorf("raftgroup: dial %s at %s: %w", p.id, addr, err)
	}
	sctx, cancel := context.WithCancel(ctx)
	timer := time.AfterFunc(cfg.DialTimeout, cancel)
	stream, err := raftrpc.NewRaftTransportClient(conn).RaftMessages(sctx)
	if !timer.Stop() {
		// The timeout fired (and cancelled sctx), whether or not the stream
		// opened just before it.
		if ctx.Err() == nil {
			err = fmt.Errorf("no stream within %s (last error: %v)", cfg.DialTimeout, err)
		} else if err == nil {
			err = ctx.Err()
		}
	}
	if err != nil {
		cancel()
		_ = conn.Close()
		return nil, fmt.Errorf("raftgroup: open raft stream to %s at %s: %w", p.id, addr, err)
	}
	s := &peerStream{
		conn:   conn,
		stream: stream,
		cancel: cancel,
		opened: time.Now(),
		done:   make(chan struct{}),
		sent:   make(map[GroupID]struct{}),
	}
	p.t.wg.Add(1) // run is counted, so wg is positive here
	go s.recvLoop(p)
	return s, nil
}

// peerStream is one open RaftMessages stream, owned by transportPeer.run.
// Its receive goroutine reads the peer's responses and notices the end of
// the stream even while run has nothing to send.
type peerStream struct {
	conn   *grpc.ClientConn
	stream grpc.BidiStreamingClient[raftrpc.RaftBatch, raftrpc.RaftBatchResponse]
	cancel context.CancelFunc
	opened time.Time
	done   chan struct{} // closed when recvLoop returns
	err    error         // why the stream ended; read only after done is closed
	// sent holds the groups that sent on this stream (see loseStream).
	// Owned by run.
	sent map[GroupID]struct{}
}

func (s *peerStream) recvLoop(p *transportPeer) {
	defer p.t.wg.Done()
	defer close(s.done)
	for {
		resp, err := s.stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = errors.New("peer closed the stream")
			}
			s.err = err
			return
		}
		if e := resp.GetError(); e != "" {
			p.t.metrics.sendErrors.WithLabelValues(p.label).Inc()
			p.log.Warn("raft transport: peer dropped invalid messages", "err", e)
		}
	}
}

// send writes one batch. When the stream is already over, gRPC's Send says
// only io.EOF: the reason comes from the receive side.
func (s *peerStream) send(b *raftrpc.RaftBatch) error {
	err := s.stream.Send(b)
	if errors.Is(err, io.EOF) {
		<-s.done
		err = s.err
	}
	return err
}

func (s *peerStream) broken() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

func (s *peerStream) recvErr() error {
	<-s.done
	return s.err
}

func (s *peerStream) age() time.Duration { return time.Since(s.opened) }

// close aborts the stream, waits for its receive goroutine and closes the
// connection.
func (s *peerStream) close() {
	s.cancel()
	<-s.done
	_ = s.conn.Close()
}

// transportService is the server side of the RaftTransport service.
type transportService struct {
	raftrpc.UnimplementedRaftTransportServer
	t *Transport
}

var errClosedStatus = status.Error(codes.Unavailable, ErrTransportClosed.Error())

// peerClosed reports whether a stream error is a peer's transport closing
// the stream (a clean shutdown), not a failure.
func peerClosed(err error) bool {
	st, ok := status.FromError(err)
	return ok && st.Code() == codes.Unavailable && st.Message() == ErrTransportClosed.Error()
}

// RaftMessages receives batches from one peer node and delivers them in
// order. A separate goroutine reads the stream so that Close can end the
// RPC even while no batch is arriving.
func (svc *transportService) RaftMessages(stream grpc.BidiStreamingServer[raftrpc.RaftBatch, raftrpc.RaftBatchResponse]) error {
	t := svc.t
	if !t.track() {
		return errClosedStatus
	}
	defer t.wg.Done()

	batches := make(chan *raftrpc.RaftBatch)
	recvErr := make(chan error, 1)
	handlerDone := make(chan struct{})
	defer close(handlerDone)
	t.wg.Add(1) // this RPC is counted, so wg is positive here
	go func() {
		// Ends when the stream does; gRPC ends the stream when this handler
		// returns.
		defer t.wg.Done()
		for {
			b, err := stream.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			select {
			case batches <- b:
			case <-handlerDone:
				return
			}
		}
	}()

	var from NodeID // the peer, fixed by the first batch
	drop := t.dropKnob()
	for {
		var b *raftrpc.RaftBatch
		select {
		case <-t.ctx.Done():
			return errClosedStatus
		case err := <-recvErr:
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		case b = <-batches:
		}
		d, err := decodeRaftBatch(t.cfg.NodeID, b, drop)
		if err == nil && from != 0 && d.from != from {
			err = fmt.Errorf("raftgroup: batch from %s on a stream from %s", d.from, from)
		}
		if err != nil {
			t.metrics.invalidReceived.Inc()
			t.log.Warn("raft transport: rejecting raft stream", "err", err)
			return status.Error(codes.FailedPrecondition, err.Error())
		}
		if from == 0 && t.cfg.AuthorizePeer != nil {
			if err := t.cfg.AuthorizePeer(stream.Context(), d.from); err != nil {
				t.metrics.invalidReceived.Inc()
				t.log.Warn("raft transport: refusing raft stream from an unauthorized peer", "claimed", d.from, "err", err)
				return status.Error(codes.PermissionDenied, err.Error())
			}
		}
		from = d.from
		t.metrics.receivedBytes.WithLabelValues(peerLabel(from)).Add(float64(proto.Size(b)))
		if d.invalid > 0 {
			t.metrics.invalidReceived.Add(float64(d.invalid))
			t.log.Warn("raft transport: dropped invalid messages", "peer", from, "count", d.invalid, "first_err", d.invalidErr)
		}
		if len(d.msgs) > 0 && t.ctx.Err() == nil {
			// Count before delivering, so that whoever sees the messages
			// also sees them counted.
			t.metrics.messagesReceived.WithLabelValues(peerLabel(from)).Add(float64(len(d.msgs)))
			t.cfg.Handler.HandleMessages(from, d.msgs)
		}
		if d.invalid > 0 {
			resp := &raftrpc.RaftBatchResponse{
				Error: fmt.Sprintf("%s dropped %d invalid messages: %v", t.cfg.NodeID, d.invalid, d.invalidErr),
			}
			if err := stream.Send(resp); err != nil {
				return err
			}
		}
	}
}

// decodedBatch is a RaftBatch checked and decoded by decodeRaftBatch.
type decodedBatch struct {
	from       NodeID
	msgs       []GroupMessage
	invalid    int   // messages skipped as undecodable or misaddressed
	invalidErr error // why the first of them was skipped
}

// decodeRaftBatch checks a batch received by node self and decodes its
// messages. A batch not addressed to self, or from no node, is an error (the
// whole stream is misrouted). A message that does not decode, or whose raft
// To/From disagree with the batch, is skipped and counted. Messages for
// which drop (the DropMessage knob; may be nil) returns true are skipped
// silently. It never panics, whatever the input.
func decodeRaftBatch(self NodeID, b *raftrpc.RaftBatch, drop func(from, to NodeID, m GroupMessage) bool) (decodedBatch, error) {
	var d decodedBatch
	if to := NodeID(b.GetToNode()); to != self {
		return d, fmt.Errorf("raftgroup: batch for %s received by %s", to, self)
	}
	d.from = NodeID(b.GetFromNode())
	if d.from == 0 || d.from == self {
		return d, fmt.Errorf("raftgroup: batch from invalid node %s", d.from)
	}
	in := b.GetMessages()
	d.msgs = make([]GroupMessage, len(in))
	n := 0
	for _, rm := range in {
		// Decode into the next free slot; a skipped message leaves it (and
		// its Message) to be reused: Unmarshal resets it first.
		slot := &d.msgs[n]
		slot.Group = GroupID(rm.GetGroupId())
		if slot.Message == nil {
			slot.Message = new(raftpb.Message)
		}
		err := proto.Unmarshal(rm.GetMessage(), slot.Message)
		if err == nil {
			err = checkReplicas(slot.Message)
		}
		if err != nil {
			if d.invalid == 0 {
				d.invalidErr = fmt.Errorf("raftgroup: message for %s: %w", slot.Group, err)
			}
			d.invalid++
			continue
		}
		if drop != nil && drop(d.from, self, *slot) {
			continue
		}
		n++
	}
	clear(d.msgs[n:])
	d.msgs = d.msgs[:n]
	return d, nil
}

// checkReplicas verifies that a received raft message names both replicas.
// Its To and From are replica ids, which only the group's peer map ties to
// nodes: the Host checks them against the stream's nodes (HandleMessages,
// HandleSnapshot).
func checkReplicas(m *raftpb.Message) error {
	if m.GetTo() == 0 || m.GetFrom() == 0 {
		return fmt.Errorf("raft message %s from %s to %s: replica id 0",
			m.GetType(), ReplicaID(m.GetFrom()), ReplicaID(m.GetTo()))
	}
	return nil
}

// Snapshot receives one snapshot. A pump goroutine copies the data chunks
// into a pipe that the Handler reads; a stream that ends without a clean
// EOF (sender aborted, connection lost, Transport closed) surfaces as a read
// error, never as a short snapshot.
func (svc *transportService) Snapshot(stream grpc.ClientStreamingServer[raftrpc.SnapshotChunk, raftrpc.SnapshotResponse]) error {
	t := svc.t
	if !t.track() {
		return errClosedStatus
	}
	defer t.wg.Done()

	first, err := stream.Recv()
	if err != nil {
		return err
	}
	var h SnapshotHeader
	from, err := decodeSnapshotHeader(t.cfg.NodeID, first.GetHeader(), &h)
	if err != nil {
		t.metrics.invalidReceived.Inc()
		t.metrics.snapshotsReceived.WithLabelValues(snapshotResultError).Inc()
		t.log.Warn("raft transport: rejecting snapshot stream", "err", err)
		return status.Error(codes.InvalidArgument, err.Error())
	}
	if t.cfg.AuthorizePeer != nil {
		if err := t.cfg.AuthorizePeer(stream.Context(), from); err != nil {
			t.metrics.invalidReceived.Inc()
			t.metrics.snapshotsReceived.WithLabelValues(snapshotResultError).Inc()
			t.log.Warn("raft transport: refusing snapshot from an unauthorized peer", "claimed", from, "err", err)
			return status.Error(codes.PermissionDenied, err.Error())
		}
	}
	if drop := t.dropKnob(); drop != nil && drop(from, t.cfg.NodeID, GroupMessage{Group: h.Group, Message: h.Message}) {
		return stream.SendAndClose(&raftrpc.SnapshotResponse{Error: "dropped by testing knob"})
	}

	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	stopOnClose := context.AfterFunc(t.ctx, cancel)
	defer stopOnClose()

	inProgress := t.metrics.snapshotsInProgress.WithLabelValues("receive")
	inProgress.Inc()
	defer inProgress.Dec()
	pr, pw := io.Pipe()
	// Unblock the Handler's Read when the stream or the Transport ends.
	stopPipe := context.AfterFunc(ctx, func() { pr.CloseWithError(fmt.Errorf("raftgroup: snapshot stream: %w", context.Cause(ctx))) })
	defer stopPipe()
	t.wg.Add(1) // this RPC is counted, so wg is positive here
	go func() {
		defer t.wg.Done()
		pw.CloseWithError(pumpSnapshot(stream, first.GetData(), countingWriter{pw, t.metrics.snapshotReceivedBytes}))
	}()

	herr := t.cfg.Handler.HandleSnapshot(ctx, from, h, pr)
	// Unblock the pump if the Handler stopped reading early. A pump blocked
	// in Recv ends when this RPC returns.
	pr.CloseWithError(errors.New("raftgroup: snapshot handler returned"))
	if herr != nil {
		t.metrics.snapshotsReceived.WithLabelValues(snapshotResultRejected).Inc()
		t.log.Debug("raft transport: snapshot rejected by handler", "peer", from, "group", h.Group, "err", herr)
		return stream.SendAndClose(&raftrpc.SnapshotResponse{Error: herr.Error()})
	}
	t.metrics.snapshotsReceived.WithLabelValues(snapshotResultAccepted).Inc()
	return stream.SendAndClose(&raftrpc.SnapshotResponse{Accepted: true})
}

// countingWriter counts the bytes written through it.
type countingWriter struct {
	w io.Writer
	n prometheus.Counter
}

func (c countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n.Add(float64(n))
	return n, err
}

// pumpSnapshot writes the data of a snapshot stream into w: first (the data
// of the header chunk), then every later chunk. It returns nil at the clean
// end of the stream and the error otherwise.
func pumpSnapshot(stream grpc.ClientStreamingServer[raftrpc.SnapshotChunk, raftrpc.SnapshotResponse], first []byte, w io.Writer) error {
	if len(first) > 0 {
		if _, err := w.Write(first); err != nil {
			return err
		}
	}
	for {
		c, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("raftgroup: snapshot stream: %w", err)
		}
		if c.GetHeader() != nil {
			return errors.New("raftgroup: snapshot stream: second header")
		}
		if _, err := w.Write(c.GetData()); err != nil {
			return err
		}
	}
}

// decodeSnapshotHeader checks the header of a snapshot received by node self,
// decodes it into h and returns the sending node.
func decodeSnapshotHeader(self NodeID, hdr *raftrpc.SnapshotHeader, h *SnapshotHeader) (NodeID, error) {
	if hdr == nil {
		return 0, errors.New("raftgroup: snapshot stream without header")
	}
	if to := NodeID(hdr.GetToNode()); to != self {
		return 0, fmt.Errorf("raftgroup: snapshot for %s received by %s", to, self)
	}
	from := NodeID(hdr.GetFromNode())
	if from == 0 || from == self {
		return 0, fmt.Errorf("raftgroup: snapshot from invalid node %s", from)
	}
	h.Group = GroupID(hdr.GetGroupId())
	h.Message = new(raftpb.Message)
	if err := proto.Unmarshal(hdr.GetMessage(), h.Message); err != nil {
		return 0, fmt.Errorf("raftgroup: snapshot header message for %s: %w", h.Group, err)
	}
	if h.Message.GetType() != raftpb.MsgSnap {
		return 0, fmt.Errorf("raftgroup: snapshot header for %s carries %s, not MsgSnap", h.Group, h.Message.GetType())
	}
	if err := checkReplicas(h.Message); err != nil {
		return 0, fmt.Errorf("raftgroup: snapshot header for %s: %w", h.Group, err)
	}
	return from, nil
}
