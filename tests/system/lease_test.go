package system_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// etcdctlPath returns the etcdctl to run ($TESSERA_ETCDCTL, else
// Debian's), or skips the test.
func etcdctlPath(t *testing.T) string {
	bin := os.Getenv("TESSERA_ETCDCTL")
	if bin == "" {
		bin = "/usr/bin/etcdctl"
	}
	if _, err := os.Stat(bin); err != nil {
		t.Skipf("no etcdctl at %s (install Debian's etcd-client, as .ci/run does, or set TESSERA_ETCDCTL): %v", bin, err)
	}
	return bin
}

// TestEtcdctlLeaseLockElect: etcdctl lease grant/put --lease/timetolive
// --keys/list/keep-alive --once/revoke with keys on four ranges, etcdctl
// lock and etcdctl elect, unchanged, against real processes.
func TestEtcdctlLeaseLockElect(t *testing.T) {
	bin := etcdctlPath(t)
	c := newCluster(t, clusterConfig{nodes: 3, splitKeys: []string{"key/g", "key/n", "key/t"}})
	e := &etcdctl{t: t, bin: bin, endpoints: c.endpoints()}

	out := e.ok("lease", "grant", "60")
	m := regexp.MustCompile(`^lease ([0-9a-f]+) granted with TTL\(60s\)\n$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("lease grant: %q", out)
	}
	id := m[1]
	keys := []string{"key/apple", "key/hello", "key/orange", "key/zebra"} // one per range
	for _, k := range keys {
		e.expect("OK\n", "put", k, "v", "--lease="+id)
	}
	out = e.ok("lease", "timetolive", id, "--keys")
	want := regexp.MustCompile(`^lease ` + id + ` granted with TTL\(60s\), remaining\((5\d|60)s\), attached keys\(\[(.*)\]\)\n$`)
	if mm := want.FindStringSubmatch(out); mm == nil {
		t.Errorf("lease timetolive --keys: %q", out)
	} else if got := strings.Fields(mm[2]); !slices.Equal(sorted(got), keys) {
		t.Errorf("lease timetolive --keys: keys %q, want %q", got, keys)
	}
	if out := e.ok("lease", "list"); !strings.Contains(out, id+"\n") {
		t.Errorf("lease list: %q lacks %s", out, id)
	}
	e.expect("lease "+id+" keepalived with TTL(60)\n", "lease", "keep-alive", "--once", id)
	e.expect("lease "+id+" revoked\n", "lease", "revoke", id)
	e.expect("", "get", "key/", "--prefix")
	e.expectError("etcdserver: requested lease not found", "put", "key/x", "v", "--lease="+id)
	if r := e.run("", "lease", "revoke", id); r.code != 1 || !strings.Contains(r.stderr, "Error: failed to revoke lease (etcdserver: requested lease not found)") {
		t.Errorf("lease revoke of a revoked lease: %v", r)
	}
	e.expect("lease "+id+" already expired\n", "lease", "timetolive", id)

	// etcdctl lock runs a command while holding the lock.
	if out := e.ok("lock", "key/mylock", "echo", "locked"); out != "locked\n" {
		t.Errorf("etcdctl lock with a command: %q", out)
	}
	// etcdctl elect: a campaigner holds leadership until it is
	// interrupted (it then revokes its session's lease) and a second
	// campaigner, waiting meanwhile, wins.
	first := startEtcdctl(t, bin, c.endpoints(), "elect", "key/election", "p1")
	first.waitLine(t, "p1")
	listen := startEtcdctl(t, bin, c.endpoints(), "elect", "--listen", "key/election")
	listen.waitLine(t, "p1")
	second := startEtcdctl(t, bin, c.endpoints(), "elect", "key/election", "p2")
	// The second campaigner waits (its key is there) while the first leads.
	waitFor(t, startTimeout, "both campaigners' keys", func() error {
		if r := e.run("", "get", "key/election", "--prefix", "--print-value-only"); !strings.Contains(r.stdout, "p1\n") || !strings.Contains(r.stdout, "p2\n") {
			return fmt.Errorf("election keys: %v", r)
		}
		return nil
	})
	select {
	case l := <-second.lines:
		t.Fatalf("second campaigner printed %q while the first leads", l)
	default:
	}
	first.interrupt()
	waitFor(t, startTimeout, "the first campaigner's key to go", func() error {
		if r := e.run("", "get", "key/election", "--prefix", "--print-value-only"); strings.Contains(r.stdout, "p1") {
			return fmt.Errorf("election keys: %v", r)
		}
		return nil
	})
	second.waitLine(t, "p2")
	listen.waitLine(t, "p2")
	second.kill()
	listen.kill()
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// bgEtcdctl is an etcdctl process running in the background.
type bgEtcdctl struct {
	cmd   *exec.Cmd
	lines chan string
}

func startEtcdctl(t *testing.T, bin string, endpoints []string, args ...string) *bgEtcdctl {
	t.Helper()
	full := append([]string{"--endpoints=" + strings.Join(endpoints, ",")}, args...)
	cmd := exec.Command(bin, full...)
	cmd.Env = append(os.Environ(), "ETCDCTL_API=3")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start etcdctl %q: %v", args, err)
	}
	b := &bgEtcdctl{cmd: cmd, lines: make(chan string, 100)}
	go func() {
		defer close(b.lines)
		s := bufio.NewScanner(stdout)
		for s.Scan() {
			b.lines <- s.Text()
		}
	}()
	t.Cleanup(b.kill)
	return b
}

// waitLine waits until the process prints line.
func (b *bgEtcdctl) waitLine(t *testing.T, line string) {
	t.Helper()
	timeout := time.After(startTimeout)
	for {
		select {
		case l, ok := <-b.lines:
			if !ok {
				t.Fatalf("etcdctl %q exited before printing %q", b.cmd.Args, line)
			}
			if l == line {
				return
			}
		case <-timeout:
			t.Fatalf("etcdctl %q: no line %q within %v", b.cmd.Args, line, startTimeout)
		}
	}
}

// interrupt sends SIGINT and reaps the process.
func (b *bgEtcdctl) interrupt() {
	_ = b.cmd.Process.Signal(os.Interrupt)
	_ = b.cmd.Wait()
}

// kill stops the process (the one this test started) and reaps it.
func (b *bgEtcdctl) kill() {
	if b.cmd.ProcessState != nil {
		return
	}
	_ = b.cmd.Process.Kill()
	_ = b.cmd.Wait()
}

// TestLeaseKeepAliveAcrossKill: a lease kept alive through one node
// outlives a SIGKILL of the meta group's leader (the lease's owner) by
// several TTLs, and its keys survive; a lease not kept alive still
// expires.
func TestLeaseKeepAliveAcrossKill(t *testing.T) {
	c := newCluster(t, clusterConfig{nodes: 3, splitKeys: []string{"key/g", "key/n", "key/t"}})
	owner := -1
	waitFor(t, startTimeout, "meta leader", func() error {
		rs, err := c.nodes[0].ranges()
		if err != nil {
			return err
		}
		for _, r := range rs.GetRanges() {
			if r.GetIsMeta() && r.GetLeaderNode() != 0 {
				owner = int(r.GetLeaderNode()) - 1
				return nil
			}
		}
		return fmt.Errorf("no meta leader known")
	})
	via := c.nodes[(owner+1)%len(c.nodes)]
	cli := via.client()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	kept, err := cli.Grant(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	dropped, err := cli.Grant(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"key/a", "key/h", "key/o", "key/z"} {
		if _, err := cli.Put(ctx, k+"/kept", "v", clientv3.WithLease(kept.ID)); err != nil {
			t.Fatal(err)
		}
		if _, err := cli.Put(ctx, k+"/dropped", "v", clientv3.WithLease(dropped.ID)); err != nil {
			t.Fatal(err)
		}
	}
	ch, err := cli.KeepAlive(ctx, kept.ID)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for range ch {
		}
	}()
	c.nodes[owner].kill()
	killed := time.Now()
	// Three TTLs of the kept lease; the dropped one expires meanwhile.
	for time.Since(killed) < 9*time.Second {
		rctx, rcancel := context.WithTimeout(ctx, opTimeout)
		resp, err := cli.Get(rctx, "key/", clientv3.WithPrefix())
		rcancel()
		if err != nil {
			continue // the cluster may be electing
		}
		n := 0
		for _, kv := range resp.Kvs {
			if kv.Lease == int64(kept.ID) {
				n++
			}
		}
		if n != 4 {
			t.Fatalf("%v after the kill: %d keys of the kept lease, want 4", time.Since(killed), n)
		}
		<-time.After(200 * time.Millisecond)
	}
	waitFor(t, startTimeout, "dropped lease's keys to go", func() error {
		rctx, rcancel := context.WithTimeout(ctx, opTimeout)
		defer rcancel()
		resp, err := cli.Get(rctx, "key/", clientv3.WithPrefix())
		if err != nil {
			return err
		}
		for _, kv := range resp.Kvs {
			if kv.Lease == int64(dropped.ID) {
				return fmt.Errorf("%s still there", kv.Key)
			}
		}
		return nil
	})
	c.nodes[owner].start()
	c.awaitHealthy()
}
