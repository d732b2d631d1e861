package integration_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/tesseradb/tessera/cmd/tessera/server"
	"github.com/tesseradb/tessera/tests/testcluster"
)

// TestAuthOldRevisionRefusedAtApply: a write checked by the node it entered
// and then, before it applies, made unauthorized (its permission revoked)
// is refused at apply with etcd's "revision of auth store is old" and
// writes nothing; etcd's client, which answers that error by taking a new
// token and retrying, then gets "permission denied". Both when the request
// enters at the range's leader and when it is forwarded to it.
func TestAuthOldRevisionRefusedAtApply(t *testing.T) {
	// between runs, when set, after a request passed its check on any node.
	var between atomic.Pointer[func(req any)]
	c := testcluster.Start(t, testcluster.Options{Nodes: 3, SplitKeys: splitKeys, Configure: func(cfg *server.Config) {
		cfg.Auth = server.DefaultAuthConfig()
		cfg.Auth.BcryptCost = 4 // the minimum: the test is about revisions
		cfg.Auth.Knobs = &server.AuthTestingKnobs{AfterCheck: func(_ context.Context, req any) {
			if f := between.Load(); f != nil {
				(*f)(req)
			}
		}}
	}})
	c.WaitReady(t)
	ctx := tctx(t)
	plain := c.Client(t)
	for _, step := range []func() error{
		func() error { _, err := plain.UserAdd(ctx, "root", "rootpw"); return err },
		func() error { _, err := plain.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := plain.UserAdd(ctx, "alice", "alicepw"); return err },
		func() error { _, err := plain.RoleAdd(ctx, "a-writer"); return err },
		func() error { _, err := plain.UserGrantRole(ctx, "alice", "a-writer"); return err },
		func() error {
			_, err := plain.RoleGrantPermission(ctx, "a-writer", "a", clientv3.GetPrefixRangeEnd("a"), clientv3.PermissionType(clientv3.PermReadWrite))
			return err
		},
		func() error { _, err := plain.AuthEnable(ctx); return err },
	} {
		must(t, "auth setup", step())
	}
	root := authClient(t, c.Endpoints(), "root", "rootpw")

	// waitAuthRevision polls every node until it has applied rev.
	waitAuthRevision := func(rev uint64) error {
		deadline := time.Now().Add(testcluster.ReadyTimeout)
		for i := 0; i < c.Size(); i++ {
			for {
				resp, err := pb.NewAuthClient(c.NodeClient(t, i).ActiveConnection()).AuthStatus(ctx, &pb.AuthStatusRequest{})
				if err == nil && resp.AuthRevision >= rev {
					break
				}
				if time.Now().After(deadline) {
					return fmt.Errorf("node %d has not applied auth revision %d: %v %v", i, rev, resp, err)
				}
				time.Sleep(10 * time.Millisecond)
			}
		}
		return nil
	}
	// revokeOnce arms the hook: the first Put of key is let through its
	// check, then alice loses her permission and every node applies that
	// before the Put goes on.
	revokeOnce := func(key string) *atomic.Bool {
		fired := &atomic.Bool{}
		var once sync.Once
		f := func(req any) {
			p, ok := req.(*pb.PutRequest)
			if !ok || string(p.Key) != key {
				return
			}
			once.Do(func() {
				fired.Store(true)
				_, err := root.RoleRevokePermission(ctx, "a-writer", "a", clientv3.GetPrefixRangeEnd("a"))
				must(t, "revoke between check and apply", err)
				st, err := root.AuthStatus(ctx)
				must(t, "auth status", err)
				must(t, "wait for the revocation", waitAuthRevision(st.AuthRevision))
			})
		}
		between.Store(&f)
		return fired
	}
	regrant := func() {
		between.Store(nil)
		_, err := root.RoleGrantPermission(ctx, "a-writer", "a", clientv3.GetPrefixRangeEnd("a"), clientv3.PermissionType(clientv3.PermReadWrite))
		must(t, "grant again", err)
		st, err := root.AuthStatus(ctx)
		must(t, "auth status", err)
		must(t, "wait for the grant", waitAuthRevision(st.AuthRevision))
	}

	const rangeOfA = 2 // keys a*: range ["", "b")
	leader := c.Leader(rangeOfA)
	for _, entry := range []struct {
		name string
		node int
	}{
		{"at the leader", leader},
		{"forwarded", (leader + 1) % c.Size()},
	} {
		t.Run(entry.name, func(t *testing.T) {
			// Raw gRPC with alice's token: the server's own answer.
			conn := tokenConn(t, c.Endpoint(entry.node), "alice", "alicepw")
			key := "a/raw-" + fmt.Sprint(entry.node)
			fired := revokeOnce(key)
			_, err := pb.NewKVClient(conn).Put(ctx, &pb.PutRequest{Key: []byte(key), Value: []byte("v")})
			if !fired.Load() {
				t.Fatalf("the hook did not run (err %v)", err)
			}
			wantErr(t, "put checked before the revocation", err, rpctypes.ErrGRPCAuthOldRevision)
			got, gerr := root.Get(ctx, key)
			must(t, "get", gerr)
			if len(got.Kvs) != 0 {
				t.Fatalf("refused put wrote %q: %v", key, got.Kvs)
			}
			regrant()

			// etcd's client retries with a new token and is denied.
			alice := authClient(t, []string{c.Endpoint(entry.node)}, "alice", "alicepw")
			key = "a/client-" + fmt.Sprint(entry.node)
			fired = revokeOnce(key)
			_, err = alice.Put(ctx, key, "v")
			if !fired.Load() {
				t.Fatalf("the hook did not run (err %v)", err)
			}
			wantErr(t, "clientv3 put across the revocation", err, rpctypes.ErrGRPCPermissionDenied)
			regrant()

			// With the permission back, the same write goes through.
			if _, err := pb.NewKVClient(conn).Put(ctx, &pb.PutRequest{Key: []byte(key), Value: []byte("v")}); err != nil {
				// The token was issued before two auth changes; simple
				// tokens stay valid across permission changes (etcd's too).
				t.Fatalf("put after the grant: %v", err)
			}
		})
	}
}

// authClient returns a clientv3 client logged in as user.
func authClient(t *testing.T, endpoints []string, user, password string) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, Username: user, Password: password, DialTimeout: testcluster.DialTimeout, Logger: zap.NewNop()})
	must(t, "client as "+user, err)
	t.Cleanup(func() { _ = cli.Close() })
	return cli
}

// tokenConn returns a raw gRPC connection to endpoint that sends user's
// token with every call (no client-side retries).
func tokenConn(t *testing.T, endpoint, user, password string) *grpc.ClientConn {
	t.Helper()
	endpoint = strings.TrimPrefix(endpoint, "http://")
	conn, err := grpc.NewClient(endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
	must(t, "dial", err)
	t.Cleanup(func() { _ = conn.Close() })
	resp, err := pb.NewAuthClient(conn).Authenticate(tctx(t), &pb.AuthenticateRequest{Name: user, Password: password})
	must(t, "authenticate "+user, err)
	tok := resp.Token
	conn2, err := grpc.NewClient(endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			return invoker(metadata.AppendToOutgoingContext(ctx, rpctypes.TokenFieldNameGRPC, tok), method, req, reply, cc, opts...)
		}))
	must(t, "dial", err)
	t.Cleanup(func() { _ = conn2.Close() })
	return conn2
}
