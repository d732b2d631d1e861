package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

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
	// StartTimeout bounds the wait for every member to serve a
	// linearizable read.
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
		return errors.New("cluster: no binary")
	case c.Nodes < 1:
		return fmt.Errorf("cluster: nodes must be at least 1, got %d", c.Nodes)
	case c.Dir == "":
		return errors.New("cluster: no data root")
	case c.StartTimeout <= 0 || c.StopGrace <= 0:
		return errors.New("cluster: start timeout and stop grace must be positive")
	}
	return nil
}

// Cluster is a running local cluster.
type Cluster struct {
	cfg   Config
	nodes []*Node
}

// Node is one member.
type Node struct {
	Name      string
	ClientURL string
	PeerURL   string
	DataDir   string
	LogPath   string
	proc      *process
}

// PID is the member's process ID (and process group ID).
func (n *Node) PID() int { return n.proc.pid() }

// Start starts the cluster and returns once every member serves a
// linearizable read. On failure it stops what it started and the error
// carries the end of the failing node's log.
func Start(ctx context.Context, cfg Config) (*Cluster, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	attempts := max(cfg.PortAttempts, 1)
	var err error
	for a := range attempts {
		var c *Cluster
		c, err = start(ctx, cfg, a)
		if err == nil {
			return c, nil
		}
		if ctx.Err() != nil || !strings.Contains(err.Error(), "address already in use") {
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
	var peers []string
	for i := range cfg.Nodes {
		n := &Node{
			Name:      fmt.Sprintf("%s-%d", cfg.Name, i+1),
			ClientURL: fmt.Sprintf("http://127.0.0.1:%d", ports[2*i]),
			PeerURL:   fmt.Sprintf("http://127.0.0.1:%d", ports[2*i+1]),
		}
		// A fresh directory per attempt: a half-started member leaves state.
		n.DataDir = filepath.Join(cfg.Dir, fmt.Sprintf("%s.%d", n.Name, attempt))
		n.LogPath = n.DataDir + ".log"
		c.nodes = append(c.nodes, n)
		peers = append(peers, n.Name+"="+n.PeerURL)
	}
	initial := strings.Join(peers, ",")
	for _, n := range c.nodes {
		args := append([]string{
			"--name", n.Name,
			"--data-dir", n.DataDir,
			"--listen-client-urls", n.ClientURL,
			"--advertise-client-urls", n.ClientURL,
			"--listen-peer-urls", n.PeerURL,
			"--initial-advertise-peer-urls", n.PeerURL,
			"--initial-cluster", initial,
			"--initial-cluster-state", "new",
		}, cfg.ExtraArgs...)
		p, err := startProcess(cfg.Bin, args, n.LogPath)
		if err != nil {
			c.stopProcesses()
			return nil, err
		}
		n.proc = p
		cfg.Logger.Debug("started", "node", n.Name, "pid", p.pid(), "client", n.ClientURL, "log", n.LogPath)
	}
	if err := c.waitReady(ctx); err != nil {
		c.stopProcesses()
		return nil, err
	}
	cfg.Logger.Info("cluster ready", "cluster", cfg.Name, "nodes", cfg.Nodes, "endpoints", c.Endpoints())
	return c, nil
}

// waitReady polls every member with a linearizable read (it needs a leader
// and a quorum) until all answer, a member exits, or the timeout passes.
func (c *Cluster) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.StartTimeout)
	defer cancel()
	for _, n := range c.nodes {
		cli, err := clientv3.New(clientv3.Config{
			Endpoints:   []string{n.ClientURL},
			DialTimeout: time.Second,
			Logger:      zap.NewNop(),
		})
		if err != nil {
			return fmt.Errorf("cluster: %s: %w", n.Name, err)
		}
		err = pollReady(ctx, cli, n)
		_ = cli.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// readyPoll is the interval between readiness probes.
const readyPoll = 100 * time.Millisecond

func pollReady(ctx context.Context, cli *clientv3.Client, n *Node) error {
	tick := time.NewTicker(readyPoll)
	defer tick.Stop()
	var lastErr error
	for {
		rctx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := cli.Get(rctx, "tessbench/ready")
		cancel()
		if err == nil {
			return nil
		}
		lastErr = err
		select {
		case <-n.proc.exited:
			return fmt.Errorf("cluster: %s exited while starting (%v); end of %s:\n%s",
				n.Name, n.proc.err, n.LogPath, tail(n.LogPath, 2048))
		case <-ctx.Done():
			return fmt.Errorf("cluster: %s not ready: %w (last: %v); end of %s:\n%s",
				n.Name, ctx.Err(), lastErr, n.LogPath, tail(n.LogPath, 2048))
		case <-tick.C:
		}
	}
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

// Dir is the data root.
func (c *Cluster) Dir() string { return c.cfg.Dir }

// Stop stops every member this cluster started and removes the data root
// unless Config.Keep is set. It is safe to call more than once.
func (c *Cluster) Stop() error {
	err := c.stopProcesses()
	if !c.cfg.Keep {
		if rerr := os.RemoveAll(c.cfg.Dir); rerr != nil {
			err = errors.Join(err, fmt.Errorf("cluster: remove %s: %w", c.cfg.Dir, rerr))
		}
	}
	return err
}

func (c *Cluster) stopProcesses() error {
	var errs []error
	for _, n := range c.nodes {
		if n.proc == nil {
			continue
		}
		if err := n.proc.stop(c.cfg.StopGrace); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
