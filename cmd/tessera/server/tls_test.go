package server

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tesseradb/tessera/placement"
	"github.com/tesseradb/tessera/proto/tesserapb"
	"github.com/tesseradb/tessera/raftgroup"
	"github.com/tesseradb/tessera/tests/testcerts"
)

func TestParseTLSVersions(t *testing.T) {
	for _, tc := range []struct {
		min, max string
		lo, hi   uint16
		err      string
	}{
		{"", "", tls.VersionTLS12, 0, ""},
		{"TLS1.2", "", tls.VersionTLS12, 0, ""},
		{"TLS1.3", "TLS1.3", tls.VersionTLS13, tls.VersionTLS13, ""},
		{"TLS1.1", "", 0, 0, "--tls-min-version"},
		{"TLS1.3", "TLS1.2", 0, 0, "below"},
		{"", "SSL3", 0, 0, "--tls-max-version"},
	} {
		lo, hi, err := parseTLSVersions(tc.min, tc.max)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q/%q: err %v, want %q", tc.min, tc.max, err, tc.err)
			}
			continue
		}
		if err != nil || lo != tc.lo || hi != tc.hi {
			t.Errorf("%q/%q: %x %x %v, want %x %x", tc.min, tc.max, lo, hi, err, tc.lo, tc.hi)
		}
	}
}

func TestParseCipherSuites(t *testing.T) {
	ids, err := parseCipherSuites([]string{"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", " TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"}, tls.VersionTLS12)
	if err != nil || len(ids) != 2 || ids[0] != tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 {
		t.Fatalf("got %v %v", ids, err)
	}
	// Insecure suites (tls.InsecureCipherSuites) and unknown names are refused.
	if _, err := parseCipherSuites([]string{"TLS_RSA_WITH_RC4_128_SHA"}, tls.VersionTLS12); err == nil {
		t.Error("an insecure suite was accepted")
	}
	if _, err := parseCipherSuites([]string{"nope"}, tls.VersionTLS12); err == nil {
		t.Error("an unknown suite was accepted")
	}
	if _, err := parseCipherSuites([]string{"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"}, tls.VersionTLS13); err == nil {
		t.Error("suites with a TLS 1.3 minimum were accepted")
	}
}

// TestSetupTLSSchemes: https needs a certificate or auto TLS; http with
// certificates is plaintext; other schemes are refused.
func TestSetupTLSSchemes(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, err := selfCert(filepath.Join(dir, "c"), "n1", []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		url      string
		info     TLSInfo
		wantTLS  bool
		wantErr  string
		peerSide bool
	}{
		{"https without a certificate", "https://127.0.0.1:1", TLSInfo{}, false, "--cert-file", false},
		{"peer https without a certificate", "https://127.0.0.1:1", TLSInfo{}, false, "--peer-cert-file", true},
		{"https with a certificate", "https://127.0.0.1:1", TLSInfo{CertFile: certFile, KeyFile: keyFile}, true, "", false},
		{"https with auto TLS", "https://127.0.0.1:1", TLSInfo{AutoTLS: true}, true, "", false},
		{"http with a certificate", "http://127.0.0.1:1", TLSInfo{CertFile: certFile, KeyFile: keyFile}, false, "", false},
		{"a certificate without a key", "https://127.0.0.1:1", TLSInfo{CertFile: certFile}, false, "both", false},
		{"client cert auth without a CA", "https://127.0.0.1:1", TLSInfo{CertFile: certFile, KeyFile: keyFile, ClientCertAuth: true}, false, "trusted CA", false},
		{"unknown scheme", "unix://x", TLSInfo{}, false, "scheme", false},
	} {
		cfg := DefaultConfig()
		cfg.DataDir = filepath.Join(dir, tc.name)
		s := &Server{cfg: cfg, log: slog.New(slog.DiscardHandler)}
		if tc.peerSide {
			s.cfg.ListenPeerURLs, s.cfg.TLS.Peer = []string{tc.url}, tc.info
		} else {
			s.cfg.ListenClientURLs, s.cfg.TLS.Client = []string{tc.url}, tc.info
		}
		err := s.setupTLS()
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s: err %v, want %q", tc.name, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		side := s.tls.client
		if tc.peerSide {
			side = s.tls.peer
		}
		if (side != nil) != tc.wantTLS {
			t.Errorf("%s: TLS %v, want %v", tc.name, side != nil, tc.wantTLS)
		}
	}
}

// TestCertNode: a certificate identifies the member it names (CN or DNS
// SAN), else the only member whose host it is valid for, else nobody.
func TestCertNode(t *testing.T) {
	s := &Server{nodes: placement.NewNodes(1, []*tesserapb.NodeDescriptor{
		{NodeId: 1, Name: "n1", PeerUrl: "https://10.0.0.1:2380"},
		{NodeId: 2, Name: "n2", PeerUrl: "https://10.0.0.2:2380"},
		{NodeId: 3, Name: "n3", PeerUrl: "https://10.0.0.2:2381"}, // shares n2's host
	})}
	cert := func(cn string, dns []string, ips ...string) *x509.Certificate {
		c := &x509.Certificate{Subject: pkix.Name{CommonName: cn}, DNSNames: dns}
		for _, ip := range ips {
			c.IPAddresses = append(c.IPAddresses, net.ParseIP(ip))
		}
		return c
	}
	for _, tc := range []struct {
		name string
		cert *x509.Certificate
		want raftgroup.NodeID
		err  string
	}{
		{"common name", cert("n2", nil, "10.0.0.1"), 2, ""},
		{"DNS name", cert("peer", []string{"n3"}), 3, ""},
		{"host only", cert("peer", nil, "10.0.0.1"), 1, ""},
		{"host of two members", cert("peer", nil, "10.0.0.2"), 0, "several"},
		{"two names", cert("n1", []string{"n2"}), 0, "several members"},
		{"nobody", cert("stranger", nil, "10.9.9.9"), 0, "names no member"},
	} {
		got, err := s.certNode(tc.cert)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: %v %v, want error %q", tc.name, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%s: %v %v, want %v", tc.name, got, err, tc.want)
		}
	}
}

// handshake runs a TLS 1.2 handshake (where a refused client certificate
// fails the handshake itself) between side's server config and a client
// presenting certFile, over loopback, and returns the server's verdict.
func handshake(t *testing.T, side *tlsSide, ca *testcerts.CA, certFile, keyFile string) error {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	done := make(chan error, 1)
	go func() {
		c, err := lis.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		done <- tls.Server(c, side.serverConfig()).Handshake()
	}()
	cfg := testcerts.ClientConfig(t, ca, certFile, keyFile)
	cfg.MaxVersion = tls.VersionTLS12
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", lis.Addr().String(), cfg)
	if err == nil {
		defer conn.Close()
	}
	return <-done
}

// TestPeerAllowedCN: with --peer-cert-allowed-cn only that common name is
// accepted on a client certificate; without a certificate nothing is.
func TestPeerAllowedCN(t *testing.T) {
	ca := testcerts.NewCA(t, "ca")
	srvCert, srvKey := ca.Issue("server", "server")
	info := TLSInfo{CertFile: srvCert, KeyFile: srvKey, TrustedCAFile: ca.CAPath, ClientCertAuth: true, AllowedCNs: []string{"allowed"}}
	side, err := newTLSSide("peer", info, tlsSettings{minVersion: tls.VersionTLS12}, t.TempDir(), "n1", nil, []string{"h2"}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	okCert, okKey := ca.Issue("allowed", "allowed")
	if err := handshake(t, side, ca, okCert, okKey); err != nil {
		t.Errorf("allowed CN: %v", err)
	}
	badCert, badKey := ca.Issue("other", "other")
	if err := handshake(t, side, ca, badCert, badKey); err == nil || !strings.Contains(err.Error(), "allowed") {
		t.Errorf("other CN: %v, want a refusal naming the allowed CN", err)
	}
	if err := handshake(t, side, ca, "", ""); err == nil {
		t.Error("no client certificate: accepted")
	}
}

// TestAllowedHostnames: with --peer-cert-allowed-hostname (or
// --client-cert-allowed-hostname) a client certificate must be valid for
// one of the names (DNS or IP SAN); allowed names and CNs together are
// refused at startup, as etcd refuses them.
func TestAllowedHostnames(t *testing.T) {
	ca := testcerts.NewCA(t, "ca")
	srvCert, srvKey := ca.Issue("server", "server")
	info := TLSInfo{CertFile: srvCert, KeyFile: srvKey, TrustedCAFile: ca.CAPath, ClientCertAuth: true, AllowedHostnames: []string{"n2.example", "10.0.0.7"}}
	side, err := newTLSSide("peer", info, tlsSettings{minVersion: tls.VersionTLS12}, t.TempDir(), "n1", nil, []string{"h2"}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		hosts []string
		ok    bool
	}{
		{"DNS SAN allowed", []string{"n2.example"}, true},
		{"IP SAN allowed", []string{"10.0.0.7"}, true},
		{"wildcard covering the allowed name", []string{"*.example"}, true},
		{"other names", []string{"n3.example", "10.0.0.8"}, false},
		{"no SAN, CN is an allowed name", nil, false},
	} {
		cn := "somebody"
		if tc.hosts == nil {
			cn = "n2.example"
		}
		cert, key, _ := ca.IssueHosts(strings.ReplaceAll(tc.name, " ", "_"), cn, tc.hosts...)
		err := handshake(t, side, ca, cert, key)
		if tc.ok && err != nil {
			t.Errorf("%s: %v", tc.name, err)
		}
		if !tc.ok && (err == nil || !strings.Contains(err.Error(), "allowed hostnames")) {
			t.Errorf("%s: %v, want a refusal naming the allowed hostnames", tc.name, err)
		}
	}
	for _, bad := range []TLSInfo{
		{CertFile: srvCert, KeyFile: srvKey, TrustedCAFile: ca.CAPath, AllowedCNs: []string{"a"}, AllowedHostnames: []string{"b"}},
		{CertFile: srvCert, KeyFile: srvKey, AllowedHostnames: []string{"b"}}, // nobody's certificate is asked for
		{CertFile: srvCert, KeyFile: srvKey, TrustedCAFile: ca.CAPath, AllowedHostnames: []string{""}},
	} {
		if _, err := newTLSSide("peer", bad, tlsSettings{minVersion: tls.VersionTLS12}, t.TempDir(), "n1", nil, nil, slog.New(slog.DiscardHandler)); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}

// TestCRL: a client certificate whose serial the CRL file lists is refused
// (--client-crl-file / --peer-crl-file); a CRL rewritten on disk is used
// from the next handshake; an unreadable one refuses every certificate
// until fixed, and is a startup error; a member dialing a server whose
// certificate is revoked refuses it too.
func TestCRL(t *testing.T) {
	ca := testcerts.NewCA(t, "ca")
	srvCert, srvKey, srvSerial := ca.IssueHosts("server", "server", "127.0.0.1")
	goodCert, goodKey, _ := ca.IssueHosts("good", "good", "127.0.0.1")
	badCert, badKey, badSerial := ca.IssueHosts("bad", "bad", "127.0.0.1")
	crl := filepath.Join(t.TempDir(), "crl.pem")
	ca.WriteCRL(crl, badSerial)
	info := TLSInfo{CertFile: srvCert, KeyFile: srvKey, TrustedCAFile: ca.CAPath, ClientCertAuth: true, CRLFile: crl}
	side, err := newTLSSide("client", info, tlsSettings{minVersion: tls.VersionTLS12}, t.TempDir(), "n1", nil, []string{"h2"}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if err := handshake(t, side, ca, goodCert, goodKey); err != nil {
		t.Errorf("certificate not revoked: %v", err)
	}
	if err := handshake(t, side, ca, badCert, badKey); err == nil || !strings.Contains(err.Error(), "revoked") {
		t.Errorf("revoked certificate: %v, want a refusal saying revoked", err)
	}
	// The list changes on disk: now good is revoked and bad is not.
	goodSerial := func() *big.Int {
		c, err := tls.LoadX509KeyPair(goodCert, goodKey)
		if err != nil {
			t.Fatal(err)
		}
		leaf, err := x509.ParseCertificate(c.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		return leaf.SerialNumber
	}()
	ca.WriteCRL(crl, goodSerial)
	if err := handshake(t, side, ca, goodCert, goodKey); err == nil || !strings.Contains(err.Error(), "revoked") {
		t.Errorf("after the CRL changed, the newly revoked certificate: %v", err)
	}
	if err := handshake(t, side, ca, badCert, badKey); err != nil {
		t.Errorf("after the CRL changed, a certificate no longer listed: %v", err)
	}
	// A broken list fails closed.
	if err := os.WriteFile(crl, []byte("not a CRL, and longer than before"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := handshake(t, side, ca, badCert, badKey); err == nil {
		t.Error("with a broken CRL file a certificate was accepted")
	}
	if _, err := newTLSSide("client", info, tlsSettings{minVersion: tls.VersionTLS12}, t.TempDir(), "n1", nil, nil, slog.New(slog.DiscardHandler)); err == nil {
		t.Error("a broken CRL file was accepted at startup")
	}

	// The peer side dials: a server presenting a revoked certificate is
	// refused.
	ca.WriteCRL(crl, srvSerial)
	peer, err := newTLSSide("peer", info, tlsSettings{minVersion: tls.VersionTLS12}, t.TempDir(), "n1", nil, []string{"h2"}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	srvTLS, err := tls.LoadX509KeyPair(srvCert, srvKey)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		c, err := lis.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		_ = tls.Server(c, &tls.Config{Certificates: []tls.Certificate{srvTLS}}).Handshake()
	}()
	cfg, err := peer.clientConfig()
	if err != nil {
		t.Fatal(err)
	}
	cfg.ServerName = "127.0.0.1"
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", lis.Addr().String(), cfg)
	if err == nil {
		conn.Close()
		t.Fatal("dialed a server whose certificate is revoked")
	}
	if !strings.Contains(err.Error(), "revoked") {
		t.Errorf("dial a revoked server: %v, want a refusal saying revoked", err)
	}
}
