package router

import (
	"context"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc"

	"github.com/tesseradb/tessera/shard"
)

// Authenticator tells who a request speaks for, and the auth state to
// check it against. The server implements it once auth state is
// replicated (issue #16): User reads the "token" metadata (a bad or
// expired token is etcd's rpctypes.ErrGRPCInvalidAuthToken) or, without a
// token and with --client-cert-auth, the verified client certificate's
// common name, as etcd; "" when neither is there. tokenRev is the auth
// revision the token was issued at when it says so (etcd's JWT "revision"
// claim), 0 otherwise (simple tokens, certificates).
type Authenticator interface {
	User(ctx context.Context) (user string, tokenRev uint64, err error)
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
	user, tokenRev, err := a.User(ctx)
	if err != nil {
		return 0, err
	}
	if tokenRev != 0 && tokenRev < p.Revision() && checksKeys(req) {
		// etcd: a key permission is checked against the token's auth
		// revision, and one older than the store's is refused whoever the
		// user (clients then authenticate again and retry).
		return 0, rpctypes.ErrGRPCAuthOldRevision
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

// checksKeys reports whether etcd checks req's key permissions against the
// caller's auth revision (its isOpPermitted): reads, writes, transactions
// and watch creations; administrative calls are checked by role alone.
func checksKeys(req any) bool {
	switch req.(type) {
	case *pb.RangeRequest, *pb.PutRequest, *pb.DeleteRangeRequest, *pb.TxnRequest, *pb.WatchCreateRequest:
		return true
	}
	return false
}
