package raftgroup

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/iotest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/tesseradb/tessera/proto/raftrpc"
)

// waitTimeout bounds every wait for a condition in these tests.
const waitTimeout = 15 * time.Second

// fakeHandler is the consumer side of a Transport: it records what arrives.
type fakeHandler struct {
	notify chan struct{} // one token after every change

	mu struct {
		sync.Mutex
		received    map[NodeID][]GroupMessage // by sender, in arrival order
		batchSizes  map[NodeID][]int          // encoded bytes of each HandleMessages call
		unreachable map[NodeID]map[GroupID]int
	}
	// snapshot, if set, handles snapshots.
	snapshot func(ctx context.Context, from NodeID, h SnapshotHeader, r io.Reader) error
}

var _ MessageHandler = (*fakeHandler)(nil)

func newFakeHandler() *fakeHandler {
	h := &fakeHandler{notify: make(chan struct{}, 1)}
	h.mu.received = make(map[NodeID][]GroupMessage)
	h.mu.batchSizes = make(map[NodeID][]int)
	h.mu.unreachable = make(map[NodeID]map[GroupID]int)
	return h
}

func (h *fakeHandler) changed() {
	select {
	case h.notify <- struct{}{}:
	default:
	}
}

func (h *fakeHandler) HandleMessages(from NodeID, msgs []GroupMessage) {
	size := 0
	for _, m := range msgs {
		size += proto.Size(m.Message)
	}
	h.mu.Lock()
	h.mu.received[from] = append(h.mu.received[from], msgs...)
	h.mu.batchSizes[from] = append(h.mu.batchSizes[from], size)
	h.mu.Unlock()
	h.changed()
}

func (h *fakeHandler) HandleUnreachable(to NodeID, groups []GroupID) {
	h.mu.Lock()
	if h.mu.unreachable[to] == nil {
		h.mu.unreachable[to] = make(map[GroupID]int)
	}
	for _, g := range groups {
		h.mu.unreachable[to][g]++
	}
	h.mu.Unlock()
	h.changed()
}

func (h *fakeHandler) HandleSnapshot(ctx context.Context, from NodeID, hdr SnapshotHeader, r io.Reader) error {
	if h.snapshot == nil {
		return errors.New("no snapshot handler")
	}
	return h.snapshot(ctx, from, hdr, r)
}

// indexes returns the Index of every message received from `from`.
func (h *fakeHandler) indexes(from NodeID) []uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []uint64
	for _, m := range h.mu.received[from] {
		out = append(out, m.Message.GetIndex())
	}
	return out
}

func (h *fakeHandler) unreachableGroups(to NodeID) []GroupID {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []GroupID
	for g := range h.mu.unreachable[to] {
		out = append(out, g)
	}
	slices.Sort(out)
	return out
}

// waitFor polls cond until it holds, waking on the handler's notifications
// or a short tick, and fails the test at the deadline.
func waitFor(t *testing.T, h *fakeHandler, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(waitTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	var notify chan struct{}
	if h != nil {
		notify = h.notify
	}
	for !cond() {
		select {
		case <-deadline.C:
			t.Fatalf("timed out waiting for %s", what)
		case <-notify:
		case <-tick.C:
		}
	}
}

// testNet maps node IDs to addresses for Resolve.
type testNet struct {
	mu    sync.Mutex
	addrs map[NodeID]string
}

func newTestNet() *testNet { return &testNet{addrs: make(map[NodeID]string)} }

func (n *testNet) set(id NodeID, addr string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.addrs[id] = addr
}

func (n *testNet) resolve(id NodeID) (string, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	addr, ok := n.addrs[id]
	if !ok {
		return "", fmt.Errorf("unknown node %s", id)
	}
	return addr, nil
}

type testNode struct {
	id   NodeID
	tr   *Transport
	h    *fakeHandler
	reg  *prometheus.Registry
	addr string

	mu  sync.Mutex
	srv *grpc.Server
}

func testTransportConfig(id NodeID, resolve func(NodeID) (string, error), h MessageHandler) TransportConfig {
	cfg := DefaultTransportConfig()
	cfg.NodeID = id
	cfg.Resolve = resolve
	cfg.Handler = h
	cfg.DialOptions = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	cfg.ReconnectBackoffMin = 5 * time.Millisecond
	cfg.ReconnectBackoffMax = 50 * time.Millisecond
	return cfg
}

// startNode starts a Transport with its own gRPC server on 127.0.0.1:0 and
// registers its address in n. mutate may adjust the config.
func startNode(t *testing.T, n *testNet, id NodeID, mutate func(*TransportConfig)) *testNode {
	t.Helper()
	h := newFakeHandler()
	reg := prometheus.NewRegistry()
	cfg := testTransportConfig(id, n.resolve, h)
	cfg.Registerer = reg
	if mutate != nil {
		mutate(&cfg)
	}
	tr, err := NewTransport(cfg)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	node := &testNode{id: id, tr: tr, h: h, reg: reg, addr: lis.Addr().String()}
	node.serve(lis)
	n.set(id, node.addr)
	t.Cleanup(func() {
		if err := tr.Close(); err != nil {
			t.Error(err)
		}
		node.stopServer()
	})
	return node
}

func (n *testNode) serve(lis net.Listener) {
	srv := grpc.NewServer()
	n.tr.Register(srv)
	n.mu.Lock()
	n.srv = srv
	n.mu.Unlock()
	go func() { _ = srv.Serve(lis) }() // ends with srv.Stop
}

func (n *testNode) stopServerGracefully() {
	n.mu.Lock()
	srv := n.srv
	n.srv = nil
	n.mu.Unlock()
	if srv != nil {
		srv.GracefulStop()
	}
}

func (n *testNode) stopServer() {
	n.mu.Lock()
	srv := n.srv
	n.srv = nil
	n.mu.Unlock()
	if srv != nil {
		srv.Stop()
	}
}

// restartServer serves the node's Transport again on its old address.
func (n *testNode) restartServer(t *testing.T) {
	t.Helper()
	lis, err := net.Listen("tcp", n.addr)
	if err != nil {
		t.Fatalf("re-listen on %s: %v", n.addr, err)
	}
	n.serve(lis)
}

func testMsg(from, to NodeID, index uint64) *raftpb.Message {
	return &raftpb.Message{
		Type:  raftpb.MsgApp.Enum(),
		From:  proto.Uint64(uint64(from)),
		To:    proto.Uint64(uint64(to)),
		Term:  proto.Uint64(1),
		Index: proto.Uint64(index),
	}
}

// counterValue sums the samples of a counter family on reg whose labels
// include want.
func counterValue(t *testing.T, reg *prometheus.Registry, name string, want map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for k, v := range want {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == k && lp.GetValue() == v {
						found = true
					}
				}
				if !found {
					continue metrics
				}
			}
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}

func seq(n int) []uint64 {
	out := make([]uint64, n)
	for i := range out {
		out[i] = uint64(i)
	}
	return out
}

func TestTransportConfigValidate(t *testing.T) {
	h := newFakeHandler()
	resolve := func(NodeID) (string, error) { return "", nil }
	good := testTransportConfig(1, resolve, h)
	if err := good.Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	if err := (&TransportConfig{}).Validate(); err == nil {
		t.Fatal("zero config validated")
	}
	for name, mutate := range map[string]func(*TransportConfig){
		"no node":         func(c *TransportConfig) { c.NodeID = 0 },
		"no resolve":      func(c *TransportConfig) { c.Resolve = nil },
		"no handler":      func(c *TransportConfig) { c.Handler = nil },
		"queue":           func(c *TransportConfig) { c.SendQueueLen = 0 },
		"batch":           func(c *TransportConfig) { c.MaxBatchBytes = -1 },
		"chunk":           func(c *TransportConfig) { c.SnapshotChunkBytes = 0 },
		"dial timeout":    func(c *TransportConfig) { c.DialTimeout = 0 },
		"backoff min":     func(c *TransportConfig) { c.ReconnectBackoffMin = 0 },
		"backoff max<min": func(c *TransportConfig) { c.ReconnectBackoffMax = c.ReconnectBackoffMin / 2 },
	} {
		c := good
		mutate(&c)
		if err := c.Validate(); err == nil || !strings.HasPrefix(err.Error(), "raftgroup: ") {
			t.Errorf("%s: Validate() = %v, want a raftgroup error", name, err)
		}
		if _, err := NewTransport(c); err == nil {
			t.Errorf("%s: NewTransport accepted an invalid config", name)
		}
	}
}

// Three nodes send to each other concurrently; every receiver sees each
// sender's messages exactly once and in order.
func TestTransportDeliversInOrder(t *testing.T) {
	tn := newTestNet()
	nodes := []*testNode{startNode(t, tn, 1, nil), startNode(t, tn, 2, nil), startNode(t, tn, 3, nil)}
	const n = 500
	var wg sync.WaitGroup
	for _, from := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range n {
				for _, to := range nodes {
					if to.id == from.id {
						continue
					}
					// Spread over groups; order is per peer, not per group.
					from.tr.Send(to.id, GroupMessage{Group: GroupID(i % 7), Message: testMsg(from.id, to.id, uint64(i))})
				}
			}
		}()
	}
	wg.Wait()
	for _, to := range nodes {
		for _, from := range nodes {
			if from.id == to.id {
				continue
			}
			waitFor(t, to.h, fmt.Sprintf("%d messages %s->%s", n, from.id, to.id), func() bool {
				return len(to.h.indexes(from.id)) >= n
			})
			if got := to.h.indexes(from.id); !slices.Equal(got, seq(n)) {
				t.Fatalf("%s->%s: got indexes %v, want 0..%d in order", from.id, to.id, got, n-1)
			}
			to.h.mu.Lock()
			for i, m := range to.h.mu.received[from.id] {
				if m.Group != GroupID(i%7) {
					t.Fatalf("%s->%s message %d: group %s, want %s", from.id, to.id, i, m.Group, GroupID(i%7))
				}
			}
			to.h.mu.Unlock()
		}
	}
	for _, from := range nodes {
		for _, to := range nodes {
			if from.id == to.id {
				continue
			}
			peer := map[string]string{"peer": peerLabel(to.id)}
			if got := counterValue(t, from.reg, "tessera_raft_transport_messages_sent_total", peer); got != n {
				t.Errorf("%s messages_sent_total{peer=%s} = %v, want %d", from.id, to.id, got, n)
			}
			if got := counterValue(t, to.reg, "tessera_raft_transport_messages_received_total", map[string]string{"peer": peerLabel(from.id)}); got != n {
				t.Errorf("%s messages_received_total{peer=%s} = %v, want %d", to.id, from.id, got, n)
			}
			if got := counterValue(t, from.reg, "tessera_raft_transport_sent_bytes_total", peer); got <= 0 {
				t.Errorf("%s sent_bytes_total{peer=%s} = %v, want > 0", from.id, to.id, got)
			}
		}
		if got := counterValue(t, from.reg, "tessera_raft_transport_messages_dropped_total", nil); got != 0 {
			t.Errorf("%s dropped %v messages, want 0", from.id, got)
		}
	}
}

// gatedResolve blocks the first Resolve of each node until the gate opens,
// so that messages pile up in the send queue.
func gatedResolve(resolve func(NodeID) (string, error), gate <-chan struct{}) func(NodeID) (string, error) {
	return func(id NodeID) (string, error) {
		<-gate
		return resolve(id)
	}
}

// Messages queued while the stream is being opened go out as a few batches
// bounded by MaxBatchBytes, still in order.
func TestTransportBatching(t *testing.T) {
	tn := newTestNet()
	gate := make(chan struct{})
	const maxBatch = 16 << 10
	n1 := startNode(t, tn, 1, func(c *TransportConfig) {
		c.Resolve = gatedResolve(c.Resolve, gate)
		c.MaxBatchBytes = maxBatch
	})
	n2 := startNode(t, tn, 2, nil)

	const n = 1000
	payload := bytes.Repeat([]byte{'x'}, 100)
	for i := range n {
		m := testMsg(1, 2, uint64(i))
		m.Context = payload
		n1.tr.Send(2, GroupMessage{Group: GroupID(i % 3), Message: m})
	}
	close(gate)
	waitFor(t, n2.h, "all messages", func() bool { return len(n2.h.indexes(1)) >= n })
	if got := n2.h.indexes(1); !slices.Equal(got, seq(n)) {
		t.Fatalf("indexes out of order: %v", got)
	}
	batches := counterValue(t, n1.reg, "tessera_raft_transport_batches_sent_total", map[string]string{"peer": "2"})
	minBatches := float64(n * len(payload) / maxBatch)
	if batches >= n/10 || batches < minBatches {
		t.Fatalf("%d messages went out in %v batches, want between %v and %d", n, batches, minBatches, n/10)
	}
	n2.h.mu.Lock()
	sizes := slices.Clone(n2.h.mu.batchSizes[1])
	n2.h.mu.Unlock()
	if float64(len(sizes)) != batches {
		t.Errorf("receiver saw %d batches, sender counted %v", len(sizes), batches)
	}
	for _, s := range sizes {
		if s > maxBatch {
			t.Errorf("a batch carried %d bytes of messages, more than MaxBatchBytes %d", s, maxBatch)
		}
	}
	t.Logf("%d messages in %v batches (sizes %v)", n, batches, sizes)
}

// A full send queue drops new messages and reports their groups unreachable.
func TestTransportQueueFull(t *testing.T) {
	tn := newTestNet()
	gate := make(chan struct{})
	const queueLen = 10
	n1 := startNode(t, tn, 1, func(c *TransportConfig) {
		c.Resolve = gatedResolve(c.Resolve, gate)
		c.SendQueueLen = queueLen
	})
	n2 := startNode(t, tn, 2, nil)
	const n = 25
	for i := range n {
		n1.tr.Send(2, GroupMessage{Group: GroupID(100 + i), Message: testMsg(1, 2, uint64(i))})
	}
	close(gate)
	waitFor(t, n2.h, "queued messages", func() bool { return len(n2.h.indexes(1)) >= queueLen })
	var want []GroupID
	for i := queueLen; i < n; i++ {
		want = append(want, GroupID(100+i))
	}
	waitFor(t, n1.h, "unreachable reports", func() bool { return len(n1.h.unreachableGroups(2)) >= len(want) })
	if got := n1.h.unreachableGroups(2); !slices.Equal(got, want) {
		t.Fatalf("unreachable groups %v, want %v", got, want)
	}
	if got := n2.h.indexes(1); !slices.Equal(got, seq(queueLen)) {
		t.Fatalf("received %v, want the first %d", got, queueLen)
	}
	dropped := counterValue(t, n1.reg, "tessera_raft_transport_messages_dropped_total",
		map[string]string{"peer": "2", "reason": dropReasonQueueFull})
	if dropped != n-queueLen {
		t.Fatalf("dropped %v, want %d", dropped, n-queueLen)
	}
}

// When the peer goes down the sender reports its groups unreachable; when it
// comes back on the same address delivery resumes, in order.
func TestTransportPeerDownAndBack(t *testing.T) {
	tn := newTestNet()
	n1 := startNode(t, tn, 1, nil)
	n2 := startNode(t, tn, 2, nil)

	n1.tr.Send(2, GroupMessage{Group: 5, Message: testMsg(1, 2, 0)})
	waitFor(t, n2.h, "first message", func() bool { return len(n2.h.indexes(1)) == 1 })

	n2.stopServer()
	next := uint64(1)
	// The stream's end is noticed on its own, then the next batch fails to
	// dial: one Send is enough, but keep sending as raft would.
	waitFor(t, n1.h, "unreachable report", func() bool {
		n1.tr.Send(2, GroupMessage{Group: 5, Message: testMsg(1, 2, next)})
		next++
		return slices.Contains(n1.h.unreachableGroups(2), 5)
	})
	if got := counterValue(t, n1.reg, "tessera_raft_transport_send_errors_total", map[string]string{"peer": "2"}); got == 0 {
		t.Error("send_errors_total is 0 after the peer went down")
	}
	// A group that never sent on the broken stream is reported when its own
	// batch fails to dial.
	waitFor(t, n1.h, "unreachable report from a failed dial", func() bool {
		n1.tr.Send(2, GroupMessage{Group: 6, Message: testMsg(1, 2, next)})
		next++
		return slices.Contains(n1.h.unreachableGroups(2), 6)
	})
	if got := counterValue(t, n1.reg, "tessera_raft_transport_messages_dropped_total",
		map[string]string{"peer": "2", "reason": dropReasonSendError}); got == 0 {
		t.Error("no message counted as dropped with a failed dial")
	}

	n2.restartServer(t)
	before := len(n2.h.indexes(1))
	waitFor(t, n2.h, "delivery after restart", func() bool {
		n1.tr.Send(2, GroupMessage{Group: 5, Message: testMsg(1, 2, next)})
		next++
		return len(n2.h.indexes(1)) > before
	})
	if got := counterValue(t, n1.reg, "tessera_raft_transport_stream_reconnects_total", map[string]string{"peer": "2"}); got == 0 {
		t.Error("stream_reconnects_total is 0 after a reconnect")
	}
	// Once the stream is back, a burst arrives complete and in order.
	start := next
	for range 100 {
		n1.tr.Send(2, GroupMessage{Group: 5, Message: testMsg(1, 2, next)})
		next++
	}
	waitFor(t, n2.h, "burst after restart", func() bool {
		got := n2.h.indexes(1)
		return len(got) > 0 && got[len(got)-1] == next-1
	})
	got := n2.h.indexes(1)
	if !slices.IsSorted(got) {
		t.Fatalf("indexes not in order: %v", got)
	}
	i := slices.Index(got, start)
	if i < 0 || !slices.Equal(got[i:], seq(int(next))[start:]) {
		t.Fatalf("burst %d..%d not delivered completely: got %v", start, next-1, got)
	}
}

// A DropMessage knob installed on one node cuts it off both ways; turning it
// off heals the partition.
func TestTransportDropMessagePartition(t *testing.T) {
	tn := newTestNet()
	var partitioned atomic.Bool
	var droppedIn, droppedOut atomic.Int64 // at n3: received from n1, sent to n1
	knobs := &TransportKnobs{DropMessage: func(from, to NodeID, m GroupMessage) bool {
		if !partitioned.Load() {
			return false
		}
		switch {
		case to == 3:
			droppedIn.Add(1)
		case from == 3:
			droppedOut.Add(1)
		}
		return true
	}}
	n1 := startNode(t, tn, 1, nil)
	n2 := startNode(t, tn, 2, nil)
	n3 := startNode(t, tn, 3, func(c *TransportConfig) { c.Knobs = knobs })

	partitioned.Store(true)
	const k = 5
	for i := range k {
		n1.tr.Send(3, GroupMessage{Group: 1, Message: testMsg(1, 3, uint64(i))})
		n3.tr.Send(1, GroupMessage{Group: 1, Message: testMsg(3, 1, uint64(i))})
		n1.tr.Send(2, GroupMessage{Group: 1, Message: testMsg(1, 2, uint64(i))})
	}
	// n1 -> n2 is unaffected.
	waitFor(t, n2.h, "n1->n2 during the partition", func() bool { return len(n2.h.indexes(1)) == k })
	// Every message across the partition reached the knob and was dropped.
	if got := droppedOut.Load(); got != k {
		t.Fatalf("n3 dropped %d outgoing messages, want %d", got, k)
	}
	waitFor(t, nil, "n3 to drop incoming messages", func() bool { return droppedIn.Load() == k })

	partitioned.Store(false)
	const marker = 1000
	n1.tr.Send(3, GroupMessage{Group: 1, Message: testMsg(1, 3, marker)})
	n3.tr.Send(1, GroupMessage{Group: 1, Message: testMsg(3, 1, marker)})
	waitFor(t, n3.h, "n1->n3 after healing", func() bool { return len(n3.h.indexes(1)) > 0 })
	waitFor(t, n1.h, "n3->n1 after healing", func() bool { return len(n1.h.indexes(3)) > 0 })
	// Messages from one peer arrive in order, so had anything from the
	// partition got through it would precede the marker.
	if got := n3.h.indexes(1); !slices.Equal(got, []uint64{marker}) {
		t.Fatalf("n3 received %v from n1, want only the marker", got)
	}
	if got := n1.h.indexes(3); !slices.Equal(got, []uint64{marker}) {
		t.Fatalf("n1 received %v from n3, want only the marker", got)
	}
	// Snapshots are cut off too.
	partitioned.Store(true)
	err := n1.tr.SendSnapshot(context.Background(), 3, testSnapHeader(1, 3, 9), bytes.NewReader([]byte("data")))
	if err == nil {
		t.Fatal("snapshot crossed the partition")
	}
}

func testSnapHeader(from, to NodeID, g GroupID) SnapshotHeader {
	return SnapshotHeader{Group: g, Message: &raftpb.Message{
		Type: raftpb.MsgSnap.Enum(),
		From: proto.Uint64(uint64(from)),
		To:   proto.Uint64(uint64(to)),
		Term: proto.Uint64(3),
		Snapshot: &raftpb.Snapshot{Metadata: &raftpb.SnapshotMetadata{
			Index: proto.Uint64(42),
			Term:  proto.Uint64(3),
		}},
	}}
}

// A snapshot of a few MiB arrives intact; the receiver's verdict, including
// its error, comes back to the sender.
func TestTransportSnapshot(t *testing.T) {
	tn := newTestNet()
	n1 := startNode(t, tn, 1, nil)
	n2 := startNode(t, tn, 2, nil)

	data := make([]byte, 3<<20+12345)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	want := sha256.Sum256(data)

	var (
		mu       sync.Mutex
		gotSum   [32]byte
		gotLen   int
		gotGroup GroupID
		gotFrom  NodeID
		gotIndex uint64
	)
	n2.h.snapshot = func(ctx context.Context, from NodeID, h SnapshotHeader, r io.Reader) error {
		hash := sha256.New()
		n, err := io.Copy(hash, r)
		if err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		copy(gotSum[:], hash.Sum(nil))
		gotLen, gotGroup, gotFrom = int(n), h.Group, from
		gotIndex = h.Message.GetSnapshot().GetMetadata().GetIndex()
		return nil
	}
	if err := n1.tr.SendSnapshot(context.Background(), 2, testSnapHeader(1, 2, 9), bytes.NewReader(data)); err != nil {
		t.Fatalf("SendSnapshot: %v", err)
	}
	mu.Lock()
	if gotSum != want || gotLen != len(data) || gotGroup != 9 || gotFrom != 1 || gotIndex != 42 {
		t.Fatalf("received %d bytes (sum match %v) for %s from %s at index %d; want %d bytes for g9 from n1 at 42",
			gotLen, gotSum == want, gotGroup, gotFrom, gotIndex, len(data))
	}
	mu.Unlock()
	if got := counterValue(t, n1.reg, "tessera_raft_transport_snapshot_sent_bytes_total", nil); got != float64(len(data)) {
		t.Errorf("snapshot_sent_bytes_total = %v, want %d", got, len(data))
	}

	// The receiver refuses after reading part of the data.
	n2.h.snapshot = func(ctx context.Context, from NodeID, h SnapshotHeader, r io.Reader) error {
		if _, err := io.ReadFull(r, make([]byte, 100)); err != nil {
			return err
		}
		return errors.New("disk full")
	}
	err := n1.tr.SendSnapshot(context.Background(), 2, testSnapHeader(1, 2, 9), bytes.NewReader(data))
	if !errors.Is(err, ErrSnapshotRejected) || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("SendSnapshot = %v, want ErrSnapshotRejected with the receiver's reason", err)
	}

	// A sender whose data fails mid-way aborts: the receiver sees an error,
	// never a short snapshot that looks complete.
	readErr := make(chan error, 1)
	n2.h.snapshot = func(ctx context.Context, from NodeID, h SnapshotHeader, r io.Reader) error {
		_, err := io.Copy(io.Discard, r)
		readErr <- err
		return err
	}
	failing := io.MultiReader(bytes.NewReader(data[:2<<20]), iotest.ErrReader(errors.New("sst read failed")))
	if err := n1.tr.SendSnapshot(context.Background(), 2, testSnapHeader(1, 2, 9), failing); err == nil || !strings.Contains(err.Error(), "sst read failed") {
		t.Fatalf("SendSnapshot with failing data = %v", err)
	}
	select {
	case err := <-readErr:
		if err == nil {
			t.Fatal("receiver read an aborted snapshot to a clean EOF")
		}
	case <-time.After(waitTimeout):
		t.Fatal("receiver's handler never returned")
	}
	for result, want := range map[string]float64{"accepted": 1, "rejected": 1, "error": 1} {
		if got := counterValue(t, n1.reg, "tessera_raft_transport_snapshots_sent_total", map[string]string{"result": result}); got != want {
			t.Errorf("snapshots_sent_total{result=%s} = %v, want %v", result, got, want)
		}
	}
	if got := counterValue(t, n2.reg, "tessera_raft_transport_snapshots_received_total", map[string]string{"result": "accepted"}); got != 1 {
		t.Errorf("snapshots_received_total{result=accepted} = %v, want 1", got)
	}
}

// Garbage from a peer is counted and dropped; it never crashes the receiver
// nor, short of a misaddressed batch, breaks the stream.
func TestTransportMalformedInput(t *testing.T) {
	tn := newTestNet()
	n2 := startNode(t, tn, 2, nil)
	conn, err := grpc.NewClient(n2.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	client := raftrpc.NewRaftTransportClient(conn)
	stream, err := client.RaftMessages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	good := func(i uint64) *raftrpc.RaftMessage {
		b, err := proto.Marshal(testMsg(1, 2, i))
		if err != nil {
			t.Fatal(err)
		}
		return &raftrpc.RaftMessage{GroupId: 4, Message: b}
	}
	misaddressed, _ := proto.Marshal(testMsg(1, 0, 99))
	batch := &raftrpc.RaftBatch{FromNode: 1, ToNode: 2, Messages: []*raftrpc.RaftMessage{
		{GroupId: 4, Message: []byte{0xff, 0xff, 0xff, 0xff, 0xff}}, // not a protobuf
		good(0),
		{GroupId: 4, Message: misaddressed}, // no To replica
		{GroupId: 4, Message: []byte{0x0a, 0x80}}, // truncated
		good(1),
	}}
	if err := stream.Send(batch); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatalf("Recv: %v", err)
	}
	if !strings.Contains(resp.GetError(), "3 invalid") {
		t.Fatalf("response %q, want a report of 3 invalid messages", resp.GetError())
	}
	waitFor(t, n2.h, "valid messages", func() bool { return len(n2.h.indexes(1)) >= 2 })
	// The stream is still usable.
	if err := stream.Send(&raftrpc.RaftBatch{FromNode: 1, ToNode: 2, Messages: []*raftrpc.RaftMessage{good(2)}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, n2.h, "message after garbage", func() bool { return len(n2.h.indexes(1)) >= 3 })
	if got := n2.h.indexes(1); !slices.Equal(got, []uint64{0, 1, 2}) {
		t.Fatalf("delivered %v, want [0 1 2]", got)
	}
	if got := counterValue(t, n2.reg, "tessera_raft_transport_invalid_received_total", nil); got != 3 {
		t.Fatalf("invalid_received_total = %v, want 3", got)
	}

	// A batch for another node ends the stream with FailedPrecondition.
	if err := stream.Send(&raftrpc.RaftBatch{FromNode: 1, ToNode: 7, Messages: []*raftrpc.RaftMessage{good(3)}}); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("misaddressed batch: Recv = %v, want FailedPrecondition", err)
	}

	// A snapshot stream without a header, or with a bad one, is refused.
	for name, first := range map[string]*raftrpc.SnapshotChunk{
		"no header":      {Data: []byte("x")},
		"garbage header": {Header: &raftrpc.SnapshotHeader{FromNode: 1, ToNode: 2, GroupId: 1, Message: []byte{0xff, 0xff}}},
		"not MsgSnap":    {Header: &raftrpc.SnapshotHeader{FromNode: 1, ToNode: 2, GroupId: 1, Message: good(0).Message}},
	} {
		snap, err := client.Snapshot(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := snap.Send(first); err != nil && !errors.Is(err, io.EOF) {
			t.Fatal(err)
		}
		if _, err := snap.CloseAndRecv(); status.Code(err) != codes.InvalidArgument {
			t.Errorf("%s: snapshot = %v, want InvalidArgument", name, err)
		}
	}
	// The node still works for a well-behaved peer.
	n1 := startNode(t, tn, 1, nil)
	n1.tr.Send(2, GroupMessage{Group: 4, Message: testMsg(1, 2, 3)})
	waitFor(t, n2.h, "message from a real peer", func() bool { return len(n2.h.indexes(1)) >= 4 })
}

// Close returns promptly even while dials and snapshots are stuck on a peer
// that accepts TCP connections but never answers, and on a peer that does
// not exist.
func TestTransportCloseWithUnreachablePeer(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan struct{}, 16)
	var conns []net.Conn
	var connsMu sync.Mutex
	acceptDone := make(chan struct{})
	go func() {
		defer close(acceptDone)
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			connsMu.Lock()
			conns = append(conns, c) // held open, never answered
			connsMu.Unlock()
			select {
			case accepted <- struct{}{}:
			default:
			}
		}
	}()
	defer func() {
		lis.Close()
		<-acceptDone
		connsMu.Lock()
		for _, c := range conns {
			c.Close()
		}
		connsMu.Unlock()
	}()

	tn := newTestNet()
	tn.set(2, lis.Addr().String())
	h := newFakeHandler()
	cfg := testTransportConfig(1, tn.resolve, h)
	cfg.DialTimeout = time.Minute // only Close can end the dial
	tr, err := NewTransport(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tr.Send(2, GroupMessage{Group: 1, Message: testMsg(1, 2, 0)})
	tr.Send(9, GroupMessage{Group: 1, Message: testMsg(1, 9, 0)}) // unknown node: Resolve fails
	snapDone := make(chan error, 1)
	go func() {
		snapDone <- tr.SendSnapshot(context.Background(), 2, testSnapHeader(1, 2, 1), bytes.NewReader(make([]byte, 1<<20)))
	}()
	for range 2 { // the raft stream's connection and the snapshot's
		select {
		case <-accepted:
		case <-time.After(waitTimeout):
			t.Fatal("the transport never dialed the black hole")
		}
	}
	waitFor(t, h, "unknown node reported unreachable", func() bool { return len(h.unreachableGroups(9)) > 0 })

	start := time.Now()
	closed := make(chan error, 1)
	go func() { closed <- tr.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close hung on an unreachable peer")
	}
	t.Logf("Close took %s", time.Since(start))
	select {
	case err := <-snapDone:
		if !errors.Is(err, ErrTransportClosed) {
			t.Fatalf("SendSnapshot after Close = %v, want ErrTransportClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("SendSnapshot did not return after Close")
	}
	// After Close: Send is a no-op, SendSnapshot refuses, Close is idempotent.
	tr.Send(2, GroupMessage{Group: 1, Message: testMsg(1, 2, 1)})
	if err := tr.SendSnapshot(context.Background(), 2, testSnapHeader(1, 2, 1), bytes.NewReader(nil)); !errors.Is(err, ErrTransportClosed) {
		t.Fatalf("SendSnapshot after Close = %v", err)
	}
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
}

// Closing a Transport ends its inbound streams (the sender sees the break)
// and no handler runs after Close returns.
func TestTransportCloseEndsInboundStreams(t *testing.T) {
	tn := newTestNet()
	n1 := startNode(t, tn, 1, nil)
	n2 := startNode(t, tn, 2, nil)
	n1.tr.Send(2, GroupMessage{Group: 1, Message: testMsg(1, 2, 0)})
	waitFor(t, n2.h, "first message", func() bool { return len(n2.h.indexes(1)) == 1 })
	if err := n2.tr.Close(); err != nil {
		t.Fatal(err)
	}
	n2.h.mu.Lock()
	frozen := len(n2.h.mu.received[1])
	n2.h.mu.Unlock()
	next := uint64(1)
	waitFor(t, n1.h, "unreachable after the receiver closed", func() bool {
		n1.tr.Send(2, GroupMessage{Group: 1, Message: testMsg(1, 2, next)})
		next++
		return len(n1.h.unreachableGroups(2)) > 0
	})
	if got := len(n2.h.indexes(1)); got != frozen {
		t.Fatalf("a closed transport delivered %d more messages", got-frozen)
	}
}

// Two Transports may share a registry only one at a time: Close releases
// the metric names.
func TestTransportMetricsRegistration(t *testing.T) {
	reg := prometheus.NewRegistry()
	cfg := testTransportConfig(1, newTestNet().resolve, newFakeHandler())
	cfg.Registerer = reg
	tr, err := NewTransport(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewTransport(cfg); err == nil {
		t.Fatal("a second Transport registered the same metrics")
	}
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	tr2, err := NewTransport(cfg)
	if err != nil {
		t.Fatalf("after Close: %v", err)
	}
	if err := tr2.Close(); err != nil {
		t.Fatal(err)
	}
}

// syncBuffer is a log sink shared by goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// A peer that shuts down cleanly (its Transport closes before its server
// stops, as a node's Close does) costs its peers no warning, nor does the
// closing node warn about the streams it ends itself; a peer whose server
// vanishes without closing its Transport still gets one.
func TestTransportCleanShutdownIsQuiet(t *testing.T) {
	for _, clean := range []bool{true, false} {
		t.Run(fmt.Sprintf("clean=%v", clean), func(t *testing.T) {
			tn := newTestNet()
			var log1, log2 syncBuffer
			withLog := func(b *syncBuffer) func(*TransportConfig) {
				return func(c *TransportConfig) {
					c.Logger = slog.New(slog.NewTextHandler(b, nil)).With("node", "n")
				}
			}
			n1 := startNode(t, tn, 1, withLog(&log1))
			n2 := startNode(t, tn, 2, withLog(&log2))
			n1.tr.Send(2, GroupMessage{Group: 1, Message: testMsg(1, 2, 0)})
			n2.tr.Send(1, GroupMessage{Group: 1, Message: testMsg(2, 1, 0)})
			waitFor(t, n2.h, "n1's message", func() bool { return len(n2.h.indexes(1)) == 1 })
			waitFor(t, n1.h, "n2's message", func() bool { return len(n1.h.indexes(2)) == 1 })
			if clean {
				if err := n2.tr.Close(); err != nil {
					t.Fatal(err)
				}
				// As a node's Close: the peer server stops gracefully,
				// so the "transport closed" status the handlers ended
				// with reaches n1 (a hard Stop may cut the connection
				// before gRPC flushed it: n1 then sees EOF).
				n2.stopServerGracefully()
			}
			n2.stopServer()
			next := uint64(1)
			waitFor(t, n1.h, "unreachable after n2 went", func() bool {
				n1.tr.Send(2, GroupMessage{Group: 1, Message: testMsg(1, 2, next)})
				next++
				return len(n1.h.unreachableGroups(2)) > 0
			})
			if err := n1.tr.Close(); err != nil {
				t.Fatal(err)
			}
			if !clean {
				if !strings.Contains(log1.String(), "level=WARN") {
					t.Fatalf("n1 did not warn about a peer that vanished:\n%s", log1.String())
				}
				return
			}
			for name, b := range map[string]*syncBuffer{"n1": &log1, "n2": &log2} {
				for _, line := range strings.Split(b.String(), "\n") {
					if strings.Contains(line, "level=WARN") || strings.Contains(line, "level=ERROR") {
						t.Errorf("%s logged on a clean shutdown: %s", name, line)
					}
					if strings.Count(line, " node=") > 1 {
						t.Errorf("%s: repeated node key: %s", name, line)
					}
				}
			}
		})
	}
}
