package shard

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/protobuf/proto"

	"github.com/tesseradb/tessera/engine"
	"github.com/tesseradb/tessera/proto/tesserapb"
	"github.com/tesseradb/tessera/raftgroup"
)

// gateClock is a Clock whose every call blocks until the test releases it
// with the first timestamp to hand out. It steers the one interleaving that
// a real cluster cannot be made to produce on demand: a leadership change
// while a batch waits for its timestamps.
type gateClock struct {
	entered chan int             // receives n of each call
	release chan engine.Revision // the first timestamp of the call
}

func newGateClock() *gateClock {
	return &gateClock{entered: make(chan int, 16), release: make(chan engine.Revision)}
}

func (c *gateClock) Timestamps(ctx context.Context, n int) (engine.Revision, error) {
	c.entered <- n
	select {
	case first := <-c.release:
		return first, nil
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// recordingRaft is the part of the raft host the proposal pipeline talks to,
// recording what it is asked to propose. The raft side of a leadership change
// is driven by the test through Replica.LeaderChanged, as the host would.
type recordingRaft struct {
	mu        sync.Mutex
	proposals []*tesserapb.ShardCommand
}

func (h *recordingRaft) Propose(_ raftgroup.GroupID, data []byte) error {
	cmd := &tesserapb.ShardCommand{}
	if err := proto.Unmarshal(data, cmd); err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.proposals = append(h.proposals, cmd)
	return nil
}

func (h *recordingRaft) ReadIndex(context.Context, raftgroup.GroupID) (uint64, error) {
	return 0, errors.New("recordingRaft: no ReadIndex")
}

func (h *recordingRaft) proposed() []*tesserapb.ShardCommand {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]*tesserapb.ShardCommand(nil), h.proposals...)
}

// TestWriteNotProposedAfterTermChange: a leader that lost and regained
// leadership while its batch waited for timestamps must not propose the
// batch: the timestamps were fetched in the old term, and a leader of the
// term in between may have committed writes above them. The write fails
// with NOT_LEADER (safe to retry: it was never proposed).
func TestWriteNotProposedAfterTermChange(t *testing.T) {
	e := openEngine(t)
	if err := WriteInitialState(e, hashTestDesc); err != nil {
		t.Fatal(err)
	}
	clock, host := newGateClock(), &recordingRaft{}
	r, err := Open(Config{NodeID: 1, Engine: e, Raft: host, Clock: clock}, raftgroup.GroupID(hashTestDesc.GetRangeId()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	r.LeaderChanged(1, 5, true)

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	type result struct {
		err error
	}
	res := make(chan result, 1)
	go func() {
		_, _, err := r.Write(ctx, 0, &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte("b"), Value: []byte("v")}}}, 0)
		res <- result{err}
	}()
	select {
	case <-clock.entered:
	case <-ctx.Done():
		t.Fatal("the write never asked for timestamps")
	}
	// Term 6 belongs to node 2; node 1 wins term 7 before the timestamps
	// of its term-5 batch arrive.
	r.LeaderChanged(2, 6, false)
	r.LeaderChanged(1, 7, true)
	clock.release <- baseRev

	var got result
	select {
	case got = <-res:
	case <-ctx.Done():
		t.Fatalf("the write did not return; proposed %d commands", len(host.proposed()))
	}
	if n := len(host.proposed()); n != 0 {
		t.Fatalf("the batch of term 5 was proposed in term 7 (%d commands)", n)
	}
	var re *RoutingError
	if !errors.As(got.err, &re) || re.Code != tesserapb.RoutingError_NOT_LEADER {
		t.Fatalf("write error %v, want NOT_LEADER", got.err)
	}

	// The next write, whose batch starts in term 7, is proposed.
	go func() {
		_, _, err := r.Write(ctx, 0, &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte("b"), Value: []byte("v")}}}, 0)
		res <- result{err}
	}()
	select {
	case <-clock.entered:
	case <-ctx.Done():
		t.Fatal("the second write never asked for timestamps")
	}
	clock.release <- baseRev + 10
	deadline := time.Now().Add(10 * time.Second)
	for len(host.proposed()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the second write was not proposed")
		}
		time.Sleep(time.Millisecond)
	}
	if p := host.proposed()[0]; p.GetRevision() != int64(baseRev+10) {
		t.Fatalf("proposed at revision %d, want %d", p.GetRevision(), baseRev+10)
	}
}

// TestWriteLeaderNotCaptured: the write whose goroutine starts a batch
// serves at most one batch of others after its own (Batching.Tail 1), and
// is answered while a later batch still waits for its timestamps on
// another goroutine.
func TestWriteLeaderNotCaptured(t *testing.T) {
	e := openEngine(t)
	if err := WriteInitialState(e, hashTestDesc); err != nil {
		t.Fatal(err)
	}
	clock, host := newGateClock(), &recordingRaft{}
	// The gate never times out on its own: a captured goroutine must show
	// as one, not recover when its batch gives up.
	r, err := Open(Config{NodeID: 1, Engine: e, Raft: host, Clock: clock, FlushTimeout: time.Hour}, raftgroup.GroupID(hashTestDesc.GetRangeId()))
	if err != nil {
		t.Fatal(err)
	}
	h := &hashReplica{t: t, e: e, r: r, index: 10}
	r.LeaderChanged(1, 5, true)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	// Close unblocks the gate's last call, then the replica.
	t.Cleanup(func() { cancel(); r.Close() })

	put := func(k string) <-chan error {
		done := make(chan error, 1)
		go func() {
			_, _, err := r.Write(ctx, 0, &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte(k), Value: []byte("v")}}}, 0)
			done <- err
		}()
		return done
	}
	entered := func(what string) {
		t.Helper()
		select {
		case <-clock.entered:
		case <-ctx.Done():
			t.Fatalf("%s never asked for timestamps", what)
		}
	}
	proposed := func(n int) *tesserapb.ShardCommand {
		t.Helper()
		for len(host.proposed()) < n {
			if ctx.Err() != nil {
				t.Fatalf("%d proposals, want %d", len(host.proposed()), n)
			}
			time.Sleep(time.Millisecond)
		}
		return host.proposed()[n-1]
	}

	a := put("b")
	entered("batch 1 [a]")
	put("c") // b: queued behind batch 1
	// The queue is checked when batch 1 ends: make sure b is in it.
	waitQueued(t, r, 1)
	clock.release <- baseRev
	aCmd := proposed(1)
	entered("batch 2 [b], on a's goroutine (its tail)")
	put("d") // c: queued behind batch 2
	waitQueued(t, r, 1)
	// a applies while its goroutine serves batch 2.
	h.apply(aCmd, true)
	clock.release <- baseRev + 10
	proposed(2)
	entered("batch 3 [c], handed off")
	// Batch 3 is still waiting for its timestamps, yet a is answered: its
	// goroutine left after one batch of others.
	select {
	case err := <-a:
		if err != nil {
			t.Fatalf("write a: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("write a was not answered while batch 3 ran: its goroutine is still captured")
	}
	select {
	case clock.release <- baseRev + 20:
	case <-ctx.Done():
		t.Fatal("batch 3 stopped waiting for its timestamps")
	}
	proposed(3)
}

// waitQueued waits until n writes wait in the replica's batcher.
func waitQueued(t *testing.T, r *Replica, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for r.batches.Queued() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d writes queued, want %d", r.batches.Queued(), n)
		}
		time.Sleep(time.Millisecond)
	}
}
