package robustness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/tesseradb/tessera/proto/tesserapb"
	"github.com/tesseradb/tessera/shard"
	"github.com/tesseradb/tessera/tests/proccluster"
)

// Timeouts of the harness: generous, the machine may be small and busy.
const (
	startTimeout = 60 * time.Second // a (re)started node serves every range
	stopTimeout  = 20 * time.Second // a killed process is reaped
	rpcTimeout   = 5 * time.Second  // one admin RPC
	pollInterval = 50 * time.Millisecond
)

// cluster is a set of tessera processes started by one test through the
// shared process harness (tests/proccluster), their peer traffic through a
// Network of proxies.
type cluster struct {
	t     *testing.T
	log   *slog.Logger
	pc    *proccluster.Cluster
	nodes []*node
	net   *Network
	split []string

	// started holds the harness's nodes by index from the moment they are
	// created (before they start), so that the proxies can tell who dials.
	started struct {
		sync.Mutex
		nodes map[int]*proccluster.Node
	}
}

// node is one member of the harness's cluster, seen through the names this
// suite uses.
type node struct {
	*proccluster.Node
	idx       int
	name      string
	clientURL string
	peerAddr  string // where the process listens for peers
	proxyAddr string // what it advertises: its proxy
	logPath   string
}

// newCluster starts n nodes with the given split keys and waits until every
// range serves through every node. Everything it started is killed when
// the test ends. (The harness retries on new ports should a port chosen as
// free be taken meanwhile.)
func newCluster(t *testing.T, n int, split []string) *cluster {
	t.Helper()
	c := &cluster{t: t, split: split, log: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))}
	c.net = NewNetwork(c.log, c.pids)
	t.Cleanup(c.cleanup)
	cfg := proccluster.DefaultConfig("node", tesseraBin, filepath.Join(t.TempDir(), "cluster"))
	cfg.GossipPorts = true
	cfg.Nodes = n
	cfg.Keep = true // t.TempDir removes it; failed runs keep logs as artifacts first
	cfg.NodeName = func(i int) string { return fmt.Sprintf("node%d", i+1) }
	cfg.StartTimeout = startTimeout
	cfg.StopGrace = stopTimeout
	cfg.Logger = c.log
	cfg.ExtraArgs = []string{"--initial-split-keys", strings.Join(split, ","), "--log-level", "info"}
	// Every node advertises its proxy: partitions cut peer traffic there.
	cfg.AdvertisePeer = func(pn *proccluster.Node) (string, error) {
		u, err := url.Parse(pn.PeerURL)
		if err != nil {
			return "", err
		}
		c.started.Lock()
		if c.started.nodes == nil {
			c.started.nodes = map[int]*proccluster.Node{}
		}
		c.started.nodes[pn.Index] = pn
		c.started.Unlock()
		proxy, err := c.net.Listen(pn.Index, "127.0.0.1", u.Host)
		if err != nil {
			return "", err
		}
		return "http://" + proxy, nil
	}
	// Ready once /health answers; awaitServing then checks every range.
	cfg.Ready = func(ctx context.Context, pn *proccluster.Node) error {
		return healthOf(ctx, pn.Name, pn.ClientURL)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*startTimeout)
	defer cancel()
	pc, err := proccluster.Start(ctx, cfg)
	if err != nil {
		t.Fatalf("start cluster: %v", err)
	}
	c.pc = pc
	for _, pn := range pc.Nodes() {
		u, _ := url.Parse(pn.PeerURL)
		a, _ := url.Parse(pn.AdvertisePeerURL)
		c.nodes = append(c.nodes, &node{Node: pn, idx: pn.Index, name: pn.Name, clientURL: pn.ClientURL, peerAddr: u.Host, proxyAddr: a.Host, logPath: pn.LogPath})
	}
	if err := c.awaitServing(startTimeout); err != nil {
		t.Fatalf("start cluster: %v", err)
	}
	return c
}

// testWriter sends the harness's log lines to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// pids returns the running nodes' PIDs (PID -> node index).
func (c *cluster) pids() map[int]int {
	c.started.Lock()
	defer c.started.Unlock()
	out := map[int]int{}
	for i, n := range c.started.nodes {
		if p := n.Process(); p != nil && p.Running() {
			out[p.PID()] = i
		}
	}
	return out
}

// start starts nd's process again, with its flags.
func (c *cluster) start(nd *node) error {
	if err := nd.Start(); err != nil {
		return err
	}
	c.log.Info("started", "node", nd.name, "pid", nd.PID())
	return nil
}

// signal sends sig to nd's process group, if it runs, and returns the
// process.
func (c *cluster) signal(nd *node, sig syscall.Signal) *proccluster.Process {
	p, err := nd.Signal(sig)
	if err != nil {
		c.t.Errorf("signal %v to %s: %v", sig, nd.name, err)
	}
	return p
}

// kill sends SIGKILL to nd and reaps it.
func (c *cluster) kill(nd *node) error {
	pid := nd.PID()
	if err := nd.Kill(stopTimeout); err != nil {
		return err
	}
	if pid != 0 {
		c.log.Info("killed", "node", nd.name, "pid", pid)
	}
	return nil
}

func (c *cluster) killAll() {
	for _, nd := range c.nodes {
		if err := c.kill(nd); err != nil {
			c.t.Error(err)
		}
	}
}

// cleanup kills what still runs and, if the test failed, keeps the node
// logs as artifacts and shows their tails.
func (c *cluster) cleanup() {
	c.killAll()
	c.net.Close()
	if !c.t.Failed() {
		return
	}
	dir := artifactDir(c.t)
	for _, nd := range c.nodes {
		b, err := os.ReadFile(nd.logPath)
		if err != nil {
			continue
		}
		if dir != "" {
			_ = os.WriteFile(filepath.Join(dir, nd.name+".log"), b, 0o644)
		}
		c.t.Logf("--- %s log (tail) ---\n%s", nd.name, proccluster.Tail(nd.logPath, 4000))
	}
}

// artifactDir returns (creating it) the directory kept for the test's
// artifacts: under $ROBUSTNESS_ARTIFACTS if set, else a new temporary
// directory that is not removed. "" if none can be made.
func artifactDir(t *testing.T) string {
	artifactDirs.Lock()
	defer artifactDirs.Unlock()
	if d, ok := artifactDirs.m[t.Name()]; ok {
		return d
	}
	name := strings.NewReplacer("/", "_", " ", "_").Replace(t.Name())
	var dir string
	var err error
	if root := os.Getenv("ROBUSTNESS_ARTIFACTS"); root != "" {
		dir = filepath.Join(root, name)
		err = os.MkdirAll(dir, 0o755)
	} else {
		dir, err = os.MkdirTemp("", "tessera-robustness-"+name+"-")
	}
	if err != nil {
		t.Logf("artifacts: %v", err)
		return ""
	}
	t.Logf("artifacts kept in %s", dir)
	artifactDirs.m[t.Name()] = dir
	return dir
}

var artifactDirs = struct {
	sync.Mutex
	m map[string]string
}{m: map[string]string{}}

// endpoints returns every node's client URL.
func (c *cluster) endpoints() []string {
	var out []string
	for _, nd := range c.nodes {
		out = append(out, nd.clientURL)
	}
	return out
}

// client returns a client of every node, closed when the test ends.
func (c *cluster) client() *clientv3.Client {
	c.t.Helper()
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   c.endpoints(),
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		c.t.Fatalf("client: %v", err)
	}
	c.t.Cleanup(func() { cli.Close() })
	return cli
}

// awaitServing waits until every node is running, reports healthy and
// answers a linearizable read of every data range (/health reads one range).
func (c *cluster) awaitServing(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	ranges, err := c.dataRanges(deadline)
	if err != nil {
		return err
	}
	for _, nd := range c.nodes {
		cli, err := clientv3.New(clientv3.Config{Endpoints: []string{nd.clientURL}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			return fmt.Errorf("client of %s: %w", nd.name, err)
		}
		for _, d := range ranges {
			key := string(d.GetStartKey()) + "\x00readiness"
			err := poll(deadline, func() error {
				if err := nd.exited(); err != nil {
					return err
				}
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				defer cancel()
				_, err := cli.Get(ctx, key)
				return err
			})
			if err != nil {
				cli.Close()
				return fmt.Errorf("range %d through %s: %w", d.GetRangeId(), nd.name, err)
			}
		}
		cli.Close()
	}
	return nil
}

// exited returns an error if nd is not running.
func (nd *node) exited() error { return nd.Exited() }

// poll calls check every pollInterval until it returns nil or the deadline
// passes, then returns its last error.
func poll(deadline time.Time, check func() error) error {
	for {
		err := check()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		<-time.After(pollInterval)
	}
}

// internal returns an Internal client of nd's peer port itself (not its
// proxy: the harness is never partitioned) and a function to close it.
func (nd *node) internal() (tesserapb.InternalClient, func(), error) {
	conn, err := grpc.NewClient(nd.peerAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, nil, fmt.Errorf("dial %s: %w", nd.name, err)
	}
	return tesserapb.NewInternalClient(conn), func() { conn.Close() }, nil
}

// status asks nd for its replicas.
func (nd *node) status() (*tesserapb.RangesResponse, error) {
	ic, done, err := nd.internal()
	if err != nil {
		return nil, err
	}
	defer done()
	ctx, cancel := context.WithTimeout(context.Background(), rpcTimeout)
	defer cancel()
	resp, err := ic.Ranges(ctx, &tesserapb.RangesRequest{})
	if err != nil {
		return nil, fmt.Errorf("ranges of %s: %w", nd.name, err)
	}
	return resp, nil
}

// dataRanges returns the data ranges' descriptors in key order, gathered
// from every node (with more than three nodes none holds them all); it
// polls until they cover the keyspace without gaps.
func (c *cluster) dataRanges(deadline time.Time) ([]*tesserapb.RangeDescriptor, error) {
	var out []*tesserapb.RangeDescriptor
	err := poll(deadline, func() error {
		byID := map[uint64]*tesserapb.RangeDescriptor{}
		var errs []error
		for _, nd := range c.nodes {
			resp, err := nd.status()
			if err != nil {
				errs = append(errs, err)
				continue
			}
			for _, r := range resp.GetRanges() {
				if !r.GetIsMeta() {
					byID[r.GetRangeDescriptor().GetRangeId()] = r.GetRangeDescriptor()
				}
			}
		}
		out = out[:0]
		for _, d := range byID {
			out = append(out, d)
		}
		slices.SortFunc(out, func(a, b *tesserapb.RangeDescriptor) int { return bytes.Compare(a.GetStartKey(), b.GetStartKey()) })
		var prev []byte
		for i, d := range out {
			if (i == 0 && len(d.GetStartKey()) != 0) || (i > 0 && !bytes.Equal(d.GetStartKey(), prev)) {
				return errors.Join(append(errs, fmt.Errorf("no range known at %q", prev))...)
			}
			prev = d.GetEndKey()
		}
		if len(out) == 0 || len(prev) != 0 {
			return errors.Join(append(errs, fmt.Errorf("no range known at %q", prev))...)
		}
		return nil
	})
	return out, err
}

// leaders returns, for every group (the meta group is range 1), its
// replicas and the leader as most running nodes see it (0: none known).
func (c *cluster) leaders() (map[uint64]groupInfo, error) {
	out := map[uint64]groupInfo{}
	votes := map[uint64]map[uint64]int{}
	for _, nd := range c.nodes {
		if nd.exited() != nil {
			continue
		}
		resp, err := nd.status()
		if err != nil {
			continue // stopped or partitioned nodes do not answer
		}
		for _, r := range resp.GetRanges() {
			id := r.GetRangeDescriptor().GetRangeId()
			out[id] = groupInfo{id: id, meta: r.GetIsMeta(), replicas: replicaNodes(r.GetRangeDescriptor())}
			if votes[id] == nil {
				votes[id] = map[uint64]int{}
			}
			if r.GetLeaderNode() != 0 {
				votes[id][r.GetLeaderNode()]++
			}
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no node reports its ranges")
	}
	for id, g := range out {
		best := 0
		for l, n := range votes[id] {
			if n > best {
				g.leader, best = l, n
			}
		}
		out[id] = g
	}
	return out, nil
}

type groupInfo struct {
	id       uint64
	meta     bool
	replicas []uint64 // node ids (index+1)
	leader   uint64   // node id, 0 if unknown
}

// metaLeader returns the node leading the meta group, or nil.
func (c *cluster) metaLeader() *node {
	gs, err := c.leaders()
	if err != nil {
		return nil
	}
	for _, g := range gs {
		if g.meta && g.leader != 0 && int(g.leader) <= len(c.nodes) {
			return c.nodes[g.leader-1]
		}
	}
	return nil
}

// health asks nd's /health once.
func (nd *node) health() error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	return healthOf(ctx, nd.name, nd.clientURL)
}

// healthOf asks a node's /health once.
func healthOf(ctx context.Context, name, clientURL string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, clientURL+"/health", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s /health: %d %s", name, resp.StatusCode, bytes.TrimSpace(body))
	}
	return nil
}

// clientHost returns host:port of nd's client URL.
func (nd *node) clientHost() string {
	u, _ := url.Parse(nd.clientURL)
	return u.Host
}

// replicaNodes returns the node ids holding a replica of d.
func replicaNodes(d *tesserapb.RangeDescriptor) []uint64 {
	var out []uint64
	for _, n := range shard.ReplicaNodes(d) {
		out = append(out, uint64(n))
	}
	return out
}
