package proccluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/tesseradb/tessera/placement"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Config describes a local cluster.
type Config struct {
	// Name labels the cluster ("etcd", "tessera") in logs and node names.
	Name string
	// Bin is the server binary; it must take etcd's cluster flags.
	Bin string
	// Nodes is the number of members.
	Nodes int
	// Dir is the data root; each node gets Dir/<node> and Dir/<node>.log.
	// It is created if missing and removed by Stop unless Keep is set.
	Dir string
	// Keep leaves Dir in place after Stop (for reading the logs).
	Keep bool
	// ExtraArgs are appended to every node's flags.
	ExtraArgs []string
	// GossipPorts gives every node a free --gossip-addr on 127.0.0.1
	// (Tessera gossips on a port of its own, 7946 by default: one node per
	// host). Not for etcd, which has no such flag.
	GossipPorts bool
	// NodeName names node i (0-based); nil: "<Name>-<i+1>".
	NodeName func(i int) string
	// AdvertisePeer, when set, returns the peer URL node n advertises in
	// --initial-advertise-peer-urls and --initial-cluster (a proxy in front
	// of n.PeerURL, for partitions); nil advertises n.PeerURL itself.
	AdvertisePeer func(n *Node) (string, error)
	// Prepare, when set, runs for each node once its flags are set and
	// before any node starts: it may edit n.Args and n.DataDir.
	Prepare func(n *Node) error
	// ClientTLS and PeerTLS, when set, make the client and peer URLs https
	// (the caller adds the servers' TLS flags); ClientTLS is also how the
	// default readiness probe dials.
	ClientTLS, PeerTLS *tls.Config
	// Ready, when set, replaces the readiness probe of a node (default: a
	// linearizable read through the node answers).
	Ready func(ctx context.Context, n *Node) error
	// StartTimeout bounds the wait for every member to be ready.
	StartTimeout time.Duration
	// StopGrace is how long a node may take to exit after SIGTERM before it
	// gets SIGKILL.
	StopGrace time.Duration
	// PortAttempts is how many times Start picks new ports when a node fails
	// to start, in case another process took a port in between.
	PortAttempts int
	// Logger receives progress; nil discards it.
	Logger *slog.Logger
}

// DefaultConfig returns a 3-node cluster of the named binary under dir.
func DefaultConfig(name, bin, dir string) Config {
	return Config{
		Name:         name,
		Bin:          bin,
		Nodes:        3, // the smallest cluster that survives a failure, and etcd's usual size
		Dir:          dir,
		StartTimeout: 60 * time.Second, // first leader election plus a fresh data dir's fsyncs on a slow disk
		StopGrace:    10 * time.Second, // etcd flushes and closes its backend on SIGTERM
		PortAttempts: 3,
	}
}

// Validate reports the first setting that cannot work.
func (c Config) Validate() error {
	switch {
	case c.Bin == "":
		return errors.New("proccluster: no binary")
	case c.Nodes < 1:
		return fmt.Errorf("proccluster: nodes must be at least 1, got %d", c.Nodes)
	case c.Dir == "":
		return errors.New("proccluster: no data root")
	case c.StartTimeout <= 0 || c.StopGrace <= 0:
		return errors.New("proccluster: start timeout and stop grace must be positive")
	}
	return nil
}

// Cluster is a running local cluster.
type Cluster struct {
	cfg   Config
	nodes []*Node
}

// errPortTaken is how a server says a port chosen as free was taken.
const errPortTaken = "address already in use"

// Start starts the cluster and returns once every member is ready. On
// failure it stops what it started and the error carries the end of the
// failing node's log.
func Start(ctx context.Context, cfg Config) (*Cluster, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("proccluster: %w", err)
	}
	attempts := max(cfg.PortAttempts, 1)
	var err error
	for a := range attempts {
		var c *Cluster
		c, err = start(ctx, cfg, a)
		if err == nil {
			return c, nil
		}
		if ctx.Err() != nil || !strings.Contains(err.Error(), errPortTaken) {
			break
		}
		cfg.Logger.Warn("port taken while starting; retrying with new ports", "cluster", cfg.Name, "err", err)
	}
	if !cfg.Keep {
		_ = os.RemoveAll(cfg.Dir)
	}
	return nil, err
}

func start(ctx context.Context, cfg Config, attempt int) (*Cluster, error) {
	ports, err := FreePorts(2 * cfg.Nodes)
	if err != nil {
		return nil, err
	}
	c := &Cluster{cfg: cfg}
	clientScheme, peerScheme := "http", "http"
	if cfg.ClientTLS != nil {
		clientScheme = "https"
	}
	if cfg.PeerTLS != nil {
		peerScheme = "https"
	}
	var peers []string
	for i := range cfg.Nodes {
		n := &Node{
			Index:     i,
			ID:        uint64(i + 1),
			Name:      fmt.Sprintf("%s-%d", cfg.Name, i+1),
			ClientURL: fmt.Sprintf("%s://127.0.0.1:%d", clientScheme, ports[2*i]),
			PeerURL:   fmt.Sprintf("%s://127.0.0.1:%d", peerScheme, ports[2*i+1]),
			ClientTLS: cfg.ClientTLS,
			PeerTLS:   cfg.PeerTLS,
			bin:       cfg.Bin,
			log:       cfg.Logger,
		}
		if cfg.NodeName != nil {
			n.Name = cfg.NodeName(i)
		}
		n.AdvertisePeerURL = n.PeerURL
		if cfg.AdvertisePeer != nil {
			if n.AdvertisePeerURL, err = cfg.AdvertisePeer(n); err != nil {
				return nil, fmt.Errorf("proccluster: advertised peer URL of %s: %w", n.Name, err)
			}
		}
		// A fresh directory per attempt: a half-started member leaves state.
		n.DataDir = filepath.Join(cfg.Dir, n.Name)
		if attempt > 0 {
			n.DataDir = fmt.Sprintf("%s.%d", n.DataDir, attempt)
		}
		n.LogPath = n.DataDir + ".log"
		c.nodes = append(c.nodes, n)
		peers = append(peers, n.Name+"="+n.AdvertisePeerURL)
	}
	initial := strings.Join(peers, ",")
	for _, n := range c.nodes {
		n.Args = append([]string{
			"--name", n.Name,
			"--data-dir", n.DataDir,
			"--listen-client-urls", n.ClientURL,
			"--advertise-client-urls", n.ClientURL,
			"--listen-peer-urls", n.PeerURL,
			"--initial-advertise-peer-urls", n.AdvertisePeerURL,
			"--initial-cluster", initial,
			"--initial-cluster-state", "new",
		}, cfg.ExtraArgs...)
		if cfg.GossipPorts {
			addr, err := placement.FreeGossipAddr()
			if err != nil {
				return nil, fmt.Errorf("proccluster: gossip address of %s: %w", n.Name, err)
			}
			n.Args = append(n.Args, "--gossip-addr", addr)
		}
		if cfg.Prepare != nil {
			if err := cfg.Prepare(n); err != nil {
				return nil, fmt.Errorf("proccluster: prepare %s: %w", n.Name, err)
			}
		}
	}
	for _, n := range c.nodes {
		if err := n.Start(); err != nil {
			_ = c.stopProcesses()
			return nil, err
		}
	}
	if err := c.waitReady(ctx); err != nil {
		_ = c.stopProcesses()
		return nil, err
	}
	cfg.Logger.Info("cluster ready", "cluster", cfg.Name, "nodes", cfg.Nodes, "endpoints", c.Endpoints())
	return c, nil
}

// waitReady polls every member until all are ready, a member exits, or the
// timeout passes.
func (c *Cluster) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.StartTimeout)
	defer cancel()
	for _, n := range c.nodes {
		if err := n.AwaitReady(ctx, c.cfg.Ready); err != nil {
			return err
		}
	}
	return nil
}

// readyPoll is the interval between readiness probes.
const readyPoll = 50 * time.Millisecond

// AwaitReady polls the node with ready (nil: a linearizable read through
// the node) until it succeeds, the node's process exits, or ctx ends; the
// error then carries the end of the node's log.
func (n *Node) AwaitReady(ctx context.Context, ready func(ctx context.Context, n *Node) error) error {
	p := n.Process()
	if p == nil {
		return fmt.Errorf("proccluster: %s is not running", n.Name)
	}
	if ready == nil {
		ready = readByClient
	}
	tick := time.NewTicker(readyPoll)
	defer tick.Stop()
	var lastErr error
	for {
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := ready(rctx, n)
		cancel()
		if err == nil {
			return nil
		}
		lastErr = err
		select {
		case <-p.Done():
			return fmt.Errorf("proccluster: %s exited while starting (%v); end of %s:\n%s",
				n.Name, p.err, n.LogPath, Tail(n.LogPath, 2048))
		case <-ctx.Done():
			return fmt.Errorf("proccluster: %s not ready: %w (last: %v); end of %s:\n%s",
				n.Name, ctx.Err(), lastErr, n.LogPath, Tail(n.LogPath, 2048))
		case <-tick.C:
		}
	}
}

// readByClient is the default readiness probe: a linearizable read through
// the node answers (it needs a leader and a quorum).
func readByClient(ctx context.Context, n *Node) error {
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{n.ClientURL},
		DialTimeout: time.Second,
		Logger:      zap.NewNop(),
		Context:     ctx,
		TLS:         n.ClientTLS,
	})
	if err != nil {
		return err
	}
	defer cli.Close()
	_, err = cli.Get(ctx, "proccluster/ready")
	return err
}

// Endpoints returns the members' client URLs.
func (c *Cluster) Endpoints() []string {
	var eps []string
	for _, n := range c.nodes {
		eps = append(eps, n.ClientURL)
	}
	return eps
}

// Nodes returns the members.
func (c *Cluster) Nodes() []*Node { return c.nodes }

// Node returns member i (0-based).
func (c *Cluster) Node(i int) *Node { return c.nodes[i] }

// Dir is the data root.
func (c *Cluster) Dir() string { return c.cfg.Dir }

// PIDs returns the running members' PIDs, PID -> member index.
func (c *Cluster) PIDs() map[int]int {
	out := map[int]int{}
	for _, n := range c.nodes {
		if p := n.Process(); p != nil && p.Running() {
			out[p.PID()] = n.Index
		}
	}
	return out
}

// KillAll sends SIGKILL to every running member at once, then reaps them
// (each within timeout).
func (c *Cluster) KillAll(timeout time.Duration) error {
	var procs []*Process
	for _, n := range c.nodes {
		if p := n.Process(); p != nil {
			if err := p.Signal(syscall.SIGKILL); err != nil {
				return err
			}
			procs = append(procs, p)
		}
	}
	var errs []error
	for _, p := range procs {
		if err := p.Wait(timeout); err != nil {
			errs = append(errs, err)
		}
	}
	for _, n := range c.nodes {
		n.forgetExited()
	}
	return errors.Join(errs...)
}

// Stop stops every member this cluster started and removes the data root
// unless Config.Keep is set. It is safe to call more than once.
func (c *Cluster) Stop() error {
	err := c.stopProcesses()
	if !c.cfg.Keep {
		if rerr := os.RemoveAll(c.cfg.Dir); rerr != nil {
			err = errors.Join(err, fmt.Errorf("proccluster: remove %s: %w", c.cfg.Dir, rerr))
		}
	}
	return err
}

func (c *Cluster) stopProcesses() error {
	var errs []error
	for _, n := range c.nodes {
		if err := n.Stop(c.cfg.StopGrace); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
