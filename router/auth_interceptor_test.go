package router

import (
	"context"
	"net"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/tesseradb/tessera/placement"
)

// tokenAuth maps tokens to users.
type tokenAuth struct {
	tokens map[string]string
	revs   map[string]uint64 // a token's auth revision (JWT), absent: none
	state  *placement.AuthState
}

func (a tokenAuth) User(ctx context.Context) (string, uint64, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	toks := md.Get("token")
	if len(toks) == 0 {
		return "", 0, nil
	}
	u, ok := a.tokens[toks[0]]
	if !ok {
		return "", 0, rpctypes.ErrGRPCInvalidAuthToken
	}
	return u, a.revs[toks[0]], nil
}

func (a tokenAuth) Permissions() AuthPermissions { return a.state }

type okKV struct{ pb.UnimplementedKVServer }

func (okKV) Range(context.Context, *pb.RangeRequest) (*pb.RangeResponse, error) {
	return &pb.RangeResponse{}, nil
}

type okLease struct{ pb.UnimplementedLeaseServer }

func (okLease) LeaseKeepAlive(s pb.Lease_LeaseKeepAliveServer) error {
	for {
		req, err := s.Recv()
		if err != nil {
			return err
		}
		if err := s.Send(&pb.LeaseKeepAliveResponse{ID: req.ID, TTL: 60}); err != nil {
			return err
		}
	}
}

type okMaint struct {
	pb.UnimplementedMaintenanceServer
}

func (okMaint) Snapshot(_ *pb.SnapshotRequest, s pb.Maintenance_SnapshotServer) error {
	return s.Send(&pb.SnapshotResponse{})
}

// TestAuthInterceptors runs the interceptors in a real gRPC server on
// loopback: unary requests, a keep-alive stream and a server stream are
// checked as their caller, with etcd's errors.
func TestAuthInterceptors(t *testing.T) {
	st := tableAuthState(t)
	a := tokenAuth{
		tokens: map[string]string{"t-root": "root", "t-reader": "reader", "t-writer": "writer", "t-reader-old": "reader", "t-root-old": "root", "t-reader-now": "reader", "t-root-old-snap": "root"},
		revs:   map[string]uint64{"t-reader-old": st.Revision() - 1, "t-root-old": st.Revision() - 1, "t-reader-now": st.Revision(), "t-root-old-snap": st.Revision() - 1},
		state:  st,
	}
	leaseKeys := func(int64) ([][]byte, error) { return [][]byte{[]byte("w/leased")}, nil }
	srv := grpc.NewServer(grpc.UnaryInterceptor(AuthUnaryInterceptor(a, leaseKeys)), grpc.StreamInterceptor(AuthStreamInterceptor(a, leaseKeys)))
	pb.RegisterKVServer(srv, okKV{})
	pb.RegisterLeaseServer(srv, okLease{})
	pb.RegisterMaintenanceServer(srv, okMaint{})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(lis) }()
	defer srv.Stop()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	as := func(token string) context.Context {
		ctx := t.Context()
		if token != "" {
			ctx = metadata.NewOutgoingContext(ctx, metadata.Pairs("token", token))
		}
		return ctx
	}
	code := func(err error) string {
		if err == nil {
			return "OK"
		}
		return status.Convert(err).Message()
	}
	kv := pb.NewKVClient(conn)
	for _, tc := range []struct {
		token, key, want string
	}{
		{"t-reader", "r/a", "OK"},
		{"t-reader", "w/a", "etcdserver: permission denied"},
		{"t-root", "w/a", "OK"},
		{"", "r/a", "etcdserver: user name is empty"},
		{"bogus", "r/a", "etcdserver: invalid auth token"},
		// Tokens carrying an auth revision (JWT): older than the state's
		// is refused for key checks, root included, as etcd does.
		{"t-reader-old", "r/a", "etcdserver: revision of auth store is old"},
		{"t-root-old", "w/a", "etcdserver: revision of auth store is old"},
		{"t-reader-now", "r/a", "OK"},
	} {
		_, err := kv.Range(as(tc.token), &pb.RangeRequest{Key: []byte(tc.key)})
		if got := code(err); got != tc.want {
			t.Errorf("Range %s with %q: %s, want %s", tc.key, tc.token, got, tc.want)
		}
	}
	keepAlive := func(token string) error {
		s, err := pb.NewLeaseClient(conn).LeaseKeepAlive(as(token))
		if err != nil {
			return err
		}
		if err := s.Send(&pb.LeaseKeepAliveRequest{ID: 7}); err != nil {
			return err
		}
		_, err = s.Recv()
		return err
	}
	if err := keepAlive("t-writer"); err != nil {
		t.Errorf("keep-alive by the writer of the lease's key: %v", err)
	}
	if got := code(keepAlive("t-reader")); got != "etcdserver: permission denied" {
		t.Errorf("keep-alive by a reader: %s", got)
	}
	snapshot := func(token string) error {
		s, err := pb.NewMaintenanceClient(conn).Snapshot(as(token), &pb.SnapshotRequest{})
		if err != nil {
			return err
		}
		_, err = s.Recv()
		return err
	}
	if err := snapshot("t-root"); err != nil {
		t.Errorf("snapshot by root: %v", err)
	}
	// Administrative calls do not look at the token's revision (etcd's
	// IsAdminPermitted).
	if err := snapshot("t-root-old-snap"); err != nil {
		t.Errorf("snapshot by root with an older token: %v", err)
	}
	if got := code(snapshot("t-writer")); got != "etcdserver: permission denied" {
		t.Errorf("snapshot by the writer: %s", got)
	}
	// The watch hub's hook: a bad token cancels the watch with etcd's reason.
	hook := WatchAuthorizer(a)
	md := metadata.NewIncomingContext(t.Context(), metadata.Pairs("token", "bogus"))
	if err := hook(md, &pb.WatchCreateRequest{Key: []byte("r/a")}); err == nil || err.Error() != "rpc error: code = Unauthenticated desc = etcdserver: invalid auth token" {
		t.Errorf("watch with a bad token: %v", err)
	}
}
