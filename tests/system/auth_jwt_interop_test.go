package system_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
)

// TestAuthJWTInteropEtcd: with the same keys and sign method (PS256, EdDSA,
// HS256), a JWT that etcd 3.7.3 issues is accepted by Tessera and one that
// Tessera issues is accepted by etcd, each holding the user to its
// permissions: the tokens are the same format, signed the same way.
func TestAuthJWTInteropEtcd(t *testing.T) {
	bin := etcdBinary(t)
	dir := t.TempDir()
	writePEM := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	keyPair := func(name string, priv, pub any) (string, string) {
		pk, err := x509.MarshalPKCS8PrivateKey(priv)
		if err != nil {
			t.Fatal(err)
		}
		pubDER, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		return writePEM(name+".key", "PRIVATE KEY", pk), writePEM(name+".pub", "PUBLIC KEY", pubDER)
	}
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	// etcd reads RSA private keys as PKCS#1 or PKCS#8; PKCS#1 here.
	rsaPriv := writePEM("rsa.key", "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rk))
	rsaPubDER, err := x509.MarshalPKIXPublicKey(&rk.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	rsaPub := writePEM("rsa.pub", "PUBLIC KEY", rsaPubDER)
	epub, epriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	edPriv, edPub := keyPair("ed", epriv, epub)
	secret := filepath.Join(dir, "hmac.secret")
	if err := os.WriteFile(secret, []byte("a secret both clusters share"), 0o600); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct{ method, opts string }{
		{"PS256", "pub-key=" + rsaPub + ",priv-key=" + rsaPriv},
		{"EdDSA", "pub-key=" + edPub + ",priv-key=" + edPriv},
		{"HS256", "priv-key=" + secret},
	} {
		t.Run(tc.method, func(t *testing.T) {
			flag := "jwt," + tc.opts + ",sign-method=" + tc.method + ",ttl=10m"
			withJWT := func(n *node) { n.args = append(n.args, "--auth-token", flag) }
			etcd := newCluster(t, clusterConfig{nodes: 1, binary: bin, prepare: withJWT})
			setupAuth(t, etcd.client())
			tess := newCluster(t, clusterConfig{nodes: 1, prepare: withJWT})
			setupAuth(t, tess.client())
			awaitAuthEnabled(t, tess)

			ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
			defer cancel()
			conn := func(url string) *grpc.ClientConn {
				cc, err := grpc.NewClient(strings.TrimPrefix(url, "http://"), grpc.WithTransportCredentials(insecure.NewCredentials()))
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { cc.Close() })
				return cc
			}
			etcdConn, tessConn := conn(etcd.nodes[0].clientURL), conn(tess.nodes[0].clientURL)
			for _, dir := range []struct {
				name       string
				issue, use *grpc.ClientConn
			}{
				{"etcd's token on Tessera", etcdConn, tessConn},
				{"Tessera's token on etcd", tessConn, etcdConn},
			} {
				resp, err := pb.NewAuthClient(dir.issue).Authenticate(ctx, &pb.AuthenticateRequest{Name: "reader", Password: "readerpw"})
				if err != nil {
					t.Fatalf("%s: authenticate: %v", dir.name, err)
				}
				if !strings.Contains(resp.Token, ".") || strings.Count(resp.Token, ".") != 2 {
					t.Fatalf("%s: token %q is not a JWT", dir.name, resp.Token)
				}
				kv := pb.NewKVClient(dir.use)
				tctx := metadata.NewOutgoingContext(ctx, metadata.Pairs("token", resp.Token))
				if _, err := kv.Range(tctx, &pb.RangeRequest{Key: []byte("r/a")}); err != nil {
					t.Errorf("%s: a permitted read: %v", dir.name, err)
				}
				if _, err := kv.Put(tctx, &pb.PutRequest{Key: []byte("r/a"), Value: []byte("x")}); answer(err) != "PermissionDenied: etcdserver: permission denied" {
					t.Errorf("%s: a write the user may not do: %v", dir.name, err)
				}
				// One character in the middle of the signature changed.
				i := strings.LastIndexByte(resp.Token, '.') + 10
				c := byte('A')
				if resp.Token[i] == c {
					c = 'B'
				}
				bad := resp.Token[:i] + string(c) + resp.Token[i+1:]
				if _, err := kv.Range(metadata.NewOutgoingContext(ctx, metadata.Pairs("token", bad)), &pb.RangeRequest{Key: []byte("r/a")}); answer(err) != "Unauthenticated: etcdserver: invalid auth token" {
					t.Errorf("%s: a token with a broken signature: %v", dir.name, err)
				}
			}

			// A JWT issued before an auth change is refused for key access
			// by both, with the same error (clients then authenticate again).
			for _, sys := range []struct {
				name string
				conn *grpc.ClientConn
			}{{"etcd", etcdConn}, {"Tessera", tessConn}} {
				resp, err := pb.NewAuthClient(sys.conn).Authenticate(ctx, &pb.AuthenticateRequest{Name: "reader", Password: "readerpw"})
				if err != nil {
					t.Fatalf("%s: authenticate: %v", sys.name, err)
				}
				root, err := pb.NewAuthClient(sys.conn).Authenticate(ctx, &pb.AuthenticateRequest{Name: "root", Password: "rootpw"})
				if err != nil {
					t.Fatalf("%s: authenticate root: %v", sys.name, err)
				}
				if _, err := pb.NewAuthClient(sys.conn).RoleAdd(metadata.NewOutgoingContext(ctx, metadata.Pairs("token", root.Token)), &pb.AuthRoleAddRequest{Name: "later-" + tc.method}); err != nil {
					t.Fatalf("%s: role add: %v", sys.name, err)
				}
				old := metadata.NewOutgoingContext(ctx, metadata.Pairs("token", resp.Token))
				if _, err := pb.NewKVClient(sys.conn).Range(old, &pb.RangeRequest{Key: []byte("r/a")}); answer(err) != "InvalidArgument: etcdserver: revision of auth store is old" {
					t.Errorf("%s: a read with a JWT from before an auth change: %v", sys.name, answer(err))
				}
			}
		})
	}
}
