package system_test

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// etcdBinary returns the etcd to compare against: $TESSERA_ETCD, else the
// 3.7.3 build under /work/etcd373, else Debian's /usr/bin/etcd. The test
// is skipped when there is none.
func etcdBinary(t *testing.T) string {
	t.Helper()
	cands := []string{"/work/etcd373/etcd", "/usr/bin/etcd"}
	if p := os.Getenv("TESSERA_ETCD"); p != "" {
		cands = []string{p}
	}
	for _, p := range cands {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Skipf("no etcd binary (tried %v; set TESSERA_ETCD)", cands)
	return ""
}

// startEtcd starts a one-member etcd on free loopback ports in a temporary
// directory and returns its client URL once /health answers. Cleanup kills
// exactly the started process.
func startEtcd(t *testing.T, bin string, extra ...string) string {
	t.Helper()
	dir := t.TempDir()
	ports := freePorts(t, 2)
	clientURL := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", ports[1])
	logf, err := os.Create(filepath.Join(dir, "etcd.log"))
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{
		"--name", "etcd0",
		"--data-dir", filepath.Join(dir, "data"),
		"--listen-client-urls", clientURL,
		"--advertise-client-urls", clientURL,
		"--listen-peer-urls", peerURL,
		"--initial-advertise-peer-urls", peerURL,
		"--initial-cluster", "etcd0=" + peerURL,
		"--initial-cluster-state", "new",
		"--log-outputs", "stderr",
	}, extra...)
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
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
				t.Logf("etcd log (tail):\n%s", tail(out, 4000))
			}
		}
	})
	waitFor(t, startTimeout, "etcd healthy", func() error {
		select {
		case <-exited:
			t.Fatalf("etcd exited; log in %s", logf.Name())
		default:
		}
		resp, err := http.Get(clientURL + "/health")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		_, _ = b.ReadFrom(resp.Body)
		if resp.StatusCode != http.StatusOK || !bytes.Contains(b.Bytes(), []byte(`"health":"true"`)) {
			return fmt.Errorf("status %d: %s", resp.StatusCode, b.String())
		}
		return nil
	})
	return clientURL
}
