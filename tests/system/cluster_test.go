package system_test

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/tesseradb/tessera/proto/tesserapb"
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

// cluster is a set of tessera processes started by one test.
type cluster struct {
	t     *testing.T
	nodes []*node
}

// node is one member: its fixed flags and its current process, if any.
type node struct {
	t         *testing.T
	name      string
	id        uint64 // 1..N in --initial-cluster order
	clientURL string
	peerURL   string
	dataDir   string
	logPath   string
	args      []string
	bin       string // the binary run: tesseraBin unless the test chose etcd
	// clientTLS and peerTLS are how the harness dials the node (nil:
	// plaintext).
	clientTLS, peerTLS *tls.Config

	mu   sync.Mutex
	proc *process // nil when not running
}

// process is one run of the tessera binary.
type process struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has been reaped
	err  error         // cmd.Wait's result; read after done
}

// newCluster starts a cluster and waits until every node is healthy. Its
// processes are killed when the test ends; if the test failed, the tail of
// every node's log goes to the test log. Should a node fail to bind a port
// that was free a moment earlier (another process took it), the cluster is
// started again on new ports.
func newCluster(t *testing.T, cfg clusterConfig) *cluster {
	t.Helper()
	for attempt := 1; ; attempt++ {
		c, err := tryNewCluster(t, cfg)
		if err == nil {
			return c
		}
		if attempt == 3 || !errors.Is(err, errPortTaken) {
			t.Fatalf("start cluster: %v", err)
		}
		t.Logf("start cluster (attempt %d): %v; retrying on new ports", attempt, err)
	}
}

var errPortTaken = errors.New("address already in use")

func tryNewCluster(t *testing.T, cfg clusterConfig) (*cluster, error) {
	dir := t.TempDir()
	ports := freePorts(t, 2*cfg.nodes)
	c := &cluster{t: t}
	var initial []string
	clientScheme, peerScheme := "http", "http"
	if cfg.clientTLS != nil {
		clientScheme = "https"
	}
	if cfg.peerTLS != nil {
		peerScheme = "https"
	}
	for i := range cfg.nodes {
		n := &node{
			t:         t,
			name:      fmt.Sprintf("node%d", i+1),
			id:        uint64(i + 1),
			clientURL: fmt.Sprintf("%s://127.0.0.1:%d", clientScheme, ports[2*i]),
			peerURL:   fmt.Sprintf("%s://127.0.0.1:%d", peerScheme, ports[2*i+1]),
			clientTLS: cfg.clientTLS,
			peerTLS:   cfg.peerTLS,
			bin:       cmp.Or(cfg.binary, tesseraBin),
		}
		n.dataDir = filepath.Join(dir, n.name)
		n.logPath = filepath.Join(dir, n.name+".log")
		initial = append(initial, n.name+"="+n.peerURL)
		c.nodes = append(c.nodes, n)
	}
	for _, n := range c.nodes {
		n.args = []string{
			"--name", n.name,
			"--data-dir", n.dataDir,
			"--listen-client-urls", n.clientURL,
			"--advertise-client-urls", n.clientURL,
			"--listen-peer-urls", n.peerURL,
			"--initial-advertise-peer-urls", n.peerURL,
			"--initial-cluster", strings.Join(initial, ","),
			"--initial-cluster-state", "new",
			"--log-level", "warn",
		}
		if len(cfg.splitKeys) > 0 {
			n.args = append(n.args, "--initial-split-keys", strings.Join(cfg.splitKeys, ","))
		}
	}
	if cfg.prepare != nil {
		for _, n := range c.nodes {
			cfg.prepare(n)
		}
	}
	t.Cleanup(c.cleanup)
	for _, n := range c.nodes {
		n.start()
	}
	for _, n := range c.nodes {
		if err := n.awaitHealthy(startTimeout); err != nil {
			c.killAll()
			for _, m := range c.nodes {
				if log, _ := os.ReadFile(m.logPath); bytes.Contains(log, []byte(errPortTaken.Error())) {
					return nil, fmt.Errorf("%s: %w", m.name, errPortTaken)
				}
			}
			return nil, err // the cleanup shows the logs
		}
	}
	if cfg.binary == "" {
		c.awaitRangesServe()
	}
	return c, nil
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
		out, err := os.ReadFile(n.logPath)
		if err != nil {
			continue
		}
		c.t.Logf("--- %s log (tail) ---\n%s", n.name, tail(out, 6000))
	}
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

// endpoints returns every node's client URL.
func (c *cluster) endpoints() []string {
	var out []string
	for _, n := range c.nodes {
		out = append(out, n.clientURL)
	}
	return out
}

// killAll sends SIGKILL to every running process at once, then reaps them.
func (c *cluster) killAll() {
	var procs []*process
	for _, n := range c.nodes {
		if p := n.signal(syscall.SIGKILL); p != nil {
			procs = append(procs, p)
		}
	}
	for _, p := range procs {
		select {
		case <-p.done:
		case <-time.After(stopTimeout):
			c.t.Errorf("pid %d not reaped %v after SIGKILL", p.cmd.Process.Pid, stopTimeout)
		}
	}
	for _, n := range c.nodes {
		n.mu.Lock()
		n.proc = nil
		n.mu.Unlock()
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

// start starts the node's process with its flags; its output is appended
// to the node's log.
func (n *node) start() {
	n.t.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.proc != nil {
		n.t.Fatalf("%s is already running (pid %d)", n.name, n.proc.cmd.Process.Pid)
	}
	logf, err := os.OpenFile(n.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		n.t.Fatal(err)
	}
	fmt.Fprintf(logf, "=== %s: start %s %s\n", time.Now().Format(time.RFC3339Nano), n.bin, strings.Join(n.args, " "))
	cmd := exec.Command(n.bin, n.args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		n.t.Fatalf("start %s: %v", n.name, err)
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		fmt.Fprintf(logf, "=== %s: pid %d exited: %v\n", time.Now().Format(time.RFC3339Nano), cmd.Process.Pid, p.err)
		logf.Close()
		close(p.done)
	}()
	n.proc = p
}

// signal sends sig to the node's process, if it runs, and returns it.
func (n *node) signal(sig syscall.Signal) *process {
	n.mu.Lock()
	defer n.mu.Unlock()
	p := n.proc
	if p == nil {
		return nil
	}
	select {
	case <-p.done:
		return p
	default:
	}
	if err := p.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		n.t.Errorf("signal %v to %s (pid %d): %v", sig, n.name, p.cmd.Process.Pid, err)
	}
	return p
}

// kill sends SIGKILL to the node's process and reaps it.
func (n *node) kill() {
	n.t.Helper()
	p := n.signal(syscall.SIGKILL)
	if p == nil {
		return
	}
	select {
	case <-p.done:
	case <-time.After(stopTimeout):
		n.t.Fatalf("%s (pid %d) not reaped %v after SIGKILL", n.name, p.cmd.Process.Pid, stopTimeout)
	}
	n.mu.Lock()
	n.proc = nil
	n.mu.Unlock()
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
		defer func() {
			n.mu.Lock()
			n.proc = nil
			n.mu.Unlock()
		}()
		select {
		case <-p.done:
			return p.cmd.ProcessState.ExitCode(), time.Since(start)
		case <-time.After(timeout):
		}
		took := time.Since(start)
		var offset int64
		if fi, err := os.Stat(n.logPath); err == nil {
			offset = fi.Size()
		}
		_ = p.cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-p.done:
		case <-time.After(stopTimeout):
			_ = p.cmd.Process.Signal(syscall.SIGKILL)
			<-p.done
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
	n.mu.Lock()
	p := n.proc
	n.mu.Unlock()
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
		select {
		case <-p.done:
			return fmt.Errorf("%s exited before becoming healthy: %v (log %s)", n.name, p.err, n.logPath)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not healthy after %v: %v", n.name, timeout, last)
		}
		select {
		case <-p.done:
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
		Endpoints:   endpoints,
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
		TLS:         tlsConf,
	})
	if err != nil {
		t.Fatalf("client of %v: %v", endpoints, err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// freePorts returns n distinct TCP ports that were free on 127.0.0.1 (all
// held open until all are chosen, so that they differ).
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports
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
