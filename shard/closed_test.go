package shard

import (
	"context"
	"errors"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/tesseradb/tessera/raftgroup"
)

func getOp(k string) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_RequestRange{RequestRange: &pb.RangeRequest{Key: []byte(k)}}}
}

// TestClosedRevisionFollower: the log closes a follower up to what it
// published; a confirmed promise closes it further only once its index is
// applied; a serializable read waits for that, bounded, and then shows the
// state at exactly its revision.
func TestClosedRevisionFollower(t *testing.T) {
	h := newHashReplica(t)
	h.r.LeaderChanged(2, 6, false)
	h.put(100, "k", "v100") // index 11
	if got := h.r.ClosedRevision(); got != 100 {
		t.Fatalf("closed after a write at 100 = %d, want 100", got)
	}
	// Only the current term's leader is accepted.
	for _, c := range []struct {
		leader uint64
		term   uint64
		want   bool
	}{{2, 6, true}, {3, 6, false}, {2, 5, false}, {2, 7, false}} {
		if got := h.r.AcceptClose(raftgroup.NodeID(c.leader), ClosedPromise{Term: c.term, Rev: 500, Index: 11}); got != c.want {
			t.Errorf("AcceptClose(leader %d, term %d) = %v, want %v", c.leader, c.term, got, c.want)
		}
	}
	// A promise for index 13: not applied yet.
	h.r.ApplyClose(ClosedPromise{Term: 6, Rev: 500, Index: 13})
	if got := h.r.ClosedRevision(); got != 100 {
		t.Fatalf("closed before the promise's index applied = %d, want 100", got)
	}
	h.r.cfg.ClosedWait = 50 * time.Millisecond
	if _, _, err := h.r.Read(t.Context(), 0, getOp("k"), 300, true); !errors.Is(err, ErrClosedWait) {
		t.Fatalf("serializable read at 300 with closed 100: %v, want %v", err, ErrClosedWait)
	}
	h.r.cfg.ClosedWait = time.Minute
	type result struct {
		resp *pb.ResponseOp
		rev  int64
		err  error
	}
	done := make(chan result, 1)
	go func() {
		resp, rev, err := h.r.Read(context.Background(), 0, getOp("k"), 300, true)
		done <- result{resp, int64(rev), err}
	}()
	h.put(200, "k", "v200") // index 12: closed 200, the read still waits
	select {
	case res := <-done:
		t.Fatalf("read at 300 answered with closed 200: %+v", res)
	default:
	}
	h.put(250, "k", "v250") // index 13: the promise holds, closed 500
	res := <-done
	if res.err != nil || res.rev != 300 {
		t.Fatalf("read at 300: rev %d, err %v", res.rev, res.err)
	}
	if kvs := res.resp.GetResponseRange().GetKvs(); len(kvs) != 1 || string(kvs[0].Value) != "v250" {
		t.Fatalf("read at 300: %v, want v250", kvs)
	}
	if got := h.r.ClosedRevision(); got != 500 {
		t.Fatalf("closed = %d, want 500", got)
	}
}

// TestClosedRevisionLeaderProposes: a leader proposes only when nothing is
// queued or in flight, above its closed revision, and once it applied an
// entry of its own term.
func TestClosedRevisionLeaderProposes(t *testing.T) {
	h := newHashReplica(t)
	h.r.LeaderChanged(1, 6, true)
	h.put(100, "k", "v") // index 11, term 6
	p, ok := h.r.ProposeClose(400)
	if !ok || p != (ClosedPromise{Term: 6, Rev: 400, Index: 11}) {
		t.Fatalf("ProposeClose(400) = %+v, %v", p, ok)
	}
	if _, ok := h.r.ProposeClose(100); ok {
		t.Fatal("proposed a closed revision at its published revision")
	}
	h.r.ApplyClose(p)
	if st := h.r.Status(); st.Resolved < 400 {
		t.Fatalf("leader's resolved revision %d after its promise at 400 confirmed", st.Resolved)
	}
	h.r.mu.Lock()
	h.r.mu.inflight[1] = &proposal{id: 1, rev: 450, done: make(chan struct{})}
	h.r.mu.Unlock()
	if _, ok := h.r.ProposeClose(600); ok {
		t.Fatal("proposed a closed revision with a write in flight")
	}
	h.r.mu.Lock()
	delete(h.r.mu.inflight, 1)
	h.r.mu.Unlock()
	// A new term: nothing of it applied yet.
	h.r.LeaderChanged(1, 7, true)
	if _, ok := h.r.ProposeClose(700); ok {
		t.Fatal("proposed before applying an entry of its own term")
	}
	// A follower never proposes.
	h.r.LeaderChanged(2, 8, false)
	if _, ok := h.r.ProposeClose(800); ok {
		t.Fatal("a follower proposed a closed revision")
	}
}
