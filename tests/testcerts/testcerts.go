// Package testcerts makes certificate authorities and certificates for
// tests (crypto/x509, ECDSA P-256), written to files as servers and etcdctl
// take them.
package testcerts

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// CA is a certificate authority made by a test.
type CA struct {
	t *testing.T
	// Dir holds the CA's files and the certificates it issues.
	Dir string
	// CAPath is the CA's certificate (for --trusted-ca-file, --cacert).
	CAPath string
	// Pool trusts the CA.
	Pool *x509.CertPool
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// NewCA makes a CA named name in a temporary directory of t.
func NewCA(t *testing.T, name string) *CA {
	t.Helper()
	dir := filepath.Join(t.TempDir(), name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          newSerial(t),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	ca := &CA{t: t, Dir: dir, cert: cert, key: key, CAPath: filepath.Join(dir, "ca.pem"), Pool: x509.NewCertPool()}
	ca.Pool.AddCert(cert)
	writePEM(t, ca.CAPath, "CERTIFICATE", der)
	return ca
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func newSerial(t *testing.T) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	// Written aside and renamed, so a server never reads half a file.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// Issue makes a certificate for cn, valid for 127.0.0.1 and localhost as a
// server and as a client, and writes it and its key into the CA's
// directory as <file>.pem and <file>-key.pem. It returns the paths.
func (ca *CA) Issue(file, cn string) (certPath, keyPath string) {
	ca.t.Helper()
	certPath = filepath.Join(ca.Dir, file+".pem")
	keyPath = filepath.Join(ca.Dir, file+"-key.pem")
	ca.IssueTo(certPath, keyPath, cn)
	return certPath, keyPath
}

// IssueTo writes a new certificate and key for cn to the given paths (a
// rotation when they exist) and returns the certificate's serial number.
func (ca *CA) IssueTo(certPath, keyPath, cn string) *big.Int {
	ca.t.Helper()
	return ca.IssueToHosts(certPath, keyPath, cn, "127.0.0.1", "localhost")
}

// IssueHosts is Issue with the certificate valid for hosts (IP addresses
// or DNS names) instead of 127.0.0.1 and localhost; it also returns the
// serial number.
func (ca *CA) IssueHosts(file, cn string, hosts ...string) (certPath, keyPath string, serial *big.Int) {
	ca.t.Helper()
	certPath = filepath.Join(ca.Dir, file+".pem")
	keyPath = filepath.Join(ca.Dir, file+"-key.pem")
	return certPath, keyPath, ca.IssueToHosts(certPath, keyPath, cn, hosts...)
}

// IssueToHosts is IssueTo with the certificate valid for hosts.
func (ca *CA) IssueToHosts(certPath, keyPath, cn string, hosts ...string) *big.Int {
	ca.t.Helper()
	var ips []net.IP
	var names []string
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			ips = append(ips, ip)
		} else {
			names = append(names, h)
		}
	}
	key := newKey(ca.t)
	tmpl := &x509.Certificate{
		SerialNumber: newSerial(ca.t),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:  ips,
		DNSNames:     names,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		ca.t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		ca.t.Fatal(err)
	}
	writePEM(ca.t, keyPath, "EC PRIVATE KEY", kb)
	writePEM(ca.t, certPath, "CERTIFICATE", der)
	return tmpl.SerialNumber
}

// ClientConfig is a TLS client config trusting serverCA and, when
// certPath is set, presenting that certificate.
func ClientConfig(t *testing.T, serverCA *CA, certPath, keyPath string) *tls.Config {
	t.Helper()
	c := &tls.Config{RootCAs: serverCA.Pool, MinVersion: tls.VersionTLS12}
	if certPath != "" {
		cert, err := tls.LoadX509KeyPair(certPath, keyPath)
		if err != nil {
			t.Fatal(err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c
}

// WriteCRL writes, as PEM at path (aside and renamed), a revocation list
// signed by the CA that revokes serials.
func (ca *CA) WriteCRL(path string, serials ...*big.Int) {
	ca.t.Helper()
	tmpl := &x509.RevocationList{
		Number:     newSerial(ca.t),
		ThisUpdate: time.Now().Add(-time.Minute),
		NextUpdate: time.Now().Add(24 * time.Hour),
	}
	for _, s := range serials {
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries, x509.RevocationListEntry{SerialNumber: s, RevocationTime: time.Now()})
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, ca.cert, ca.key)
	if err != nil {
		ca.t.Fatal(err)
	}
	writePEM(ca.t, path, "X509 CRL", der)
}
