package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"

	"github.com/spf13/pflag"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// tlsFlags are etcdctl's TLS flags. The same certificate is presented to
// client URLs (member list, /health) and peer URLs (Tessera's Internal
// service): with separate client and peer CAs, give a certificate both
// trust, or run tessctl where the peer certificate is.
type tlsFlags struct {
	cacert, cert, key  string
	insecureSkipVerify bool
}

func addTLSFlags(f *pflag.FlagSet, t *tlsFlags) {
	f.StringVar(&t.cacert, "cacert", "", "verify certificates of TLS-enabled secure servers using this CA bundle")
	f.StringVar(&t.cert, "cert", "", "identify secure client using this TLS certificate file")
	f.StringVar(&t.key, "key", "", "identify secure client using this TLS key file")
	f.BoolVar(&t.insecureSkipVerify, "insecure-skip-tls-verify", false, "skip server certificate verification (CAUTION: this option should be enabled only for testing purposes)")
}

// config returns the TLS client config the flags describe, or nil when no
// TLS flag is set (https URLs then use the system's roots).
func (t *tlsFlags) config() (*tls.Config, error) {
	if t.cacert == "" && t.cert == "" && t.key == "" && !t.insecureSkipVerify {
		return nil, nil
	}
	if (t.cert == "") != (t.key == "") {
		return nil, errors.New("tessctl: --cert and --key must be given together")
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: t.insecureSkipVerify}
	if t.cacert != "" {
		pem, err := os.ReadFile(t.cacert)
		if err != nil {
			return nil, fmt.Errorf("tessctl: --cacert: %w", err)
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tessctl: --cacert %s holds no PEM certificate", t.cacert)
		}
	}
	if t.cert != "" {
		cert, err := tls.LoadX509KeyPair(t.cert, t.key)
		if err != nil {
			return nil, fmt.Errorf("tessctl: --cert/--key: %w", err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}

// grpcCreds are the transport credentials for a URL's scheme.
func grpcCreds(scheme string, c *tls.Config) (grpc.DialOption, error) {
	switch scheme {
	case "http":
		return grpc.WithTransportCredentials(insecure.NewCredentials()), nil
	case "https":
		if c == nil {
			c = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		return grpc.WithTransportCredentials(credentials.NewTLS(c)), nil
	}
	return nil, fmt.Errorf("scheme %q: want http or https", scheme)
}

// httpClient is the client for /health.
func httpClient(c *tls.Config) *http.Client {
	if c == nil {
		return http.DefaultClient
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: c}}
}
