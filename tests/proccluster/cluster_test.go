package proccluster

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

func TestFreePortsAreDistinct(t *testing.T) {
	ports, err := FreePorts(20)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for _, p := range ports {
		if p <= 0 || seen[p] {
			t.Fatalf("ports %v: bad or repeated %d", ports, p)
		}
		seen[p] = true
	}
}

// gone reports whether pid no longer names a live process (absent, or a
// zombie waiting for a reaper that is not us).
func gone(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return true
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	// The state follows the command name in parentheses.
	s := string(b)
	rest := s[strings.LastIndexByte(s, ')')+1:]
	return strings.HasPrefix(strings.TrimSpace(rest), "Z")
}

func etcdBin(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("etcd")
	if err != nil {
		t.Skip("etcd is not installed (apt-get install etcd-server); skipping the run against a real etcd")
	}
	return p
}

func TestStartStopThreeNodeEtcd(t *testing.T) {
	bin := etcdBin(t)
	dir := filepath.Join(t.TempDir(), "etcd")
	cfg := DefaultConfig("etcd", bin, dir)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			_ = c.Stop()
		}
	}()
	if len(c.Endpoints()) != 3 {
		t.Fatalf("endpoints %v, want 3", c.Endpoints())
	}

	cli, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	members, err := cli.MemberList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(members.Members) != 3 {
		t.Errorf("%d members, want 3", len(members.Members))
	}
	// Each node's data is in the root, and fsync is on (no unsafe flag).
	for _, n := range c.Nodes() {
		if !strings.HasPrefix(n.DataDir, dir) {
			t.Errorf("data dir %s outside %s", n.DataDir, dir)
		}
		cmdline, _ := os.ReadFile("/proc/" + strconv.Itoa(n.PID()) + "/cmdline")
		if strings.Contains(string(cmdline), "unsafe") {
			t.Errorf("node %s started with %q", n.Name, cmdline)
		}
	}

	var pids []int
	for _, n := range c.Nodes() {
		pids = append(pids, n.PID())
	}
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	stopped = true
	for _, pid := range pids {
		if !gone(pid) {
			t.Errorf("pid %d still running after Stop", pid)
		}
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("data root %s still there after Stop: %v", dir, err)
	}
	if err := c.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

func TestStartReportsAnExitingBinary(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "bad")
	script := filepath.Join(t.TempDir(), "server")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho \"refusing flags: $*\" >&2\nexit 3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig("tessera", script, dir)
	cfg.StartTimeout = 30 * time.Second
	start := time.Now()
	_, err := Start(context.Background(), cfg)
	if err == nil {
		t.Fatal("a server that exits at once started")
	}
	if !strings.Contains(err.Error(), "exited while starting") || !strings.Contains(err.Error(), "refusing flags: --name tessera-1") {
		t.Errorf("error does not say what happened: %v", err)
	}
	if time.Since(start) > 20*time.Second {
		t.Errorf("took %s to notice the exit", time.Since(start))
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("data root left behind: %v", err)
	}
}

func TestStartMissingBinary(t *testing.T) {
	cfg := DefaultConfig("tessera", filepath.Join(t.TempDir(), "no-such-binary"), filepath.Join(t.TempDir(), "x"))
	if _, err := Start(context.Background(), cfg); err == nil {
		t.Fatal("a missing binary started")
	}
}

// A process that ignores SIGTERM gets SIGKILL after the grace period, and
// so does the child it forked (the whole group is ours).
func TestStopEscalatesToKillForTheGroup(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "child.pid")
	p, err := startProcess("/bin/sh", []string{"-c",
		`trap "" TERM; sleep 1000 & echo $! > ` + pidFile + `.tmp; mv ` + pidFile + `.tmp ` + pidFile + `; wait`},
		filepath.Join(dir, "log"))
	if err != nil {
		t.Fatal(err)
	}
	var child int
	if !poll(10*time.Second, func() bool {
		b, err := os.ReadFile(pidFile)
		if err == nil {
			child, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		}
		return child != 0
	}) {
		_ = p.stop(time.Millisecond)
		t.Fatal("the shell did not report its child")
	}
	if err := p.stop(200 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if !gone(p.PID()) {
		t.Errorf("leader %d survived", p.PID())
	}
	if !poll(10*time.Second, func() bool { return gone(child) }) {
		t.Fatalf("child %d survived its group's SIGKILL", child)
	}
}

// poll checks cond every few milliseconds until it holds or timeout passes.
func poll(timeout time.Duration, cond func() bool) bool {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline.C:
			return cond()
		case <-tick.C:
		}
	}
	return true
}

func TestEnsureEtcdFindsInstalled(t *testing.T) {
	bin := etcdBin(t)
	got, err := EnsureEtcd(context.Background(), "etcd", false, nil)
	if err != nil || got != bin {
		t.Errorf("EnsureEtcd = %q, %v; want %q", got, err, bin)
	}
	if _, err := EnsureEtcd(context.Background(), filepath.Join(t.TempDir(), "etcd"), true, nil); err == nil {
		t.Error("a missing explicit path was accepted")
	}
	if v := Version(context.Background(), bin); !strings.Contains(v, "etcd Version") {
		t.Errorf("Version = %q", v)
	}
}
