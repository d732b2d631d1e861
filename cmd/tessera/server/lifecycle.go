package server

import (
	"context"
	"path/filepath"
	"time"

	"github.com/tesseradb/tessera/cmd/buildinfo"
	"google.golang.org/grpc"
)

// lifecycle logs what a node does as it starts, becomes ready and stops.
type lifecycle struct {
	cancel context.CancelFunc // stops the readiness watcher
	done   chan struct{}      // closed when the readiness watcher has returned
	ready  chan struct{}      // closed when the node has logged that it is ready
	// stopped: stopLifecycle ran (BeginShutdown, then Close, call it;
	// neither runs concurrently with the other for one node).
	stopped bool
}

// logStarting is the first line a node logs, as etcd's "starting an etcd
// server".
func (s *Server) logStarting() {
	s.log.Info("starting Tessera",
		"version", buildinfo.Version, "etcd-api-version", buildinfo.EtcdAPIVersion,
		"member-id", uint64(s.self), "data-dir", absPath(s.cfg.DataDir))
}

// startLifecycle logs the URLs the node serves and starts the watcher that
// logs, once, when the node is ready to serve clients (every range it
// fronts answers a linearizable read).
func (s *Server) startLifecycle() {
	peerScheme, clientScheme := "http://", "http://"
	if s.tls.peer != nil {
		peerScheme = "https://"
	}
	if s.tls.client != nil {
		clientScheme = "https://"
	}
	s.log.Info("serving peer traffic", "listen-peer-url", peerScheme+s.PeerAddr(), "advertise-peer-urls", s.cfg.InitialAdvertisePeerURLs)
	s.log.Info("serving client traffic (etcd gRPC API, /health, /livez, /readyz, /version, /metrics)",
		"listen-client-url", clientScheme+s.ClientAddr(), "advertise-client-urls", s.cfg.AdvertiseClientURLs)
	ctx, cancel := context.WithCancel(context.Background())
	s.life.cancel = cancel
	s.life.done = make(chan struct{})
	s.life.ready = make(chan struct{})
	ready := s.readCheck(false)
	go func() {
		defer close(s.life.done)
		t := time.NewTicker(s.cfg.ReadyCheckInterval)
		defer t.Stop()
		for {
			rctx, rcancel := context.WithTimeout(ctx, s.cfg.ProbeTimeout)
			err := ready(rctx)
			rcancel()
			if err == nil {
				s.log.Info("ready to serve client requests", "advertise-client-urls", s.cfg.AdvertiseClientURLs)
				close(s.life.ready)
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
}

// Ready is closed once the node has been ready to serve clients (every
// range answered a linearizable read through it); it logs that moment.
func (s *Server) Ready() <-chan struct{} { return s.life.ready }

// stopLifecycle stops the readiness watcher (first thing in Close).
func (s *Server) stopLifecycle() {
	if s.life.cancel == nil || s.life.stopped {
		return
	}
	s.life.stopped = true
	s.log.Info("stopping Tessera")
	s.life.cancel()
	<-s.life.done
}

// logStopped is the last line of Close: where the data stayed.
func (s *Server) logStopped() {
	if s.life.done == nil {
		return // Start failed: its error says why
	}
	s.log.Info("stopped Tessera; its data stays in the data dir (a restart with the same --data-dir resumes)", "data-dir", absPath(s.cfg.DataDir))
}

// probeDefaults fills the probe settings a Config built by hand left zero.
func (c *Config) probeDefaults() {
	d := DefaultConfig()
	if c.ProbeTimeout == 0 {
		c.ProbeTimeout = d.ProbeTimeout
	}
	if c.ReadyCheckInterval == 0 {
		c.ReadyCheckInterval = d.ReadyCheckInterval
	}
}

// absPath is p made absolute for a log line ("where is my data?"), or p.
func absPath(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}

// BeginShutdown stops the node's raft host and its transport, so that its
// peers see their streams end with "transport closed" (a clean shutdown,
// logged at debug) rather than a broken connection; Close does the rest.
// A process that runs several nodes (tessera dev) calls it on every node
// before closing any: a node's Close stops its peer port, which would
// otherwise break the streams of nodes still running.
func (s *Server) BeginShutdown() {
	s.stopLifecycle()
	if s.host != nil {
		_ = s.host.Close()
	}
}

// peerStopGrace bounds the graceful part of the peer server's stop: on
// loopback or a LAN the last statuses flush in well under it.
const peerStopGrace = 300 * time.Millisecond

// stopGracefully stops srv gracefully, and hard once grace has passed.
func stopGracefully(srv *grpc.Server, grace time.Duration) {
	done := make(chan struct{})
	go func() {
		srv.GracefulStop()
		close(done)
	}()
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		srv.Stop()
		<-done
	}
}
