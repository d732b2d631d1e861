package differential

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

var (
	flagSeeds = flag.Int("differential.seeds", 0, "number of seeds per differential test (0: the default)")
	flagOps   = flag.Int("differential.ops", 0, "operations per seed (0: the default)")
)

// seedsAndOps returns the seeds (from first) and the number of operations
// for a differential test.
func seedsAndOps(first int64) ([]int64, int) {
	n, ops := 6, 1000
	if testing.Short() {
		n, ops = 2, 300
	}
	if *flagSeeds > 0 {
		n = *flagSeeds
	}
	if *flagOps > 0 {
		ops = *flagOps
	}
	var seeds []int64
	for i := range int64(n) {
		seeds = append(seeds, first+i)
	}
	return seeds, ops
}

// etcdBinary is the etcd to compare against; TESSERA_ETCD overrides it.
func etcdBinary() string {
	if p := os.Getenv("TESSERA_ETCD"); p != "" {
		return p
	}
	return "/usr/bin/etcd"
}

// TestDifferentialEtcdVsEtcd runs the harness against two independent etcd
// servers: any difference is a bug of the harness (a nondeterministic
// workload or a wrong normalization), which is what this test is for.
func TestDifferentialEtcdVsEtcd(t *testing.T) {
	bin := etcdBinary()
	if _, err := os.Stat(bin); err != nil {
		t.Skipf("no etcd binary at %s (set TESSERA_ETCD): %v", bin, err)
	}
	a := startEtcd(t, bin, "a")
	b := startEtcd(t, bin, "b")
	seeds, nOps := seedsAndOps(1)
	for _, seed := range seeds {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			Run(t, seed, a, b, nOps)
		})
	}
	// B's revisions with gaps, as Tessera's: the revision mapping at work.
	for _, seed := range seeds[:min(2, len(seeds))] {
		t.Run(fmt.Sprintf("seed=%d,gaps", seed+100), func(t *testing.T) {
			RunOptions(t, a, b, Options{Seed: seed + 100, NOps: nOps, Leases: true, Compact: true, noiseB: true})
		})
	}
}

// TestHarnessDetectsDivergence runs both sides of the harness against one
// server, so that every write happens twice: the harness must report it.
func TestHarnessDetectsDivergence(t *testing.T) {
	bin := etcdBinary()
	if _, err := os.Stat(bin); err != nil {
		t.Skipf("no etcd binary at %s (set TESSERA_ETCD): %v", bin, err)
	}
	a := startEtcd(t, bin, "a")
	rec := &recordingTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		RunOptions(rec, a, a, Options{Seed: 1, NOps: 200, Prefix: "diverge/"})
	}()
	<-done
	for i := len(rec.cleanups) - 1; i >= 0; i-- {
		rec.cleanups[i]()
	}
	if rec.fatal == "" {
		t.Fatal("the harness found no difference between a server and itself one write later")
	}
	t.Logf("reported as expected: %.300s", rec.fatal)
}

// recordingTB records a fatal failure instead of failing the test.
type recordingTB struct {
	testing.TB
	fatal    string
	cleanups []func()
}

func (r *recordingTB) Helper()                        {}
func (r *recordingTB) Cleanup(f func())               { r.cleanups = append(r.cleanups, f) }
func (r *recordingTB) Errorf(format string, a ...any) { r.Fatalf(format, a...) }
func (r *recordingTB) Fatalf(format string, a ...any) {
	if r.fatal == "" {
		r.fatal = fmt.Sprintf(format, a...)
	}
	runtime.Goexit()
}

// startEtcd starts a single-node etcd on free loopback ports in a temporary
// directory, waits until it is healthy, and returns a client. Cleanup kills
// exactly the started process.
func startEtcd(t *testing.T, bin, name string) *clientv3.Client {
	t.Helper()
	dir := t.TempDir()
	ports := freePorts(t, 2)
	clientURL := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", ports[1])
	logf, err := os.Create(filepath.Join(dir, "etcd.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin,
		"--name", name,
		"--data-dir", filepath.Join(dir, "data"),
		"--listen-client-urls", clientURL,
		"--advertise-client-urls", clientURL,
		"--listen-peer-urls", peerURL,
		"--initial-advertise-peer-urls", peerURL,
		"--initial-cluster", name+"="+peerURL,
		"--initial-cluster-state", "new",
		"--initial-cluster-token", "differential-"+name,
		"--logger", "zap",
		"--log-outputs", "stderr",
	)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		select {
		case <-exited:
		default:
			_ = cmd.Process.Kill()
			<-exited
		}
		logf.Close()
		if t.Failed() {
			if out, err := os.ReadFile(logf.Name()); err == nil {
				t.Logf("etcd %s log (tail):\n%s", name, tail(out, 4000))
			}
		}
	})
	waitHealthy(t, clientURL, exited, 30*time.Second)

	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{clientURL}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatalf("client for etcd %s: %v", name, err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// waitHealthy polls etcd's /health until it reports healthy, the process
// exits, or the deadline passes.
func waitHealthy(t *testing.T, clientURL string, exited <-chan error, timeout time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, clientURL+"/health", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && bytes.Contains(body, []byte(`"health":"true"`)) {
				return
			}
			err = fmt.Errorf("status %d: %s", resp.StatusCode, body)
		}
		last = err
		select {
		case err := <-exited:
			t.Fatalf("etcd at %s exited before becoming healthy: %v", clientURL, err)
		case <-ctx.Done():
			t.Fatalf("etcd at %s not healthy after %v: %v", clientURL, timeout, errors.Join(ctx.Err(), last))
		case <-tick.C:
		}
	}
}

// freePorts returns n distinct free TCP ports on 127.0.0.1 (held open until
// all are chosen, so they differ).
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	var ls []net.Listener
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
