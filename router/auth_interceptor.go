package router

import (
	"context"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc"

	"github.com/tesseradb/tessera/shard"
)

// Authenticator tells who a request speaks for, and the auth state to
// check it against. The server implements it once auth state is
// replicated (issue #16): User reads the "token" metadata (a bad or
// expired token is etcd's rpctypes.ErrGRPCInvalidAuthToken) or, without a
// token and with --client-cert-auth, the verified client certificate's
// common name, as etcd; "" when neither is there.
type Authenticator interface {
	User(ctx context.Context) (string, error)
	Permissions() AuthPermissions
}

// authorize checks one request of ctx's caller. It returns the auth
// revision the request was checked under, 0 when auth is disabled or the
// request needs no check.
func authorize(ctx context.Context, a Authenticator, req any, leaseKeys LeaseKeys) (uint64, error) {
	p := a.Permissions()
	if !p.Enabled() {
		return 0, nil
	}
	if _, ok := req.(*pb.AuthenticateRequest); ok {
		return 0, nil // its token, if any, is not looked at (etcd's answer)
	}
	user, err := a.User(ctx)
	if err != nil {
		return 0, err
	}
	if err := CheckRequest(p, user, req, leaseKeys); err != nil {
		return 0, err
	}
	return p.Revision(), nil
}

// AuthUnaryInterceptor checks every unary request of the client port with
// CheckRequest before it runs (KV, Lease, Cluster, Maintenance, Auth). The
// handler's context carries the auth revision of the check
// (shard.WithAuthRevision): the writes it proposes are refused at apply if
// the range has since learnt a newer one.
func AuthUnaryInterceptor(a Authenticator, leaseKeys LeaseKeys) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		rev, err := authorize(ctx, a, req, leaseKeys)
		if err != nil {
			return nil, err
		}
		return handler(shard.WithAuthRevision(ctx, rev), req)
	}
}

// AuthStreamInterceptor checks every message received on a client stream
// that carries a request (LeaseKeepAlive; a refusal ends the stream, as
// etcd's). Watch creations are checked by the watch hub's AuthorizeCreate
// hook (WatchAuthorizer), which answers a refusal with a canceled watch and
// keeps the stream; Snapshot is checked as its request arrives.
func AuthStreamInterceptor(a Authenticator, leaseKeys LeaseKeys) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		return handler(srv, &authStream{ServerStream: ss, a: a, leaseKeys: leaseKeys})
	}
}

type authStream struct {
	grpc.ServerStream
	a         Authenticator
	leaseKeys LeaseKeys
}

func (s *authStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	switch m.(type) {
	case *pb.WatchRequest:
		return nil // per creation, in the hub
	}
	_, err := authorize(s.Context(), s.a, m, s.leaseKeys)
	return err
}

// WatchAuthorizer is the watch hub's AuthorizeCreate hook: the caller must
// be allowed to read the watched range.
func WatchAuthorizer(a Authenticator) func(ctx context.Context, req *pb.WatchCreateRequest) error {
	return func(ctx context.Context, req *pb.WatchCreateRequest) error {
		_, err := authorize(ctx, a, req, nil)
		return err
	}
}
