package main

import (
	"github.com/spf13/pflag"

	"github.com/tesseradb/tessera/cmd/tessera/server"
)

// addTLSFlags adds etcd's TLS flags (same names, same meanings; see
// docs/security.md).
func addTLSFlags(f *pflag.FlagSet, c *server.TLSConfig) {
	f.StringVar(&c.Client.CertFile, "cert-file", "", "path to the client server TLS cert file")
	f.StringVar(&c.Client.KeyFile, "key-file", "", "path to the client server TLS key file")
	f.StringVar(&c.Client.TrustedCAFile, "trusted-ca-file", "", "path to the client server TLS trusted CA cert file (client certificates become mandatory)")
	f.BoolVar(&c.Client.ClientCertAuth, "client-cert-auth", false, "enable client cert authentication")
	f.BoolVar(&c.Client.AutoTLS, "auto-tls", false, "client TLS using generated certificates")
	f.StringVar(&c.Peer.CertFile, "peer-cert-file", "", "path to the peer server TLS cert file")
	f.StringVar(&c.Peer.KeyFile, "peer-key-file", "", "path to the peer server TLS key file")
	f.StringVar(&c.Peer.TrustedCAFile, "peer-trusted-ca-file", "", "path to the peer server TLS trusted CA file")
	f.BoolVar(&c.Peer.ClientCertAuth, "peer-client-cert-auth", false, "enable peer client cert authentication")
	f.BoolVar(&c.Peer.AutoTLS, "peer-auto-tls", false, "peer TLS using generated certificates")
	f.StringSliceVar(&c.Peer.AllowedCNs, "peer-cert-allowed-cn", nil, "comma-separated list of allowed CNs for inter-peer TLS authentication")
	f.StringSliceVar(&c.Peer.AllowedHostnames, "peer-cert-allowed-hostname", nil, "comma-separated list of allowed SAN hostnames for inter-peer TLS authentication")
	f.StringSliceVar(&c.Client.AllowedHostnames, "client-cert-allowed-hostname", nil, "comma-separated list of allowed SAN hostnames for client cert authentication")
	f.StringVar(&c.Client.CRLFile, "client-crl-file", "", "path to the client certificate revocation list file")
	f.StringVar(&c.Peer.CRLFile, "peer-crl-file", "", "path to the peer certificate revocation list file")
	f.StringVar(&c.MinVersion, "tls-min-version", "TLS1.2", "minimum TLS version supported by tessera: TLS1.2 or TLS1.3")
	f.StringVar(&c.MaxVersion, "tls-max-version", "", "maximum TLS version supported by tessera (empty: Go's newest)")
	f.StringSliceVar(&c.CipherSuites, "cipher-suites", nil, "comma-separated list of supported TLS cipher suites between client/server and peers (empty: Go's defaults)")
}
