package system_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/tesseradb/tessera/proto/raftrpc"
	"github.com/tesseradb/tessera/tests/testcerts"
)

// tlsCluster is a cluster with client mTLS (--client-cert-auth) and peer
// mTLS (--peer-client-cert-auth), each side with its own CA, and each
// node with its own certificates (CN: the node's name).
type tlsCluster struct {
	*cluster
	clientCA, peerCA *testcerts.CA
	// userCert is a client certificate signed by the client CA.
	userCert, userKey string
}

func newTLSCluster(t *testing.T, nodes int, splitKeys []string) *tlsCluster {
	t.Helper()
	return newTLSClusterPeerCerts(t, nodes, splitKeys, nil)
}

// newTLSClusterPeerCerts is newTLSCluster where node n presents the peer
// certificate issued to peerCertOf(n.name) (nil: its own).
func newTLSClusterPeerCerts(t *testing.T, nodes int, splitKeys []string, peerCertOf func(name string) string, extraArgs ...string) *tlsCluster {
	t.Helper()
	tc := &tlsCluster{clientCA: testcerts.NewCA(t, "client-ca"), peerCA: testcerts.NewCA(t, "peer-ca")}
	tc.userCert, tc.userKey = tc.clientCA.Issue("user", "tester")
	// The harness reads Ranges from the peer ports as an operator holding a
	// peer certificate.
	opCert, opKey := tc.peerCA.Issue("operator", "operator")
	tc.cluster = newCluster(t, clusterConfig{
		nodes:     nodes,
		splitKeys: splitKeys,
		clientTLS: testcerts.ClientConfig(t, tc.clientCA, tc.userCert, tc.userKey),
		peerTLS:   testcerts.ClientConfig(t, tc.peerCA, opCert, opKey),
		prepare: func(n *node) {
			cc, ck := tc.clientCA.Issue(n.name+"-client", n.name)
			pc, pk := tc.peerCA.Issue(n.name+"-peer", n.name)
			if peerCertOf != nil && peerCertOf(n.name) != n.name {
				// prepare runs for the nodes in order: the other's exists.
				other := peerCertOf(n.name)
				pc, pk = tc.peerCA.Dir+"/"+other+"-peer.pem", tc.peerCA.Dir+"/"+other+"-peer-key.pem"
			}
			n.args = append(n.args,
				"--cert-file", cc, "--key-file", ck, "--trusted-ca-file", tc.clientCA.CAPath, "--client-cert-auth",
				"--peer-cert-file", pc, "--peer-key-file", pk, "--peer-trusted-ca-file", tc.peerCA.CAPath, "--peer-client-cert-auth",
			)
			n.args = append(n.args, extraArgs...)
		},
	})
	return tc
}

// TestTLSMutualClientAndPeer runs three processes with client and peer
// mutual TLS: the cluster forms over peer TLS (raft transport), a write
// through one node is read through another (forwarding and the TSO over
// peer TLS) and seen by a watch on a third (range feeds over peer TLS).
// Clients without TLS, without a certificate, or below TLS 1.2 are refused;
// etcdctl works with --cacert/--cert/--key.
func TestTLSMutualClientAndPeer(t *testing.T) {
	tc := newTLSCluster(t, 3, []string{"m"})
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()

	w := tc.nodes[2].client().Watch(ctx, "", clientv3.WithPrefix())
	keys := []string{"a", "z"} // one key in each range
	for _, k := range keys {
		if _, err := tc.nodes[0].client().Put(ctx, k, "v-"+k); err != nil {
			t.Fatalf("put %s through %s: %v", k, tc.nodes[0].name, err)
		}
		got, err := tc.nodes[1].client().Get(ctx, k)
		if err != nil || len(got.Kvs) != 1 || string(got.Kvs[0].Value) != "v-"+k {
			t.Fatalf("get %s through %s: %v %v", k, tc.nodes[1].name, got, err)
		}
	}
	var seen []string
	for len(seen) < len(keys) {
		select {
		case wr, ok := <-w:
			if !ok {
				t.Fatalf("watch through %s ended: %v", tc.nodes[2].name, ctx.Err())
			}
			if err := wr.Err(); err != nil {
				t.Fatalf("watch: %v", err)
			}
			for _, ev := range wr.Events {
				seen = append(seen, string(ev.Kv.Key))
			}
		case <-ctx.Done():
			t.Fatalf("watch saw %v of %v: %v", seen, keys, ctx.Err())
		}
	}

	host := strings.TrimPrefix(tc.nodes[0].clientURL, "https://")
	refused := func(what string, cfg *tls.Config) {
		t.Helper()
		endpoint := tc.nodes[0].clientURL
		if cfg == nil {
			endpoint = "http://" + host
		}
		cli, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 2 * time.Second, TLS: cfg, Logger: zap.NewNop()})
		if err != nil {
			return // refused at dial
		}
		defer cli.Close()
		cctx, ccancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer ccancel()
		if _, err := cli.Put(cctx, "refused", "x"); err == nil {
			t.Errorf("%s: put succeeded on a port with client mTLS", what)
		}
	}
	refused("plaintext client", nil)
	refused("TLS client without a certificate", testcerts.ClientConfig(t, tc.clientCA, "", ""))
	otherCA := testcerts.NewCA(t, "other-ca")
	oc, ok := otherCA.Issue("intruder", "intruder")
	refused("client with a certificate of another CA", testcerts.ClientConfig(t, tc.clientCA, oc, ok))

	// TLS 1.1 is below the minimum: the handshake fails.
	old := testcerts.ClientConfig(t, tc.clientCA, tc.userCert, tc.userKey)
	old.MinVersion, old.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
	if conn, err := tls.Dial("tcp", host, old); err == nil {
		conn.Close()
		t.Errorf("a TLS 1.1 handshake succeeded")
	}
	// HTTP (/health) is served over the same TLS port.
	if h, err := tc.nodes[0].health(); err != nil || h.Health != "true" {
		t.Errorf("/health over TLS: %+v %v", h, err)
	}

	bin := etcdctlPath(t)
	if _, err := os.Stat(bin); err != nil {
		t.Logf("skipping the etcdctl part: no etcdctl at %s: %v", bin, err)
		return
	}
	e := &etcdctl{t: t, bin: bin, endpoints: tc.endpoints()}
	tlsArgs := []string{"--cacert", tc.clientCA.CAPath, "--cert", tc.userCert, "--key", tc.userKey}
	e.ok(append(tlsArgs, "put", "ctl", "over-tls")...)
	e.expect("ctl\nover-tls\n", append(tlsArgs, "get", "ctl")...)
	if r := e.run("", "--command-timeout=3s", "--cacert", tc.clientCA.CAPath, "get", "ctl"); r.code == 0 {
		t.Errorf("etcdctl without a client certificate: %v", r)
	}
}

// TestTLSPeerIdentity checks that a raft stream is accepted only from the
// member its certificate names: a peer holding node2's valid certificate
// that claims to be node3 is refused with PermissionDenied, the same
// certificate claiming node2 is accepted, and a connection without a
// client certificate fails its handshake.
func TestTLSPeerIdentity(t *testing.T) {
	tc := newTLSCluster(t, 3, nil)
	target := tc.nodes[0]
	u, err := url.Parse(target.peerURL)
	if err != nil {
		t.Fatal(err)
	}
	n2cert, n2key := tc.peerCA.Dir+"/node2-peer.pem", tc.peerCA.Dir+"/node2-peer-key.pem"

	stream := func(cfg *tls.Config, from uint64) error { return raftStreamAs(u.Host, target.id, cfg, from) }
	impostor := testcerts.ClientConfig(t, tc.peerCA, n2cert, n2key)
	err = stream(impostor, 3)
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "certificate of n2") {
		t.Errorf("node2's certificate claiming node 3: %v; want PermissionDenied naming node 2", err)
	}
	if err := stream(testcerts.ClientConfig(t, tc.peerCA, n2cert, n2key), 2); err != nil {
		t.Errorf("node2's certificate claiming node 2: %v; want the stream accepted", err)
	}
	if err := stream(testcerts.ClientConfig(t, tc.peerCA, "", ""), 2); err == nil || status.Code(err) == codes.PermissionDenied {
		t.Errorf("no client certificate: %v; want a failed handshake", err)
	}
	// The cluster is still healthy.
	for _, n := range tc.nodes {
		if h, err := n.health(); err != nil || h.Health != "true" {
			t.Errorf("%s after the forged streams: %+v %v", n.name, h, err)
		}
	}
}

// TestTLSCertificateRotation rotates a node's client and peer certificates
// on disk: the next connection to each port gets the new certificate, with
// no restart, and the cluster keeps serving.
func TestTLSCertificateRotation(t *testing.T) {
	tc := newTLSCluster(t, 3, nil)
	n := tc.nodes[0]
	serial := func(rawURL string, cfg *tls.Config) (*big.Int, error) {
		u, err := url.Parse(rawURL)
		if err != nil {
			return nil, err
		}
		conn, err := tls.Dial("tcp", u.Host, cfg)
		if err != nil {
			return nil, err
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].SerialNumber, nil
	}
	for _, side := range []struct {
		name, url, file string
		ca              *testcerts.CA
		cfg             *tls.Config
	}{
		{"client", n.clientURL, n.name + "-client", tc.clientCA, n.clientTLS},
		{"peer", n.peerURL, n.name + "-peer", tc.peerCA, n.peerTLS},
	} {
		before, err := serial(side.url, side.cfg)
		if err != nil {
			t.Fatalf("%s port: %v", side.name, err)
		}
		certPath, keyPath := side.ca.Dir+"/"+side.file+".pem", side.ca.Dir+"/"+side.file+"-key.pem"
		want := side.ca.IssueTo(certPath, keyPath, n.name)
		if want.Cmp(before) == 0 {
			t.Fatal("the new certificate has the old serial")
		}
		waitFor(t, opTimeout, side.name+" certificate rotated", func() error {
			got, err := serial(side.url, side.cfg)
			if err != nil {
				return err
			}
			if got.Cmp(want) != 0 {
				return fmt.Errorf("serial %v, want %v", got, want)
			}
			return nil
		})
	}
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	// New client connections after the rotation, through every node.
	for _, m := range tc.nodes {
		if _, err := newTLSClient(t, m.clientTLS, m.clientURL).Put(ctx, "after-rotation", m.name); err != nil {
			t.Errorf("put through %s after rotation: %v", m.name, err)
		}
	}
}

// TestTLSPeerWithAnotherNodesCertificate starts node3 with node2's peer
// certificate (valid, signed by the peer CA): the members it sends raft
// messages to (the leaders it answers; which ones depends on the
// elections) refuse its streams, naming the certificate's member.
func TestTLSPeerWithAnotherNodesCertificate(t *testing.T) {
	tc := newTLSClusterPeerCerts(t, 3, nil, func(name string) string {
		if name == "node3" {
			return "node2"
		}
		return name
	})
	const refusal = "claimed=n3 err=\"server: peer claiming to be n3 presented the certificate of n2\""
	waitFor(t, startTimeout, "node1 or node2 refusing node3", func() error {
		for _, n := range tc.nodes[:2] {
			log, err := os.ReadFile(n.logPath)
			if err != nil {
				return err
			}
			if strings.Contains(string(log), refusal) {
				return nil
			}
		}
		return errors.New("no refusal in the logs yet")
	})
	// node3 accepts the others: their certificates are their own.
	log, err := os.ReadFile(tc.nodes[2].logPath)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(log), "refusing raft stream") {
		t.Errorf("node3 refused someone: %s", log)
	}
}

// TestTLSAutoTLS runs a node with --auto-tls and --peer-auto-tls: it serves
// https with a certificate it generated in its data directory, which a
// client accepts only without verification (as etcd's).
func TestTLSAutoTLS(t *testing.T) {
	skipVerify := &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}
	c := newCluster(t, clusterConfig{
		nodes:     1,
		clientTLS: skipVerify,
		peerTLS:   skipVerify,
		prepare: func(n *node) {
			n.args = append(n.args, "--auto-tls", "--peer-auto-tls")
		},
	})
	n := c.nodes[0]
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if _, err := n.client().Put(ctx, "k", "v"); err != nil {
		t.Fatalf("put over auto TLS: %v", err)
	}
	for _, side := range []string{"client", "peer"} {
		if _, err := os.Stat(n.dataDir + "/fixtures/" + side + "/cert.pem"); err != nil {
			t.Errorf("auto TLS %s certificate: %v", side, err)
		}
	}
	u, err := url.Parse(n.clientURL)
	if err != nil {
		t.Fatal(err)
	}
	if conn, err := tls.Dial("tcp", u.Host, &tls.Config{MinVersion: tls.VersionTLS12}); err == nil {
		conn.Close()
		t.Error("a verifying client accepted the self-signed certificate")
	}
}

// TestAuthClientCertCN: with --client-cert-auth and auth enabled, a client
// without a token is the user its certificate's common name names, as in
// etcd.
func TestAuthClientCertCN(t *testing.T) {
	tc := newTLSCluster(t, 1, nil)
	n := tc.nodes[0]
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	cli := n.client() // CN "tester"; auth is off yet
	for i, step := range []func() error{
		func() error { _, err := cli.Put(ctx, "r/a", "v"); return err },
		func() error { _, err := cli.UserAdd(ctx, "root", "rootpw"); return err },
		func() error { _, err := cli.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := cli.RoleAdd(ctx, "reader"); return err },
		func() error {
			_, err := cli.RoleGrantPermission(ctx, "reader", "r/", "r0", clientv3.PermissionType(clientv3.PermRead))
			return err
		},
		func() error { _, err := cli.UserAdd(ctx, "tester", "testerpw"); return err },
		func() error { _, err := cli.UserGrantRole(ctx, "tester", "reader"); return err },
		func() error { _, err := cli.AuthEnable(ctx); return err },
	} {
		if err := step(); err != nil {
			t.Fatalf("setup step %d: %v", i, err)
		}
	}
	tester := newTLSClient(t, n.clientTLS, n.clientURL)
	if _, err := tester.Get(ctx, "r/a"); err != nil {
		t.Errorf("CN tester reads r/a: %v", err)
	}
	if _, err := tester.Put(ctx, "r/a", "w"); err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Errorf("CN tester writes r/a: %v, want permission denied", err)
	}
	rc, rk := tc.clientCA.Issue("root-user", "root")
	root := newTLSClient(t, testcerts.ClientConfig(t, tc.clientCA, rc, rk), n.clientURL)
	if _, err := root.Put(ctx, "r/a", "w"); err != nil {
		t.Errorf("CN root writes r/a: %v", err)
	}
}

// TestTLSGateway: etcd's HTTP/JSON gateway works on a client port with
// mutual TLS (it dials the node's own port with the node's certificate).
func TestTLSGateway(t *testing.T) {
	tc := newTLSClusterPeerCerts(t, 1, nil, nil, "--enable-grpc-gateway")
	n := tc.nodes[0]
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: n.clientTLS}}
	defer hc.CloseIdleConnections()
	post := func(path, body, token string) (int, string) {
		t.Helper()
		req, err := http.NewRequest(http.MethodPost, n.clientURL+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if token != "" {
			req.Header.Set("Authorization", token)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("POST %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	// "a" and "b" in base64.
	if code, body := post("/v3/kv/put", `{"key":"YQ==","value":"Yg=="}`, ""); code != http.StatusOK {
		t.Fatalf("put through the gateway over TLS: %d %s", code, body)
	}
	if code, body := post("/v3/kv/range", `{"key":"YQ=="}`, ""); code != http.StatusOK || !strings.Contains(body, `"value":"Yg=="`) {
		t.Fatalf("range through the gateway over TLS: %d %s", code, body)
	}
}

// raftStreamAs opens a raft stream to the node at peer address host (node
// id to) presenting cfg's certificate, sends one empty batch claiming to
// come from `from`, and returns how the stream ended (nil: still open
// after the batch was taken).
func raftStreamAs(host string, to uint64, cfg *tls.Config, from uint64) error {
	conn, err := grpc.NewClient(host, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := raftrpc.NewRaftTransportClient(conn).RaftMessages(ctx)
	if err != nil {
		return err
	}
	if err := s.Send(&raftrpc.RaftBatch{FromNode: from, ToNode: to}); err != nil && !errors.Is(err, context.Canceled) {
		_, err = s.Recv()
		return err
	}
	// The server refuses at the first batch; a refusal ends the stream
	// at once, an accepted stream stays open until ctx ends.
	rctx, rcancel := context.WithTimeout(ctx, 2*time.Second)
	defer rcancel()
	done := make(chan error, 1)
	go func() { _, err := s.Recv(); done <- err }()
	select {
	case err := <-done:
		return err
	case <-rctx.Done():
		return nil
	}
}
