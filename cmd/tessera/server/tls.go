package server

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// TLSInfo is one side's TLS settings (client port or peer port), named as
// etcd's flags: --cert-file/--key-file/--trusted-ca-file/--client-cert-auth/
// --auto-tls and their --peer-* twins.
type TLSInfo struct {
	// CertFile and KeyFile are the PEM certificate and key this node
	// presents, as a server and (on the peer side) as a client. They are
	// read again whenever either file changes on disk.
	CertFile string
	KeyFile  string
	// TrustedCAFile holds the CAs that sign the certificates of clients
	// (and, on the peer side, of other members). As in etcd, setting it
	// makes a client certificate mandatory.
	TrustedCAFile string
	// ClientCertAuth requires and verifies a client certificate (etcd's
	// --client-cert-auth / --peer-client-cert-auth).
	ClientCertAuth bool
	// AutoTLS generates a self-signed certificate in the data directory
	// when no CertFile is given (etcd's --auto-tls / --peer-auto-tls). It
	// encrypts but authenticates nobody: peers do not verify it.
	AutoTLS bool
	// AllowedCNs, if set, are the common names accepted on a client
	// certificate (etcd's --peer-cert-allowed-cn, a comma-separated list;
	// peer side only).
	AllowedCNs []string
	// AllowedHostnames, if set, are the host names or IP addresses one of
	// which a client certificate must be valid for (etcd's
	// --peer-cert-allowed-hostname and --client-cert-allowed-hostname).
	// Not with AllowedCNs, as etcd.
	AllowedHostnames []string
	// CRLFile is a certificate revocation list (PEM or DER): a connection
	// whose certificate chain holds a certificate with a serial number it
	// lists is refused (etcd's --client-crl-file / --peer-crl-file). It is
	// read again when it changes (tls_verify.go).
	CRLFile string
}

// Empty reports whether no certificate is configured.
func (i TLSInfo) Empty() bool { return i.CertFile == "" && i.KeyFile == "" }

// verifiesClients reports whether connections must present a client
// certificate signed by TrustedCAFile (etcd's rule: a trusted CA file or
// --client-cert-auth).
func (i TLSInfo) verifiesClients() bool { return i.TrustedCAFile != "" || i.ClientCertAuth }

func (i TLSInfo) validate(side string) error {
	if (i.CertFile == "") != (i.KeyFile == "") {
		return fmt.Errorf("server: %s TLS needs both a certificate and a key file", side)
	}
	if i.ClientCertAuth && i.TrustedCAFile == "" && !i.AutoTLS {
		return fmt.Errorf("server: %s client certificate authentication needs a trusted CA file", side)
	}
	return i.validateVerify(side)
}

// tlsVersions are the values of --tls-min-version/--tls-max-version, as etcd.
var tlsVersions = map[string]uint16{
	"":       0,
	"TLS1.2": tls.VersionTLS12,
	"TLS1.3": tls.VersionTLS13,
}

// parseTLSVersions checks --tls-min-version and --tls-max-version and
// returns them; the minimum is TLS 1.2 at least, as etcd's.
func parseTLSVersions(min, max string) (uint16, uint16, error) {
	lo, ok := tlsVersions[min]
	if !ok {
		return 0, 0, fmt.Errorf("server: --tls-min-version %q: want TLS1.2 or TLS1.3", min)
	}
	hi, ok := tlsVersions[max]
	if !ok {
		return 0, 0, fmt.Errorf("server: --tls-max-version %q: want TLS1.2 or TLS1.3", max)
	}
	if lo == 0 {
		lo = tls.VersionTLS12
	}
	if hi != 0 && hi < lo {
		return 0, 0, fmt.Errorf("server: --tls-max-version %s is below --tls-min-version %s", max, min)
	}
	return lo, hi, nil
}

// parseCipherSuites maps --cipher-suites names (Go's IANA names, as etcd
// takes them) to ids. TLS 1.3 suites are not configurable, as in Go and
// etcd, so naming one, or any suite with a TLS 1.3 minimum, is an error.
func parseCipherSuites(names []string, minVersion uint16) ([]uint16, error) {
	if len(names) == 0 {
		return nil, nil
	}
	if minVersion == tls.VersionTLS13 {
		return nil, errors.New("server: --cipher-suites cannot be set with --tls-min-version TLS1.3 (TLS 1.3 suites are fixed)")
	}
	known := map[string]uint16{}
	for _, cs := range tls.CipherSuites() {
		known[cs.Name] = cs.ID
	}
	var ids []uint16
	for _, n := range names {
		id, ok := known[strings.TrimSpace(n)]
		if !ok {
			return nil, fmt.Errorf("server: --cipher-suites: unknown or insecure cipher suite %q", n)
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// tlsSettings are the version and suite limits shared by both ports.
type tlsSettings struct {
	minVersion, maxVersion uint16
	cipherSuites           []uint16
}

// certSource serves a certificate, key and CA pool read from files, read
// again whenever one of the files changes (size or modification time), so a
// rotated certificate is picked up by the next handshake without a restart.
// A failed reload (a key and certificate caught mid-rotation that do not
// match) keeps the previous pair and is retried at the next handshake.
type certSource struct {
	certFile, keyFile, caFile string
	log                       *slog.Logger

	mu struct {
		sync.Mutex
		stamp string // sizes and mtimes of the files last loaded
		cert  *tls.Certificate
		pool  *x509.CertPool
	}
}

func newCertSource(certFile, keyFile, caFile string, log *slog.Logger) (*certSource, error) {
	c := &certSource{certFile: certFile, keyFile: keyFile, caFile: caFile, log: log}
	if _, _, err := c.current(); err != nil {
		return nil, err
	}
	return c, nil
}

// stamp describes the files' current versions.
func (c *certSource) fileStamp() string {
	var b strings.Builder
	for _, f := range []string{c.certFile, c.keyFile, c.caFile} {
		if f == "" {
			continue
		}
		st, err := os.Stat(f)
		if err != nil {
			fmt.Fprintf(&b, "%s:missing;", f)
			continue
		}
		fmt.Fprintf(&b, "%s:%d:%d;", f, st.Size(), st.ModTime().UnixNano())
	}
	return b.String()
}

// current returns the certificate and CA pool, reloading changed files.
func (c *certSource) current() (*tls.Certificate, *x509.CertPool, error) {
	stamp := c.fileStamp()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mu.cert != nil && stamp == c.mu.stamp {
		return c.mu.cert, c.mu.pool, nil
	}
	cert, pool, err := c.load()
	if err != nil {
		if c.mu.cert != nil {
			c.log.Warn("TLS: reloading certificate failed; keeping the previous one", "cert", c.certFile, "err", err)
			return c.mu.cert, c.mu.pool, nil
		}
		return nil, nil, err
	}
	if c.mu.cert != nil {
		c.log.Info("TLS: certificate reloaded", "cert", c.certFile)
	}
	c.mu.stamp, c.mu.cert, c.mu.pool = stamp, cert, pool
	return cert, pool, nil
}

func (c *certSource) load() (*tls.Certificate, *x509.CertPool, error) {
	cert, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("server: load TLS key pair %s, %s: %w", c.certFile, c.keyFile, err)
	}
	var pool *x509.CertPool
	if c.caFile != "" {
		pem, err := os.ReadFile(c.caFile)
		if err != nil {
			return nil, nil, fmt.Errorf("server: read trusted CA file: %w", err)
		}
		pool = x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, nil, fmt.Errorf("server: trusted CA file %s holds no PEM certificate", c.caFile)
		}
	}
	return &cert, pool, nil
}

// tlsSide is the TLS of one port: what it serves with and, for the peer
// port, how this node dials other members.
type tlsSide struct {
	info TLSInfo
	set  tlsSettings
	src  *certSource
	// autoTLS: the certificate is self-signed and peers skip verification.
	autoTLS bool
	// nextProtos are the ALPN protocols served (gRPC needs h2).
	nextProtos []string
	// crl refuses revoked certificates (nil: no CRL file).
	crl *crlSource
}

// newTLSSide prepares one port's TLS, or returns nil when the port is
// plaintext. dir is where an auto-TLS certificate is written; hosts are the
// hosts it is made for; name is its common name.
func newTLSSide(side string, info TLSInfo, set tlsSettings, dir, name string, hosts []string, nextProtos []string, log *slog.Logger) (*tlsSide, error) {
	if err := info.validate(side); err != nil {
		return nil, err
	}
	auto := false
	if info.Empty() {
		if !info.AutoTLS {
			return nil, nil
		}
		var err error
		if info.CertFile, info.KeyFile, err = selfCert(dir, name, hosts); err != nil {
			return nil, err
		}
		auto = true
	}
	src, err := newCertSource(info.CertFile, info.KeyFile, info.TrustedCAFile, log)
	if err != nil {
		return nil, err
	}
	side2 := &tlsSide{info: info, set: set, src: src, autoTLS: auto, nextProtos: nextProtos}
	if info.CRLFile != "" {
		if side2.crl, err = newCRLSource(info.CRLFile, log); err != nil {
			return nil, err
		}
	}
	return side2, nil
}

// serverConfig is the tls.Config the port serves with. Every handshake gets
// a config built from the current files.
func (t *tlsSide) serverConfig() *tls.Config {
	base := &tls.Config{
		MinVersion:   t.set.minVersion,
		MaxVersion:   t.set.maxVersion,
		CipherSuites: t.set.cipherSuites,
		NextProtos:   t.nextProtos,
	}
	base.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		cert, pool, err := t.src.current()
		if err != nil {
			return nil, err
		}
		c := base.Clone()
		c.GetConfigForClient = nil
		c.Certificates = []tls.Certificate{*cert}
		if t.info.verifiesClients() && pool != nil {
			c.ClientCAs = pool
			c.ClientAuth = tls.RequireAndVerifyClientCert
		} else if t.info.verifiesClients() {
			// Auto TLS with client cert auth: a certificate is required
			// but cannot be verified (etcd does the same).
			c.ClientAuth = tls.RequireAnyClientCert
		}
		// tls_verify.go: allowed names, revoked certificates.
		c.VerifyPeerCertificate = t.info.verifyClientName()
		if t.crl != nil {
			c.VerifyConnection = t.crl.verifyConnection
		}
		return c, nil
	}
	return base
}

// clientConfig is the tls.Config this node dials other members' peer ports
// (or its own client port) with: it presents its certificate and verifies
// the server's against the trusted CAs (the system's when none are given;
// nothing with auto TLS, as etcd).
func (t *tlsSide) clientConfig() (*tls.Config, error) {
	_, pool, err := t.src.current()
	if err != nil {
		return nil, err
	}
	c := &tls.Config{
		MinVersion:   t.set.minVersion,
		MaxVersion:   t.set.maxVersion,
		CipherSuites: t.set.cipherSuites,
		RootCAs:      pool,
		// The current certificate, so a rotated one is presented on the
		// next connection.
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			cert, _, err := t.src.current()
			return cert, err
		},
	}
	if t.autoTLS {
		c.InsecureSkipVerify = true // self-signed: encryption only
	}
	if pool != nil {
		// A CA rotated on disk is trusted from the next connection on.
		c.InsecureSkipVerify = true
		c.VerifyConnection = func(cs tls.ConnectionState) error {
			_, pool, err := t.src.current()
			if err != nil {
				return err
			}
			if len(cs.PeerCertificates) == 0 {
				return errors.New("server: peer presented no certificate")
			}
			opts := x509.VerifyOptions{Roots: pool, DNSName: cs.ServerName, Intermediates: x509.NewCertPool()}
			for _, ic := range cs.PeerCertificates[1:] {
				opts.Intermediates.AddCert(ic)
			}
			if _, err := cs.PeerCertificates[0].Verify(opts); err != nil {
				return fmt.Errorf("server: verify peer certificate: %w", err)
			}
			return nil
		}
	}
	if t.crl != nil {
		// A revoked member certificate is not trusted as a server either.
		verify := c.VerifyConnection
		c.VerifyConnection = func(cs tls.ConnectionState) error {
			if verify != nil {
				if err := verify(cs); err != nil {
					return err
				}
			}
			return t.crl.verifyConnection(cs)
		}
	}
	return c, nil
}

// selfCert writes a self-signed certificate and key for hosts into dir
// (kept across restarts, as etcd's auto TLS does) and returns their paths.
func selfCert(dir, name string, hosts []string) (string, string, error) {
	certPath, keyPath := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if _, err := tls.LoadX509KeyPair(certPath, keyPath); err == nil {
		return certPath, keyPath, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", fmt.Errorf("server: auto TLS dir: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", fmt.Errorf("server: auto TLS key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return "", "", fmt.Errorf("server: auto TLS serial: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name, Organization: []string{"tessera autogenerated"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(365 * 24 * time.Hour), // etcd's default: one year
		KeyUsage:              x509.KeyUsageKeyEncipherment | x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return "", "", fmt.Errorf("server: auto TLS certificate: %w", err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return "", "", fmt.Errorf("server: auto TLS key: %w", err)
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		return "", "", fmt.Errorf("server: auto TLS key: %w", err)
	}
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		return "", "", fmt.Errorf("server: auto TLS certificate: %w", err)
	}
	return certPath, keyPath, nil
}

// urlHosts returns the hosts (no ports) of URLs, for auto TLS certificates.
func urlHosts(urls []string) []string {
	var out []string
	for _, raw := range urls {
		if u, err := url.Parse(raw); err == nil {
			out = append(out, u.Hostname())
		}
	}
	return out
}

// schemeOf returns the scheme of the first URL, "http" when there is none.
func schemeOf(urls []string) string {
	if len(urls) == 0 {
		return "http"
	}
	u, err := url.Parse(urls[0])
	if err != nil {
		return "http"
	}
	return u.Scheme
}
