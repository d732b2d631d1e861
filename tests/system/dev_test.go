package system_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// consecutiveFreePorts finds n consecutive ports free right now.
func consecutiveFreePorts(t *testing.T, n int) int {
	t.Helper()
	for range 50 {
		base := freePorts(t, 1)[0]
		if base+n > 65535 {
			continue
		}
		var ls []net.Listener
		ok := true
		for p := base; p < base+n; p++ {
			l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
			if err != nil {
				ok = false
				break
			}
			ls = append(ls, l)
		}
		for _, l := range ls {
			l.Close()
		}
		if ok {
			return base
		}
	}
	t.Fatalf("no %d consecutive free ports", n)
	return 0
}

// startDev runs tessera dev with args and returns it with the endpoints of
// the export line it prints once ready.
func startDev(t *testing.T, env []string, args ...string) (*proc, string) {
	t.Helper()
	p := startProc(t, t.TempDir(), env, tesseraBin, append([]string{"dev"}, args...)...)
	m := p.stdout.await(t, regexp.MustCompile(`^  export E=(\S+)$`), startTimeout)
	return p, m[1]
}

func devPut(t *testing.T, endpoints, key, value string) {
	t.Helper()
	cli := devClient(t, endpoints)
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if _, err := cli.Put(ctx, key, value); err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
}

func devGet(t *testing.T, endpoints, key string) string {
	t.Helper()
	cli := devClient(t, endpoints)
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	resp, err := cli.Get(ctx, key)
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("get %s: %v, %v", key, resp, err)
	}
	return string(resp.Kvs[0].Value)
}

func devClient(t *testing.T, endpoints string) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: strings.Split(endpoints, ","), DialTimeout: opTimeout, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// tessera dev --base-port fixes the ports; --data-dir keeps the data on
// Ctrl-C, and a restart with it resumes on the same ports; --keep-data
// keeps a temporary dir; each says so.
func TestDevPortsAndData(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "cluster")
	var p *proc
	var endpoints string
	var base int
	for attempt := 1; ; attempt++ {
		base = consecutiveFreePorts(t, 4)
		p = startProc(t, t.TempDir(), nil, tesseraBin, "dev", "--nodes", "2", "--base-port", fmt.Sprint(base), "--data-dir", dataDir)
		select {
		case <-p.done:
			if attempt < 3 && strings.Contains(p.stderr.String(), "address already in use") {
				continue // taken between the check and the start
			}
			t.Fatalf("tessera dev exited: %v", p.err)
		default:
		}
		endpoints = p.stdout.await(t, regexp.MustCompile(`^  export E=(\S+)$`), startTimeout)[1]
		break
	}
	want := fmt.Sprintf("http://127.0.0.1:%d,http://127.0.0.1:%d", base, base+2)
	if endpoints != want {
		t.Fatalf("--base-port %d: endpoints %s, want %s", base, endpoints, want)
	}
	p.stdout.await(t, regexp.MustCompile(fmt.Sprintf(`^node2: client http://127\.0\.0\.1:%d  peer http://127\.0\.0\.1:%d  data %s$`, base+2, base+3, regexp.QuoteMeta(filepath.Join(dataDir, "node2")))), time.Second)
	p.stdout.await(t, regexp.MustCompile(`^data: `+regexp.QuoteMeta(dataDir)+` \(kept on exit\)$`), time.Second)
	devPut(t, endpoints, "kept", "yes")
	if code := p.stop(t, syscall.SIGINT); code != 0 {
		t.Fatalf("exit code %d after Ctrl-C", code)
	}
	p.stdout.await(t, regexp.MustCompile(`^data kept in `+regexp.QuoteMeta(dataDir)+` \(restart: tessera dev --data-dir `), time.Second)
	if p.stderr.String() != "" {
		t.Errorf("tessera dev logged:\n%s", p.stderr.String())
	}

	// The same --data-dir without --base-port: the same ports, the same data.
	p, again := startDev(t, nil, "--nodes", "2", "--data-dir", dataDir)
	if again != endpoints {
		t.Errorf("restarted on %s, first run on %s", again, endpoints)
	}
	if v := devGet(t, again, "kept"); v != "yes" {
		t.Errorf("after a restart: kept=%q", v)
	}
	if code := p.stop(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("exit code %d after SIGTERM", code)
	}
	if _, _, code := runCmd(t, tesseraBin, "dev", "--nodes", "3", "--data-dir", dataDir); code != 1 {
		t.Errorf("--nodes 3 on a 2-node data dir: exit code %d", code)
	}

	// --keep-data keeps the temporary directory.
	tmp := t.TempDir()
	p, _ = startDev(t, []string{"TMPDIR=" + tmp}, "--nodes", "1", "--keep-data")
	dir := p.stdout.await(t, regexp.MustCompile(`^data: (\S+) \(temporary, kept on exit: --keep-data\)$`), time.Second)[1]
	if !strings.HasPrefix(dir, tmp) {
		t.Errorf("temporary data dir %s not under TMPDIR %s", dir, tmp)
	}
	if code := p.stop(t, syscall.SIGINT); code != 0 {
		t.Fatalf("exit code %d after Ctrl-C", code)
	}
	p.stdout.await(t, regexp.MustCompile(`^data kept in `+regexp.QuoteMeta(dir)+` `), time.Second)
	if _, err := os.Stat(filepath.Join(dir, "node1", "engine")); err != nil {
		t.Errorf("--keep-data: %v", err)
	}
}
