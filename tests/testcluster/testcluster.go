// Package testcluster starts a Tessera cluster of N nodes inside the test
// process: real engines in t.TempDir(), real gRPC on loopback, each node a
// cmd/tessera/server.Server, wired as `tessera dev` wires them.
//
// A Cluster is tied to the test that started it: it stops every node when the
// test ends (t.Cleanup). Methods that take a testing.TB fail that test;
// the others (Leader, TransferLeader, Restart, Stop, ...) fail the test that
// started the cluster, so call them from its goroutine. Every wait is a poll
// with a deadline, never a bare sleep.
//
//	c := testcluster.Start(t, testcluster.Options{Nodes: 3, SplitKeys: []string{"b", "d", "f"}})
//	c.WaitReady(t)
//	cli := c.Client(t)
//	cli.Put(ctx, "a", "1")
//	c.TransferLeader(2, 1) // range 2 (keys < "b") to the second node
//	c.Restart(0)
//
// Nodes are numbered by index 0..N-1; node index i has raft node id i+1 (the
// order of --initial-cluster). The meta group is range 1; data ranges are 2,
// 3, ... in key order of the split keys.
package testcluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/tesseradb/tessera/cmd/tessera/server"
	"github.com/tesseradb/tessera/raftgroup"
)

// Options configure a cluster.
type Options struct {
	// Nodes is the number of nodes; 0 means 3.
	Nodes int
	// SplitKeys cut the keyspace into initial ranges (--initial-split-keys).
	SplitKeys []string
	// Tick is the raft tick; 0 means 20ms (ten ticks to an election: fast
	// elections for tests, still well above loopback round trips).
	Tick time.Duration
	// Configure, when set, adjusts each node's configuration before it
	// starts (flags a test needs, such as etcd's watch progress interval).
	Configure func(*server.Config)
	// Scheme of the nodes' URLs: "http" (the default) or "https" (Configure
	// then sets the certificates; the cluster's own clients do not dial
	// TLS, so a TLS test brings its own).
	Scheme string
}

func (o Options) scheme() string {
	if o.Scheme == "" {
		return "http"
	}
	return o.Scheme
}

// Timeouts of the cluster's waits. They are generous because the race
// detector and a shared two-core machine slow everything down.
const (
	// ReadyTimeout bounds WaitReady, a leader election and a restart.
	ReadyTimeout = 30 * time.Second
	// DialTimeout is the clients' dial timeout.
	DialTimeout = 5 * time.Second
	// pollInterval is the pause between two checks of a condition.
	pollInterval = 10 * time.Millisecond
	// electionTicks is the election timeout in ticks (etcd's ratio).
	electionTicks = 10
)

// LogEnv names the environment variable that turns the nodes' logs on
// (debug, info, warn or error; to stderr). Unset, nodes are quiet.
const LogEnv = "TESSERA_TESTCLUSTER_LOG"

// Cluster is a running test cluster.
type Cluster struct {
	t    testing.TB
	opts Options
	dir  string
	// initialCluster is --initial-cluster, the same for every start.
	initialCluster string

	mu struct {
		sync.Mutex
		nodes  []*node
		closed bool
	}
}

// node is one node's identity (fixed for the cluster's life) and its
// current server (nil while stopped).
type node struct {
	name       string
	dataDir    string
	clientAddr string
	peerAddr   string
	srv        *server.Server
}

// Start starts a cluster and registers its shutdown with t.Cleanup. It
// returns once every node serves; leaders may still be being elected (see
// WaitReady).
func Start(t testing.TB, opts Options) *Cluster {
	t.Helper()
	if opts.Nodes == 0 {
		opts.Nodes = 3
	}
	if opts.Tick == 0 {
		opts.Tick = 20 * time.Millisecond
	}
	c := &Cluster{t: t, opts: opts, dir: t.TempDir()}
	t.Cleanup(c.close)

	// Open every listener first: the peer URLs go into --initial-cluster.
	type lis struct{ client, peer net.Listener }
	listeners := make([]lis, opts.Nodes)
	var spec []string
	for i := range listeners {
		cl, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("testcluster: listen: %v", err)
		}
		pl, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			_ = cl.Close()
			t.Fatalf("testcluster: listen: %v", err)
		}
		listeners[i] = lis{cl, pl}
		n := &node{
			name:       fmt.Sprintf("node%d", i+1),
			clientAddr: cl.Addr().String(),
			peerAddr:   pl.Addr().String(),
		}
		n.dataDir = filepath.Join(c.dir, n.name)
		c.mu.nodes = append(c.mu.nodes, n)
		spec = append(spec, fmt.Sprintf("%s=%s://%s", n.name, c.opts.scheme(), n.peerAddr))
	}
	c.initialCluster = strings.Join(spec, ",")
	for i, l := range listeners {
		srv, err := c.startNode(c.mu.nodes[i], l.client, l.peer)
		if err != nil {
			for _, rest := range listeners[i:] {
				_ = rest.client.Close()
				_ = rest.peer.Close()
			}
			t.Fatalf("testcluster: start %s: %v", c.mu.nodes[i].name, err)
		}
		c.mu.nodes[i].srv = srv
	}
	return c
}

// startNode starts n's server on the given listeners.
func (c *Cluster) startNode(n *node, client, peer net.Listener) (*server.Server, error) {
	cfg := server.DefaultConfig()
	cfg.Name = n.name
	cfg.DataDir = n.dataDir
	clientURL, peerURL := c.opts.scheme()+"://"+n.clientAddr, c.opts.scheme()+"://"+n.peerAddr
	cfg.ListenClientURLs, cfg.AdvertiseClientURLs = []string{clientURL}, []string{clientURL}
	cfg.ListenPeerURLs, cfg.InitialAdvertisePeerURLs = []string{peerURL}, []string{peerURL}
	cfg.InitialCluster = c.initialCluster
	cfg.InitialSplitKeys = c.opts.SplitKeys
	cfg.ClientListener, cfg.PeerListener = client, peer
	cfg.TickInterval = c.opts.Tick
	cfg.ElectionTicks = electionTicks
	cfg.Logger = nodeLogger()
	if c.opts.Configure != nil {
		c.opts.Configure(&cfg)
	}
	return server.Start(cfg)
}

// nodeLogger returns the nodes' logger: nil (quiet) unless LogEnv is set.
func nodeLogger() *slog.Logger {
	v := os.Getenv(LogEnv)
	if v == "" {
		return nil
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(v)); err != nil {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

// close stops every running node (t.Cleanup).
func (c *Cluster) close() {
	c.mu.Lock()
	c.mu.closed = true
	nodes := slices.Clone(c.mu.nodes)
	c.mu.Unlock()
	var wg sync.WaitGroup
	for _, n := range nodes {
		if n.srv == nil {
			continue
		}
		wg.Add(1)
		go func(s *server.Server) {
			defer wg.Done()
			s.Close()
		}(n.srv)
	}
	wg.Wait()
	c.mu.Lock()
	for _, n := range c.mu.nodes {
		n.srv = nil
	}
	c.mu.Unlock()
}

// Size returns the number of nodes, running or not.
func (c *Cluster) Size() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.mu.nodes)
}

func (c *Cluster) node(i int) *node {
	c.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if i < 0 || i >= len(c.mu.nodes) {
		c.t.Fatalf("testcluster: no node %d (cluster of %d)", i, len(c.mu.nodes))
	}
	return c.mu.nodes[i]
}

// Node returns node i's server, nil while it is stopped.
func (c *Cluster) Node(i int) *server.Server {
	c.t.Helper()
	n := c.node(i)
	c.mu.Lock()
	defer c.mu.Unlock()
	return n.srv
}

// NodeID returns node i's raft node id (i+1).
func (c *Cluster) NodeID(i int) raftgroup.NodeID { return raftgroup.NodeID(i + 1) }

// Endpoints returns every node's client URL (stopped nodes included: they
// keep their addresses across restarts).
func (c *Cluster) Endpoints() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]string, len(c.mu.nodes))
	for i, n := range c.mu.nodes {
		out[i] = c.opts.scheme() + "://" + n.clientAddr
	}
	return out
}

// Endpoint returns node i's client URL.
func (c *Cluster) Endpoint(i int) string {
	c.t.Helper()
	return c.opts.scheme() + "://" + c.node(i).clientAddr
}

// Client returns an etcd client of every node's endpoint, closed when t
// ends.
func (c *Cluster) Client(t testing.TB) *clientv3.Client {
	t.Helper()
	return newClient(t, c.Endpoints())
}

// NodeClient returns an etcd client that talks to node i only, closed when
// t ends.
func (c *Cluster) NodeClient(t testing.TB, i int) *clientv3.Client {
	t.Helper()
	return newClient(t, []string{c.Endpoint(i)})
}

func newClient(t testing.TB, endpoints []string) *clientv3.Client {
	t.Helper()
	cli, err := dial(endpoints)
	if err != nil {
		t.Fatalf("testcluster: client of %v: %v", endpoints, err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	return cli
}

// dial returns a client of endpoints; the caller closes it.
func dial(endpoints []string) (*clientv3.Client, error) {
	return clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
		DialTimeout: DialTimeout,
		Logger:      zap.NewNop(),
		// Large values (the request size limit tests) need room above
		// the 2 MiB default on the client side too.
		MaxCallSendMsgSize: 16 << 20,
		MaxCallRecvMsgSize: 64 << 20,
	})
}

// Stop stops node i (a clean shutdown; its data stays).
func (c *Cluster) Stop(i int) {
	c.t.Helper()
	n := c.node(i)
	c.mu.Lock()
	srv := n.srv
	n.srv = nil
	c.mu.Unlock()
	if srv == nil {
		c.t.Fatalf("testcluster: Stop(%d): node is not running", i)
	}
	srv.Close()
}

// Restart stops node i if it runs and starts it again on the same data
// directory and addresses. It does not wait for the node's ranges to elect
// leaders (see WaitReady).
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	n := c.node(i)
	c.mu.Lock()
	srv := n.srv
	n.srv = nil
	c.mu.Unlock()
	if srv != nil {
		srv.Close()
	}
	client := c.relisten(n.clientAddr)
	peer := c.relisten(n.peerAddr)
	srv, err := c.startNode(n, client, peer)
	if err != nil {
		_ = client.Close()
		_ = peer.Close()
		c.t.Fatalf("testcluster: restart %s: %v", n.name, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mu.closed {
		srv.Close()
		c.t.Fatalf("testcluster: restart %s after the cluster closed", n.name)
	}
	n.srv = srv
}

// relisten listens on addr again; the port was just released, so retry
// briefly in case the kernel has not let it go yet.
func (c *Cluster) relisten(addr string) net.Listener {
	c.t.Helper()
	deadline := time.Now().Add(ReadyTimeout)
	for {
		l, err := net.Listen("tcp", addr)
		if err == nil {
			return l
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("testcluster: listen on %s again: %v", addr, err)
		}
		time.Sleep(pollInterval)
	}
}

// running returns the indexes of the running nodes and their servers.
func (c *Cluster) running() ([]int, []*server.Server) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var idx []int
	var srvs []*server.Server
	for i, n := range c.mu.nodes {
		if n.srv != nil {
			idx = append(idx, i)
			srvs = append(srvs, n.srv)
		}
	}
	return idx, srvs
}

// errNoLeader says that no running node leads a group.
var errNoLeader = errors.New("testcluster: no leader")

// leaderNow returns the index of the node that leads group id now: a running
// node that is leader in the highest term any running replica knows of.
func (c *Cluster) leaderNow(id raftgroup.GroupID) (int, error) {
	idx, srvs := c.running()
	best, bestTerm := -1, uint64(0)
	var maxTerm uint64
	found := false
	for k, s := range srvs {
		st, err := s.Host().Status(id)
		if err != nil {
			continue
		}
		found = true
		maxTerm = max(maxTerm, st.Term)
		if st.IsLeader && st.Term >= bestTerm {
			best, bestTerm = idx[k], st.Term
		}
	}
	switch {
	case !found:
		return -1, fmt.Errorf("testcluster: no running node holds group %d", id)
	case best < 0 || bestTerm < maxTerm:
		return -1, errNoLeader
	}
	return best, nil
}

// Leader waits until range rangeID (1 is the meta group) has a leader among
// the running nodes and returns its index.
func (c *Cluster) Leader(rangeID uint64) int {
	c.t.Helper()
	deadline := time.Now().Add(ReadyTimeout)
	for {
		i, err := c.leaderNow(raftgroup.GroupID(rangeID))
		if err == nil {
			return i
		}
		if !errors.Is(err, errNoLeader) || time.Now().After(deadline) {
			c.t.Fatalf("testcluster: leader of range %d: %v", rangeID, err)
		}
		time.Sleep(pollInterval)
	}
}

// TransferLeader moves the leadership of range rangeID to node toIndex and
// waits until that node leads. Raft may drop a transfer (an election under
// way, a slow follower), so it asks again until the deadline.
func (c *Cluster) TransferLeader(rangeID uint64, toIndex int) {
	c.t.Helper()
	to := c.NodeID(toIndex)
	id := raftgroup.GroupID(rangeID)
	deadline := time.Now().Add(ReadyTimeout)
	var lastAsk time.Time
	for {
		l := c.Leader(rangeID)
		if l == toIndex {
			return
		}
		// Ask once per election timeout: a transfer in progress needs that
		// long to finish or be abandoned.
		if time.Since(lastAsk) > time.Duration(electionTicks)*c.opts.Tick {
			if s := c.Node(l); s != nil {
				// A NotLeaderError means leadership moved meanwhile: retry.
				_ = s.Host().TransferLeader(id, to)
			}
			lastAsk = time.Now()
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("testcluster: transfer leadership of range %d to node %d: still led by node %d", rangeID, toIndex, l)
		}
		time.Sleep(pollInterval)
	}
}

// Groups returns the raft groups (ranges, the meta group included) that the
// running nodes hold, sorted.
func (c *Cluster) Groups() []uint64 {
	_, srvs := c.running()
	seen := map[uint64]bool{}
	var out []uint64
	for _, s := range srvs {
		for _, g := range s.Host().Groups() {
			if !seen[uint64(g)] {
				seen[uint64(g)] = true
				out = append(out, uint64(g))
			}
		}
	}
	slices.Sort(out)
	return out
}

// WaitReady waits until the cluster serves: every group has a leader, and
// every running node answers /health and a linearizable read of the whole
// keyspace (which touches every range and the TSO).
func (c *Cluster) WaitReady(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(ReadyTimeout)
	for _, g := range c.Groups() {
		for {
			_, err := c.leaderNow(raftgroup.GroupID(g))
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("testcluster: not ready: range %d: %v", g, err)
			}
			time.Sleep(pollInterval)
		}
	}
	idx, _ := c.running()
	httpc := &http.Client{Timeout: 5 * time.Second}
	defer httpc.CloseIdleConnections()
	for _, i := range idx {
		cli, err := dial([]string{c.Endpoint(i)})
		if err != nil {
			t.Fatalf("testcluster: client of node %d: %v", i, err)
		}
		for {
			if err = c.checkNode(httpc, cli, i); err == nil {
				break
			}
			if time.Now().After(deadline) {
				_ = cli.Close()
				t.Fatalf("testcluster: not ready: node %d: %v", i, err)
			}
			time.Sleep(pollInterval)
		}
		_ = cli.Close()
	}
}

// checkNode asks node i's /health and reads every key through it.
func (c *Cluster) checkNode(httpc *http.Client, cli *clientv3.Client, i int) error {
	resp, err := httpc.Get(c.Endpoint(i) + "/health")
	if err != nil {
		return err
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("/health: %s", resp.Status)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = cli.Get(ctx, "\x00", clientv3.WithFromKey(), clientv3.WithCountOnly())
	return err
}
