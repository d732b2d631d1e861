package compare

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Security settings of a comparison (--tls, --auth): both systems get the
// same flags, so the figures show what TLS and auth cost each of them.

// Auth's user: root, the only user etcd's auth needs, with a password
// (clients authenticate once per connection and send a simple token).
const (
	authUser     = "root"
	authPassword = "tessbench-root"
)

// pki is the certificates of a --tls comparison: one CA (ECDSA P-256) that
// signs, for each member, a certificate with the member's name as common
// name, valid for 127.0.0.1 and localhost as server and client, which it
// presents on both ports (Tessera binds a peer's raft stream to the member
// its certificate names, so members cannot share one), and one for the
// benchmark's clients.
type pki struct {
	dir    string
	caFile string
	issue  func(name string, serial int64) (certFile, keyFile string, err error)
	serial int64
	client *tls.Config
}

func newPKI(dir string) (*pki, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("compare: tls dir: %w", err)
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "tessbench-ca"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(48 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("compare: CA: %w", err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	issue := func(name string, serial int64) (string, string, error) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return "", "", err
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(48 * time.Hour),
			KeyUsage:    x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
			IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			return "", "", fmt.Errorf("compare: certificate %s: %w", name, err)
		}
		kb, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			return "", "", err
		}
		cf, kf := filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
		if err := writePEM(cf, "CERTIFICATE", der); err != nil {
			return "", "", err
		}
		return cf, kf, writePEM(kf, "EC PRIVATE KEY", kb)
	}
	p := &pki{dir: dir, caFile: filepath.Join(dir, "ca.pem"), issue: issue, serial: 3}
	if err := writePEM(p.caFile, "CERTIFICATE", caDER); err != nil {
		return nil, err
	}
	cc, ck, err := issue("client", 2)
	if err != nil {
		return nil, err
	}
	cert, err := tls.LoadX509KeyPair(cc, ck)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	p.client = &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	return p, nil
}

func writePEM(path, typ string, der []byte) error {
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		return fmt.Errorf("compare: write %s: %w", path, err)
	}
	return nil
}

// serverArgs issues member name's certificate and returns etcd's flags for
// client and peer mutual TLS with it, the same for both systems. Members
// are prepared one at a time (proccluster runs Prepare in order).
func (p *pki) serverArgs(name string) ([]string, error) {
	p.serial++
	cert, key, err := p.issue(name, p.serial)
	if err != nil {
		return nil, err
	}
	return []string{
		"--cert-file", cert, "--key-file", key, "--trusted-ca-file", p.caFile, "--client-cert-auth",
		"--peer-cert-file", cert, "--peer-key-file", key, "--peer-trusted-ca-file", p.caFile, "--peer-client-cert-auth",
	}, nil
}

// enableAuth adds root (with the root role) and enables auth, as an
// operator does with etcdctl.
func enableAuth(ctx context.Context, endpoints []string, tlsCfg *tls.Config) error {
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, TLS: tlsCfg, DialTimeout: 10 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return fmt.Errorf("compare: auth setup: %w", err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := cli.UserAdd(ctx, authUser, authPassword); err != nil {
		return fmt.Errorf("compare: auth setup: user add: %w", err)
	}
	if _, err := cli.UserGrantRole(ctx, authUser, "root"); err != nil {
		return fmt.Errorf("compare: auth setup: grant root: %w", err)
	}
	if _, err := cli.AuthEnable(ctx); err != nil {
		return fmt.Errorf("compare: auth setup: enable: %w", err)
	}
	return nil
}
