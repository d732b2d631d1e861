package server

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
)

// Checks of a client certificate beyond its chain, as etcd 3.7 makes them:
// the names it must carry (--peer-cert-allowed-cn, --peer-cert-allowed-hostname,
// --client-cert-allowed-hostname) and the revocation list it must not be on
// (--client-crl-file, --peer-crl-file).

func (i TLSInfo) validateVerify(side string) error {
	if len(i.AllowedCNs) > 0 && len(i.AllowedHostnames) > 0 {
		return fmt.Errorf("server: %s: allowed common names and allowed hostnames are mutually exclusive (etcd's rule)", side)
	}
	if (len(i.AllowedCNs) > 0 || len(i.AllowedHostnames) > 0) && !i.verifiesClients() {
		return fmt.Errorf("server: %s: allowed common names or hostnames need client certificate authentication (a trusted CA file)", side)
	}
	if slices.Contains(i.AllowedCNs, "") || slices.Contains(i.AllowedHostnames, "") {
		return fmt.Errorf("server: %s: an empty allowed common name or hostname", side)
	}
	return nil
}

// verifyClientName returns the tls.Config.VerifyPeerCertificate hook that
// accepts a verified client certificate only if its common name is one of
// AllowedCNs, or it is valid for one of AllowedHostnames (a DNS or IP SAN,
// as x509's VerifyHostname decides); nil when neither is set.
func (i TLSInfo) verifyClientName() func([][]byte, [][]*x509.Certificate) error {
	var ok func(*x509.Certificate) bool
	var what string
	switch {
	case len(i.AllowedCNs) > 0:
		cns := slices.Clone(i.AllowedCNs)
		ok = func(c *x509.Certificate) bool { return slices.Contains(cns, c.Subject.CommonName) }
		what = fmt.Sprintf("common name is not one of the allowed %q", cns)
	case len(i.AllowedHostnames) > 0:
		hosts := slices.Clone(i.AllowedHostnames)
		ok = func(c *x509.Certificate) bool {
			for _, h := range hosts {
				if c.VerifyHostname(h) == nil {
					return true
				}
			}
			return false
		}
		what = fmt.Sprintf("is valid for none of the allowed hostnames %q", hosts)
	default:
		return nil
	}
	return func(_ [][]byte, chains [][]*x509.Certificate) error {
		for _, chain := range chains {
			if len(chain) > 0 && ok(chain[0]) {
				return nil
			}
		}
		return fmt.Errorf("server: client certificate %s", what)
	}
}

// crlSource is a revocation list read from a file, read again when the file
// changes (size or modification time), like the certificates. As etcd, a
// certificate is revoked when its serial number is listed; the list's own
// signature is not checked (the operator's file is trusted), and a file
// that cannot be read or parsed refuses every connection (fail closed)
// until it is fixed.
type crlSource struct {
	file string
	log  *slog.Logger

	mu struct {
		sync.Mutex
		stamp   string
		revoked map[string]struct{} // serial numbers (big-endian bytes)
		err     error
	}
}

func newCRLSource(file string, log *slog.Logger) (*crlSource, error) {
	c := &crlSource{file: file, log: log}
	if _, err := c.current(); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *crlSource) current() (map[string]struct{}, error) {
	stamp := "missing"
	if st, err := os.Stat(c.file); err == nil {
		stamp = fmt.Sprintf("%d:%d", st.Size(), st.ModTime().UnixNano())
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mu.stamp == stamp && (c.mu.revoked != nil || c.mu.err != nil) {
		return c.mu.revoked, c.mu.err
	}
	revoked, err := loadCRL(c.file)
	if err != nil {
		c.log.Warn("TLS: cannot read the certificate revocation list; refusing client certificates until it is fixed", "file", c.file, "err", err)
	} else if c.mu.stamp != "" {
		c.log.Info("TLS: certificate revocation list reloaded", "file", c.file, "revoked", len(revoked))
	}
	c.mu.stamp, c.mu.revoked, c.mu.err = stamp, revoked, err
	return revoked, err
}

func loadCRL(file string) (map[string]struct{}, error) {
	raw, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("server: read CRL file: %w", err)
	}
	der := raw
	if b, _ := pem.Decode(raw); b != nil {
		der = b.Bytes
	}
	list, err := x509.ParseRevocationList(der)
	if err != nil {
		return nil, fmt.Errorf("server: CRL file %s: %w", file, err)
	}
	revoked := make(map[string]struct{}, len(list.RevokedCertificateEntries))
	for _, e := range list.RevokedCertificateEntries {
		if e.SerialNumber != nil {
			revoked[string(e.SerialNumber.Bytes())] = struct{}{}
		}
	}
	return revoked, nil
}

// verifyConnection is a tls.Config.VerifyConnection hook: it refuses a
// connection whose peer presented a revoked certificate (leaf or any
// certificate it sent with it).
func (c *crlSource) verifyConnection(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return nil
	}
	revoked, err := c.current()
	if err != nil {
		return err
	}
	for _, cert := range cs.PeerCertificates {
		if _, ok := revoked[string(cert.SerialNumber.Bytes())]; ok {
			return errors.New("server: certificate revoked (serial " + cert.SerialNumber.Text(16) + ")")
		}
	}
	return nil
}
