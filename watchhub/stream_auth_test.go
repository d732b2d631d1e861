package watchhub

import (
	"context"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
)

// TestCreateRefusedByAuthorize: a creation the AuthorizeCreate hook refuses
// is answered created and canceled, watch id -1, with the error's text
// (etcd 3.7.3's cancel reason for a user without read permission), and no
// watcher is registered.
func TestCreateRefusedByAuthorize(t *testing.T) {
	var asked *pb.WatchCreateRequest
	h := New(Config{AuthorizeCreate: func(_ context.Context, req *pb.WatchCreateRequest) error {
		asked = req
		return rpctypes.ErrGRPCPermissionDenied
	}})
	defer h.Close()
	s := &stream{h: h, ctx: context.Background(), queued: make(chan struct{}, 1), drained: make(chan struct{}, 1)}
	s.mu.watchers = map[int64]*watcher{}
	req := &pb.WatchCreateRequest{Key: []byte("w/"), RangeEnd: []byte("w0")}
	s.create(req)
	if asked != req {
		t.Fatalf("the hook was asked about %v", asked)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.mu.q) != 1 || len(s.mu.watchers) != 0 {
		t.Fatalf("queued %d responses, %d watchers; want 1 response, no watcher", len(s.mu.q), len(s.mu.watchers))
	}
	r := s.mu.q[0].resp
	const want = "rpc error: code = PermissionDenied desc = etcdserver: permission denied"
	if !r.Created || !r.Canceled || r.WatchId != -1 || r.CancelReason != want {
		t.Errorf("response %+v; want created, canceled, id -1, reason %q", r, want)
	}
}
