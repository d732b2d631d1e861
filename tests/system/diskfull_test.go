package system_test

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/tesseradb/tessera/proto/tesserapb"
)

// Sizes of the disk-full test: a 128 MiB tmpfs as node3's data dir, NOSPACE
// below 48 MiB free, filled down to 24 MiB free (room left for the alarm's
// own raft entry and Pebble's housekeeping, as a real margin leaves).
const (
	diskFullFSBytes    = 128 << 20
	diskFullQuotaBytes = 48 << 20
	diskFullLeftBytes  = 24 << 20
)

// mountTmpfs mounts a tmpfs of size bytes at a new directory and unmounts it
// when the test ends (after the cluster's processes are killed, when called
// from clusterConfig.prepare). It skips the test when it cannot mount.
func mountTmpfs(t *testing.T, size int64) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("disk-full test: needs root to mount a tmpfs")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d", size), "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("disk-full test: mount tmpfs at %s: %v: %s", dir, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

func freeBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Bavail) * int64(st.Bsize)
}

// fill writes a file in dir until the file system has about left bytes free.
func fill(t *testing.T, dir string, left int64) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 1<<20)
	for freeBytes(t, dir) > left+int64(len(chunk)) {
		if _, err := f.Write(chunk); err != nil {
			t.Fatalf("fill %s: %v", path, err)
		}
	}
	return path
}

// TestDiskFull fills node3's data dir (a small tmpfs) and checks etcd's
// NOSPACE semantics end to end: the node raises the alarm, every node then
// refuses puts with "etcdserver: mvcc: database space exceeded" and serves
// reads, etcdctl alarm list shows it; once space is freed and the alarm
// disarmed (etcdctl alarm disarm), writes succeed again, every acknowledged
// write is intact and the replicas of every range hold the same data.
func TestDiskFull(t *testing.T) {
	var mnt string
	c := newCluster(t, clusterConfig{nodes: 3, splitKeys: []string{"m"}, prepare: func(n *node) {
		if n.id != 3 {
			return
		}
		mnt = mountTmpfs(t, diskFullFSBytes)
		n.dataDir = filepath.Join(mnt, "data")
		for i, a := range n.args {
			if a == "--data-dir" {
				n.args[i+1] = n.dataDir
			}
		}
		n.args = append(n.args, "--quota-free-bytes", fmt.Sprint(diskFullQuotaBytes))
	}})
	cli := c.client()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	acked := map[string]string{}
	put := func(k, v string) error {
		octx, ocancel := context.WithTimeout(ctx, opTimeout)
		defer ocancel()
		_, err := cli.Put(octx, k, v)
		if err == nil {
			acked[k] = v
		}
		return err
	}
	for i := range 200 {
		k := fmt.Sprintf("%c/key%03d", "am"[i%2], i)
		if err := put(k, strings.Repeat("v", 100)+fmt.Sprint(i)); err != nil {
			t.Fatalf("put %s: %v", k, err)
		}
	}

	filler := fill(t, mnt, diskFullLeftBytes)
	t.Logf("filled %s: %d bytes free", mnt, freeBytes(t, mnt))
	waitFor(t, 30*time.Second, "NOSPACE alarm", func() error {
		err := put("probe", "x")
		if errors.Is(err, rpctypes.ErrNoSpace) {
			return nil
		}
		return fmt.Errorf("put: %v", err)
	})
	for _, n := range c.nodes {
		nc := n.client()
		octx, ocancel := context.WithTimeout(ctx, opTimeout)
		_, err := nc.Put(octx, "a/new", "x")
		if !errors.Is(err, rpctypes.ErrNoSpace) || !strings.Contains(fmt.Sprint(err), "etcdserver: mvcc: database space exceeded") {
			t.Errorf("%s: put with NOSPACE: %v", n.name, err)
		}
		g, err := nc.Get(octx, "a/key000")
		if err != nil || len(g.Kvs) != 1 {
			t.Errorf("%s: read with NOSPACE: %v, %v", n.name, g, err)
		}
		list, err := nc.AlarmList(octx)
		if err != nil || len(list.Alarms) != 1 || list.Alarms[0].MemberID != 3 {
			t.Errorf("%s: alarm list: %v, %v", n.name, list, err)
		}
		ocancel()
	}
	e := diskFullEtcdctl(t, c)
	if e != nil {
		// Protobuf's text format spaces its fields unpredictably
		// (etcdctl 3.7 prints "memberID:3  alarm:NOSPACE").
		if out := e.ok("alarm", "list"); !strings.Contains(strings.Join(strings.Fields(out), " "), "memberID:3 alarm:NOSPACE") {
			t.Errorf("etcdctl alarm list: %q", out)
		}
	}

	// Free the space, then disarm: writes are accepted again.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if e != nil {
		e.ok("alarm", "disarm")
	} else if _, err := cli.AlarmDisarm(ctx, &clientv3.AlarmMember{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "writes after disarm", func() error { return put("after", "disarm") })
	for i := range 20 {
		if err := put(fmt.Sprintf("m/after%02d", i), "x"); err != nil {
			t.Fatalf("put after disarm: %v", err)
		}
	}
	if e != nil {
		if out := e.ok("alarm", "list"); out != "" {
			t.Errorf("etcdctl alarm list after disarm: %q", out)
		}
	}

	// Every acknowledged write is there, read through every node.
	for _, n := range c.nodes {
		nc := n.client()
		octx, ocancel := context.WithTimeout(ctx, opTimeout)
		g, err := nc.Get(octx, "", clientv3.WithFromKey())
		ocancel()
		if err != nil {
			t.Fatalf("%s: read all: %v", n.name, err)
		}
		got := map[string]string{}
		for _, kv := range g.Kvs {
			got[string(kv.Key)] = string(kv.Value)
		}
		for k, v := range acked {
			if got[k] != v {
				t.Errorf("%s: %s = %q, want %q", n.name, k, got[k], v)
			}
		}
	}
	checkHashes(t, c)
}

// diskFullEtcdctl returns Debian's etcdctl for the cluster, or nil when it
// is not installed.
func diskFullEtcdctl(t *testing.T, c *cluster) *etcdctl {
	bin := os.Getenv("TESSERA_ETCDCTL")
	if bin == "" {
		bin = "/usr/bin/etcdctl"
	}
	if _, err := os.Stat(bin); err != nil {
		t.Logf("no etcdctl at %s: checking alarms with clientv3 only", bin)
		return nil
	}
	return &etcdctl{t: t, bin: bin, endpoints: c.endpoints()}
}

// checkHashes compares the content hashes (Internal.Hash) of every range's
// replicas once they report the same applied index, as tessctl check does.
func checkHashes(t *testing.T, c *cluster) {
	t.Helper()
	type answer struct {
		index uint64
		hash  uint32
	}
	ask := func(n *node, rangeID uint64) (answer, error) {
		u, err := url.Parse(n.peerURL)
		if err != nil {
			return answer{}, err
		}
		conn, err := grpc.NewClient(u.Host, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return answer{}, err
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		defer cancel()
		resp, err := tesserapb.NewInternalClient(conn).Hash(ctx, &tesserapb.HashRequest{RangeId: rangeID})
		if err == nil && resp.GetRoutingError() != nil {
			err = fmt.Errorf("%s", resp.GetRoutingError().GetMessage())
		}
		return answer{resp.GetAppliedIndex(), resp.GetHash()}, err
	}
	rr, err := c.nodes[0].ranges()
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range rr.GetRanges() {
		id := st.GetRangeDescriptor().GetRangeId()
		waitFor(t, 30*time.Second, fmt.Sprintf("range %d: replicas at one applied index", id), func() error {
			var answers []answer
			for _, n := range c.nodes {
				a, err := ask(n, id)
				if err != nil {
					return fmt.Errorf("%s: %w", n.name, err)
				}
				answers = append(answers, a)
			}
			for _, a := range answers[1:] {
				if a.index != answers[0].index {
					return fmt.Errorf("applied indexes %v", answers)
				}
			}
			for i, a := range answers[1:] {
				if a.hash != answers[0].hash {
					t.Errorf("range %d: %s hash %08x, %s hash %08x at applied index %d", id, c.nodes[0].name, answers[0].hash, c.nodes[i+1].name, a.hash, a.index)
				}
			}
			return nil
		})
	}
}
