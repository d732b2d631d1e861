package system_test

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/tesseradb/tessera/proto/tesserapb"
	"github.com/tesseradb/tessera/tests/proccluster"
)

// Timeouts of the harness. The machine running the tests may be small and
// busy, so they are generous; a healthy cluster meets them by far.
const (
	startTimeout = 60 * time.Second // a (re)started cluster becomes healthy
	stopTimeout  = 20 * time.Second // a killed process is reaped
	opTimeout    = 10 * time.Second // one client request
	pollInterval = 50 * time.Millisecond
)

// clusterConfig describes a cluster to start.
type clusterConfig struct {
	nodes     int
	splitKeys []string
	// prepare, if set, runs for each node before any starts, once its flags
	// are set: it may add flags or set up the data dir (a cleanup it
	// registers runs after the processes are killed).
	prepare func(n *node)
	// clientTLS and peerTLS, if set, make the client and peer URLs https;
	// the harness's own clients (health, clientv3, Ranges) dial with them.
	// prepare adds the server's TLS flags (tls_test.go).
	clientTLS, peerTLS *tls.Config
	// binary, if set, is run instead of tessera (etcd, to record its
	// answers: it takes the same flags but --initial-split-keys).
	binary string
}

// cluster is a set of tessera processes started by one test through the
// shared process harness (tests/proccluster).
type cluster struct {
	t     *testing.T
	pc    *proccluster.Cluster
	nodes []*node
}

// node is one member, seen through the names these tests use; its process
// is the harness's.
type node struct {
	*proccluster.Node
	t         *testing.T
	name      string
	id        uint64 // 1..N in --initial-cluster order
	clientURL string
	peerURL   string
	dataDir   string
	logPath   string
	args      []string
	// clientTLS and peerTLS are how the harness dials the node (nil:
	// plaintext).
	clientTLS, peerTLS *tls.Config
}

func wrapNode(t *testing.T, pn *proccluster.Node, cfg clusterConfig) *node {
	return &node{Node: pn, t: t, name: pn.Name, id: pn.ID, clientURL: pn.ClientURL, peerURL: pn.PeerURL, dataDir: pn.DataDir, logPath: pn.LogPath, args: pn.Args,
		clientTLS: cfg.clientTLS, peerTLS: cfg.peerTLS}
}

// newCluster starts a cluster and waits until every node is healthy and
// every range serves. Its processes are killed when the test ends; if the
// test failed, the tail of every node's log goes to the test log.
func newCluster(t *testing.T, cfg clusterConfig) *cluster {
	t.Helper()
	c := &cluster{t: t}
	pcfg := proccluster.DefaultConfig("node", cmp.Or(cfg.binary, tesseraBin), filepath.Join(t.TempDir(), "cluster"))
	pcfg.ClientTLS, pcfg.PeerTLS = cfg.clientTLS, cfg.peerTLS
	pcfg.Nodes = cfg.nodes
	pcfg.Keep = true // t.TempDir removes it after the logs were shown
	pcfg.NodeName = func(i int) string { return fmt.Sprintf("node%d", i+1) }
	pcfg.StartTimeout = startTimeout
	pcfg.StopGrace = stopTimeout
	pcfg.ExtraArgs = []string{"--log-level", "warn"}
	pcfg.GossipPorts = cfg.binary == "" // Tessera's own flag
	if len(cfg.splitKeys) > 0 {
		pcfg.ExtraArgs = append(pcfg.ExtraArgs, "--initial-split-keys", strings.Join(cfg.splitKeys, ","))
	}
	wrapped := map[int]*node{}
	pcfg.Prepare = func(pn *proccluster.Node) error {
		n := wrapNode(t, pn, cfg)
		if cfg.prepare != nil {
			cfg.prepare(n)
			pn.Args, pn.DataDir = n.args, n.dataDir
		}
		wrapped[pn.Index] = n
		return nil
	}
	pcfg.Ready = func(ctx context.Context, pn *proccluster.Node) error {
		body, err := wrapNode(t, pn, cfg).health()
		if err == nil && body.Health != "true" {
			err = fmt.Errorf("unhealthy: %q", body.Reason)
		}
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*startTimeout)
	defer cancel()
	pc, err := proccluster.Start(ctx, pcfg) // on failure it stops what it started
	if err != nil {
		t.Fatalf("start cluster: %v", err)
	}
	c.pc = pc
	// Registered after prepare's cleanups, so it runs before them: the
	// processes die before, say, their data dir's tmpfs is unmounted.
	t.Cleanup(c.cleanup)
	for _, pn := range pc.Nodes() {
		c.nodes = append(c.nodes, wrapped[pn.Index])
	}
	if cfg.binary == "" {
		c.awaitRangesServe()
	}
	return c
}

// cleanup kills what is still running and shows the logs of a failed test.
func (c *cluster) cleanup() {
	c.killAll()
	if c.t.Failed() {
		c.logTails()
	}
}

func (c *cluster) logTails() {
	for _, n := range c.nodes {
		c.t.Logf("--- %s log (tail) ---\n%s", n.name, proccluster.Tail(n.logPath, 6000))
	}
}

func (c *cluster) endpoints() []string {
	var out []string
	for _, n := range c.nodes {
		out = append(out, n.clientURL)
	}
	return out
}

// killAll sends SIGKILL to every running process at once, then reaps them.
func (c *cluster) killAll() {
	if c.pc == nil {
		return
	}
	if err := c.pc.KillAll(stopTimeout); err != nil {
		c.t.Error(err)
	}
}

// startAll starts every node (none may be running) and waits until all are
// healthy; they need each other for quorum, so all start before any wait.
func (c *cluster) startAll() {
	c.t.Helper()
	for _, n := range c.nodes {
		n.start()
	}
	c.awaitHealthy()
}

// awaitHealthy waits until every node is healthy and every range serves.
func (c *cluster) awaitHealthy() {
	c.t.Helper()
	for _, n := range c.nodes {
		if err := n.awaitHealthy(startTimeout); err != nil {
			c.t.Fatal(err)
		}
	}
	c.awaitRangesServe()
}

// awaitRangesServe waits until every data range answers a linearizable
// read through every node (/health reads one range only; the others may
// still be electing their leaders).
func (c *cluster) awaitRangesServe() {
	c.t.Helper()
	for _, n := range c.nodes {
		cli := n.client()
		for _, d := range dataRanges(c.t, c.nodes[0]) {
			key := string(d.GetStartKey()) + "\x00readiness"
			waitFor(c.t, startTimeout, fmt.Sprintf("range %d serving through %s", d.GetRangeId(), n.name), func() error {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				defer cancel()
				_, err := cli.Get(ctx, key)
				return err
			})
		}
	}
}

// client returns a client of all nodes, closed when the test ends.
func (c *cluster) client() *clientv3.Client {
	c.t.Helper()
	return newTLSClient(c.t, c.nodes[0].clientTLS, c.endpoints()...)
}

// start starts the node's process again with its flags.
func (n *node) start() {
	n.t.Helper()
	if err := n.Start(); err != nil {
		n.t.Fatal(err)
	}
}

// signal sends sig to the node's process, if it runs, and returns it.
func (n *node) signal(sig syscall.Signal) *proccluster.Process {
	p, err := n.Signal(sig)
	if err != nil {
		n.t.Errorf("signal %v to %s: %v", sig, n.name, err)
	}
	return p
}

// kill sends SIGKILL to the node's process and reaps it.
func (n *node) kill() {
	n.t.Helper()
	if err := n.Kill(stopTimeout); err != nil {
		n.t.Fatal(err)
	}
}

// sigterm sends SIGTERM to the node's process and returns a function that
// waits up to timeout for it to exit, returning its exit code and how long
// it took. If it did not exit in time, the code is -1: the process gets
// SIGQUIT (Go prints every goroutine's stack, which goes to the test log)
// and then SIGKILL.
func (n *node) sigterm() (wait func(timeout time.Duration) (code int, took time.Duration)) {
	n.t.Helper()
	start := time.Now()
	p := n.signal(syscall.SIGTERM)
	if p == nil {
		n.t.Fatalf("%s is not running", n.name)
	}
	return func(timeout time.Duration) (int, time.Duration) {
		defer n.Forget()
		if p.Wait(timeout) == nil {
			return p.ExitCode(), time.Since(start)
		}
		took := time.Since(start)
		var offset int64
		if fi, err := os.Stat(n.logPath); err == nil {
			offset = fi.Size()
		}
		_ = p.Signal(syscall.SIGQUIT)
		if p.Wait(stopTimeout) != nil {
			_ = p.Signal(syscall.SIGKILL)
			<-p.Done()
		}
		if b, err := os.ReadFile(n.logPath); err == nil && int64(len(b)) > offset {
			n.t.Logf("%s still running %v after SIGTERM; its goroutines at SIGQUIT:\n%s", n.name, took.Round(time.Millisecond), b[offset:])
		}
		return -1, took
	}
}

// awaitHealthy polls /health until the node reports healthy, its process
// exits, or the timeout passes.
func (n *node) awaitHealthy(timeout time.Duration) error {
	p := n.Process()
	if p == nil {
		return fmt.Errorf("%s is not running", n.name)
	}
	var last error
	deadline := time.Now().Add(timeout)
	for {
		body, err := n.health()
		if err == nil {
			if body.Health == "true" {
				return nil
			}
			err = fmt.Errorf("unhealthy: %q", body.Reason)
		}
		last = err
		if !p.Running() {
			return fmt.Errorf("%s exited before becoming healthy: %v (log %s)", n.name, p.Err(), n.logPath)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not healthy after %v: %v", n.name, timeout, last)
		}
		select {
		case <-p.Done():
		case <-time.After(pollInterval):
		}
	}
}

type healthBody struct {
	Health string `json:"health"`
	Reason string `json:"reason"`
}

// health asks the node's /health once.
func (n *node) health() (healthBody, error) {
	var body healthBody
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, n.clientURL+"/health", nil)
	if err != nil {
		return body, err
	}
	hc := http.DefaultClient
	if n.clientTLS != nil {
		hc = &http.Client{Transport: &http.Transport{TLSClientConfig: n.clientTLS}}
		defer hc.CloseIdleConnections()
	}
	resp, err := hc.Do(req)
	if err != nil {
		return body, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return body, err
	}
	if err := json.Unmarshal(raw, &body); err != nil {
		return body, fmt.Errorf("status %d, body %q: %v", resp.StatusCode, raw, err)
	}
	if (resp.StatusCode == http.StatusOK) != (body.Health == "true") {
		return body, fmt.Errorf("status %d with body %q", resp.StatusCode, raw)
	}
	return body, nil
}

// client returns a client of this node only, closed when the test ends.
func (n *node) client() *clientv3.Client {
	n.t.Helper()
	return newTLSClient(n.t, n.clientTLS, n.clientURL)
}

// ranges asks the node for its replicas (tesserapb.Internal/Ranges, served
// on the peer port only).
func (n *node) ranges() (*tesserapb.RangesResponse, error) {
	u, err := url.Parse(n.peerURL)
	if err != nil {
		return nil, err
	}
	creds := insecure.NewCredentials()
	if n.peerTLS != nil {
		creds = credentials.NewTLS(n.peerTLS)
	}
	conn, err := grpc.NewClient(u.Host, grpc.WithTransportCredentials(creds))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	return tesserapb.NewInternalClient(conn).Ranges(ctx, &tesserapb.RangesRequest{})
}

func newClient(t *testing.T, endpoints ...string) *clientv3.Client {
	t.Helper()
	return newTLSClient(t, nil, endpoints...)
}

// newTLSClient is newClient dialing with tlsConf (nil: plaintext).
func newTLSClient(t *testing.T, tlsConf *tls.Config, endpoints ...string) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{
		TLS:         tlsConf,
		Endpoints:   endpoints,
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		t.Fatalf("client of %v: %v", endpoints, err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// waitFor calls check every pollInterval until it returns nil or timeout
// passes; it then fails the test with check's last error.
func waitFor(t *testing.T, timeout time.Duration, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not done after %v: %v", what, timeout, err)
		}
		<-time.After(pollInterval)
	}
}

// freePorts returns n distinct TCP ports that were free on 127.0.0.1.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	ports, err := proccluster.FreePorts(n)
	if err != nil {
		t.Fatal(err)
	}
	return ports
}

// tail returns about the last max bytes of b, starting at a line.
func tail(b []byte, max int) string {
	if len(b) <= max {
		return string(b)
	}
	b = b[len(b)-max:]
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		b = b[i+1:]
	}
	return "...\n" + string(b)
}
