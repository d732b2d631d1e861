package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"slices"

	"github.com/soheilhy/cmux"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/peer"

	"github.com/tesseradb/tessera/raftgroup"
)

// TLSConfig is the node's TLS: the client port's, the peer port's, and the
// protocol limits both share (etcd's --tls-min-version, --tls-max-version,
// --cipher-suites).
type TLSConfig struct {
	Client TLSInfo
	Peer   TLSInfo
	// MinVersion is "TLS1.2" (the default and the floor) or "TLS1.3".
	MinVersion string
	// MaxVersion is "" (Go's newest), "TLS1.2" or "TLS1.3".
	MaxVersion string
	// CipherSuites are Go/IANA names of TLS 1.2 suites; empty: Go's defaults.
	CipherSuites []string
}

// serverTLS is a running node's TLS; a nil side is plaintext.
type serverTLS struct {
	client, peer *tlsSide
}

// setupTLS checks the TLS configuration against the URLs' schemes and
// loads the certificates. As etcd: an https URL needs a certificate (or
// auto TLS); certificates with an http URL are ignored with a warning.
func (s *Server) setupTLS() error {
	c := s.cfg.TLS
	lo, hi, err := parseTLSVersions(c.MinVersion, c.MaxVersion)
	if err != nil {
		return err
	}
	suites, err := parseCipherSuites(c.CipherSuites, lo)
	if err != nil {
		return err
	}
	set := tlsSettings{minVersion: lo, maxVersion: hi, cipherSuites: suites}

	side := func(what string, info TLSInfo, listen, advertise []string, lis net.Listener, dir string, protos []string) (*tlsSide, error) {
		scheme := schemeOf(listen)
		if lis != nil && len(listen) == 0 {
			scheme = schemeOf(advertise)
		}
		switch scheme {
		case "https":
			if info.Empty() && !info.AutoTLS {
				return nil, fmt.Errorf("server: %s URL %s is https: TLS key and certificate (--%scert-file, --%skey-file) or --%sauto-tls must be given",
					what, first(listen, advertise), prefix(what), prefix(what), prefix(what))
			}
			hosts := append(urlHosts(listen), urlHosts(advertise)...)
			return newTLSSide(what, info, set, filepath.Join(s.cfg.DataDir, "fixtures", what), s.cfg.Name, hosts, protos, s.log)
		case "http":
			if !info.Empty() || info.AutoTLS {
				s.log.Warn("scheme is http while TLS is configured; ignoring the key and certificate files", "side", what)
			}
			return nil, nil
		default:
			return nil, fmt.Errorf("server: %s URL %s: scheme must be http or https", what, first(listen, advertise))
		}
	}
	if s.tls.client, err = side("client", c.Client, s.cfg.ListenClientURLs, s.cfg.AdvertiseClientURLs, s.cfg.ClientListener,
		filepath.Join(s.cfg.DataDir, "fixtures", "client"), []string{"h2", "http/1.1"}); err != nil {
		return err
	}
	if s.tls.peer, err = side("peer", c.Peer, s.cfg.ListenPeerURLs, s.cfg.InitialAdvertisePeerURLs, s.cfg.PeerListener,
		filepath.Join(s.cfg.DataDir, "fixtures", "peer"), []string{"h2"}); err != nil {
		return err
	}
	return nil
}

func first(a, b []string) string {
	if len(a) > 0 {
		return a[0]
	}
	if len(b) > 0 {
		return b[0]
	}
	return ""
}

func prefix(what string) string {
	if what == "peer" {
		return "peer-"
	}
	return ""
}

// clientListener wraps the client port's listener in TLS when it has TLS.
// A plaintext client then fails its handshake and is disconnected.
func (s *Server) clientListener(l net.Listener) net.Listener {
	if s.tls.client == nil {
		return l
	}
	return tls.NewListener(l, s.tls.client.serverConfig())
}

// peerServerOptions are the peer gRPC server's transport credentials.
func (s *Server) peerServerOptions() []grpc.ServerOption {
	if s.tls.peer == nil {
		return nil
	}
	return []grpc.ServerOption{grpc.Creds(credentials.NewTLS(s.tls.peer.serverConfig()))}
}

// peerDialOption is how this node dials other members' peer ports (raft
// transport, forwarding, TSO, feeds).
func (s *Server) peerDialOption() (grpc.DialOption, error) {
	if s.tls.peer == nil {
		return grpc.WithTransportCredentials(insecure.NewCredentials()), nil
	}
	c, err := s.tls.peer.clientConfig()
	if err != nil {
		return nil, err
	}
	return grpc.WithTransportCredentials(credentials.NewTLS(c)), nil
}

// selfDialOptions are the options for this node to dial its own client port
// (the HTTP/JSON gateway does): TLS when the port has it, presenting the
// node's own certificate (so --client-cert-auth lets it in) and, as etcd's
// gateway, not verifying its own server certificate over loopback.
func (s *Server) selfDialOptions() ([]grpc.DialOption, error) {
	if s.tls.client == nil {
		return []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, nil
	}
	c, err := s.tls.client.clientConfig()
	if err != nil {
		return nil, err
	}
	c.InsecureSkipVerify = true
	c.VerifyConnection = nil
	return []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(c))}, nil
}

// authorizePeer ties a raft stream's claimed sender to the certificate the
// connection was authenticated with (raftgroup.TransportConfig.AuthorizePeer).
// It only applies when the peer port verifies client certificates; without
// that, nothing authenticates a peer and the claim is taken as sent.
func (s *Server) authorizePeer(ctx context.Context, claimed raftgroup.NodeID) error {
	t := s.tls.peer
	if t == nil || t.autoTLS || !t.info.verifiesClients() {
		return nil
	}
	p, ok := peer.FromContext(ctx)
	if !ok {
		return fmt.Errorf("server: peer %s: no connection information", claimed)
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(ti.State.PeerCertificates) == 0 {
		return fmt.Errorf("server: peer %s: no client certificate", claimed)
	}
	id, err := s.certNode(ti.State.PeerCertificates[0])
	if err != nil {
		return fmt.Errorf("server: peer claiming to be %s: %w", claimed, err)
	}
	if id != claimed {
		return fmt.Errorf("server: peer claiming to be %s presented the certificate of %s", claimed, id)
	}
	return nil
}

// certNode finds the member a peer certificate belongs to: the member whose
// name the certificate carries (common name or a DNS name); failing that,
// the only member whose peer URL host the certificate is valid for.
func (s *Server) certNode(cert *x509.Certificate) (raftgroup.NodeID, error) {
	names := append([]string{cert.Subject.CommonName}, cert.DNSNames...)
	var byName, byHost []raftgroup.NodeID
	for _, n := range s.nodes.List() {
		id := raftgroup.NodeID(n.GetNodeId())
		if slices.Contains(names, n.GetName()) {
			byName = append(byName, id)
			continue
		}
		if u, err := url.Parse(n.GetPeerUrl()); err == nil && cert.VerifyHostname(u.Hostname()) == nil {
			byHost = append(byHost, id)
		}
	}
	switch {
	case len(byName) == 1:
		return byName[0], nil
	case len(byName) > 1:
		return 0, fmt.Errorf("certificate (CN %q) names several members", cert.Subject.CommonName)
	case len(byHost) == 1:
		return byHost[0], nil
	case len(byHost) > 1:
		return 0, fmt.Errorf("certificate (CN %q) names no member and is valid for the hosts of several", cert.Subject.CommonName)
	}
	return 0, fmt.Errorf("certificate (CN %q) names no member", cert.Subject.CommonName)
}

// clientTLSServerOptions give the client port's gRPC server the TLS state
// of each connection, which the TLS listener under cmux has already
// established: auth takes the client certificate's common name from it.
func (s *Server) clientTLSServerOptions() []grpc.ServerOption {
	if s.tls.client == nil {
		return nil
	}
	return []grpc.ServerOption{grpc.Creds(establishedTLS{})}
}

// establishedTLS is server-side transport credentials for connections that
// are TLS already: no handshake, only the connection state as AuthInfo.
type establishedTLS struct{}

func (establishedTLS) ServerHandshake(c net.Conn) (net.Conn, credentials.AuthInfo, error) {
	var tc *tls.Conn
	switch x := c.(type) {
	case *cmux.MuxConn:
		tc, _ = x.Conn.(*tls.Conn)
	case *tls.Conn:
		tc = x
	}
	if tc == nil {
		return nil, nil, fmt.Errorf("server: client connection %T is not TLS", c)
	}
	return c, credentials.TLSInfo{State: tc.ConnectionState(), CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity}}, nil
}

func (establishedTLS) ClientHandshake(context.Context, string, net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errors.New("server: establishedTLS is for servers only")
}

func (establishedTLS) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "tls", SecurityVersion: "1.2"}
}

func (establishedTLS) Clone() credentials.TransportCredentials { return establishedTLS{} }

func (establishedTLS) OverrideServerName(string) error { return nil }
