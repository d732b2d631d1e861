package system_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/tesseradb/tessera/tests/testcerts"
)

// TestTLSRevocationAndAllowedHostname runs three processes with client and
// peer mutual TLS, --client-crl-file and --peer-cert-allowed-hostname: the
// members (whose certificates are valid for localhost) form the cluster;
// a peer certificate valid for another host is refused at the peer port; a
// client certificate revoked by rewriting the CRL file is refused from then
// on, by clientv3 and etcdctl, while other certificates keep working.
func TestTLSRevocationAndAllowedHostname(t *testing.T) {
	crl := filepath.Join(t.TempDir(), "client.crl")
	// The cluster's CAs are made when it starts; until the client CA
	// rewrites it, the list is an empty one (its signer does not matter:
	// as etcd, Tessera matches serial numbers and trusts the file).
	testcerts.NewCA(t, "bootstrap").WriteCRL(crl)
	tc := newTLSClusterPeerCerts(t, 3, []string{"m"}, nil,
		"--client-crl-file", crl, "--peer-cert-allowed-hostname", "localhost")
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if _, err := tc.nodes[0].client().Put(ctx, "a", "1"); err != nil {
		t.Fatalf("put over the cluster formed with allowed hostnames: %v", err)
	}

	// A peer certificate of the right CA for another host.
	elsewhere, elsewhereKey, _ := tc.peerCA.IssueHosts("elsewhere", "node9", "10.9.9.9")
	peerHost := strings.TrimPrefix(tc.nodes[0].peerURL, "https://")
	dial := func(cfg *tls.Config) error {
		conn, err := tls.DialWithDialer(&dialer, "tcp", peerHost, cfg)
		if err != nil {
			return err
		}
		defer conn.Close()
		// TLS 1.3: a refused client certificate shows on the first read.
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = conn.Read(make([]byte, 1))
		return err
	}
	if err := dial(testcerts.ClientConfig(t, tc.peerCA, elsewhere, elsewhereKey)); err == nil || strings.Contains(err.Error(), "timeout") {
		t.Errorf("peer certificate for another host: %v, want the handshake refused", err)
	}

	revokedCert, revokedKey := tc.clientCA.Issue("revoked-user", "revoked")
	client := func(cert, key string) *clientv3.Client {
		cli, err := clientv3.New(clientv3.Config{Endpoints: []string{tc.nodes[1].clientURL}, DialTimeout: 3 * time.Second,
			TLS: testcerts.ClientConfig(t, tc.clientCA, cert, key), Logger: zap.NewNop()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cli.Close() })
		return cli
	}
	put := func(cli *clientv3.Client) error {
		cctx, ccancel := context.WithTimeout(ctx, 3*time.Second)
		defer ccancel()
		_, err := cli.Put(cctx, "b", "2")
		return err
	}
	if err := put(client(revokedCert, revokedKey)); err != nil {
		t.Fatalf("before its revocation: %v", err)
	}
	tc.clientCA.WriteCRL(crl, serialOf(t, revokedCert))
	if err := put(client(revokedCert, revokedKey)); err == nil {
		t.Error("a revoked client certificate was accepted")
	}
	if err := put(client(tc.userCert, tc.userKey)); err != nil {
		t.Errorf("a certificate not revoked: %v", err)
	}
	bin := etcdctlPath(t)
	if _, err := os.Stat(bin); err != nil {
		t.Logf("skipping the etcdctl part: no etcdctl at %s: %v", bin, err)
		return
	}
	e := &etcdctl{t: t, bin: bin, endpoints: tc.endpoints()}
	e.ok("--cacert", tc.clientCA.CAPath, "--cert", tc.userCert, "--key", tc.userKey, "put", "c", "3")
	if r := e.run("", "--command-timeout=3s", "--dial-timeout=3s", "--cacert", tc.clientCA.CAPath, "--cert", revokedCert, "--key", revokedKey, "get", "c"); r.code == 0 {
		t.Errorf("etcdctl with a revoked certificate: %v", r)
	}
}

var dialer = net.Dialer{Timeout: 5 * time.Second}

func serialOf(t *testing.T, certFile string) *big.Int {
	t.Helper()
	raw, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(raw)
	if b == nil {
		t.Fatalf("%s: no PEM", certFile)
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c.SerialNumber
}
