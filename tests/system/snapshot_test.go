package system_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// tessctl runs the tessctl binary TestMain built.
func tessctl(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, tessctlBin, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		err = fmt.Errorf("tessctl %s: %v: %s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), err
}

// readAllAt reads every key at rev (0: a linearizable read of the current
// state) in pages.
func readAllAt(t *testing.T, cli *clientv3.Client, rev int64) []*mvccpb.KeyValue {
	t.Helper()
	var out []*mvccpb.KeyValue
	key := "\x00"
	for {
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		opts := []clientv3.OpOption{clientv3.WithRange("\x00"), clientv3.WithLimit(1000)}
		if rev > 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		resp, err := cli.Get(ctx, key, opts...)
		cancel()
		if err != nil {
			t.Fatalf("read all at %d from %q: %v", rev, key, err)
		}
		out = append(out, resp.Kvs...)
		if !resp.More || len(resp.Kvs) == 0 {
			return out
		}
		key = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

// TestSnapshotSaveRestore: `etcdctl snapshot save` against one node of a
// 3-node, 8-range cluster under writes saves the whole cluster at one
// revision; `tessctl snapshot status` describes it; `tessctl snapshot
// restore` refuses a corrupt and a truncated copy without writing
// anything, then builds the data dirs of a new 3-node cluster, which
// serves exactly the state the old one had at the backup's revision
// (every key, value, create and mod revision, version), with replicas
// that agree, and accepts writes above that revision.
func TestSnapshotSaveRestore(t *testing.T) {
	ctl := etcdctlPath(t)
	splitKeys := []string{"b", "d", "f", "h", "k", "n", "q"}
	src := newCluster(t, clusterConfig{nodes: 3, splitKeys: splitKeys})
	cli := src.client()

	// History: three versions of some keys, deletions, keys in every range.
	const nKeys = 1200
	keyOf := func(i int) string { return fmt.Sprintf("%c/snap/%05d", 'a'+i%26, i) }
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	for i := range nKeys {
		for v := 0; v <= i%3; v++ {
			if _, err := cli.Put(ctx, keyOf(i), fmt.Sprintf("value-%d-%d", i, v)); err != nil {
				t.Fatal(err)
			}
		}
		if i%7 == 0 {
			if _, err := cli.Delete(ctx, keyOf(i)); err != nil {
				t.Fatal(err)
			}
		}
	}

	// Writers keep going during the save.
	var writes atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				wctx, wcancel := context.WithTimeout(context.Background(), opTimeout)
				_, err := cli.Put(wctx, fmt.Sprintf("%c/during/%d/%d", 'a'+i%26, w, i), "x")
				wcancel()
				if err == nil {
					writes.Add(1)
				}
			}
		}()
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "backup.db")
	e := &etcdctl{t: t, bin: ctl, endpoints: []string{src.nodes[1].clientURL}}
	before := writes.Load()
	start := time.Now()
	out := e.ok("snapshot", "save", file)
	took := time.Since(start)
	during := writes.Load() - before
	close(stop)
	wg.Wait()
	t.Logf("etcdctl snapshot save: %v, %d puts acknowledged meanwhile: %s", took, during, strings.TrimSpace(out))
	// The serving node's progress metrics: every range of the backup done,
	// its bytes counted, none running.
	if m := scrapeMetrics(t, src.nodes[1]); m[`tessera_backup_in_progress`] != 0 || m[`tessera_backup_ranges{state="total"}`] != 8 ||
		m[`tessera_backup_ranges{state="done"}`] != 8 || m[`tessera_backup_sent_bytes_total`] <= 0 {
		t.Errorf("backup progress after the save: in progress %v, ranges %v of %v, bytes %v", m[`tessera_backup_in_progress`],
			m[`tessera_backup_ranges{state="done"}`], m[`tessera_backup_ranges{state="total"}`], m[`tessera_backup_sent_bytes_total`])
	}
	if during == 0 {
		t.Errorf("no write was acknowledged during the save: the backup blocked writes?")
	}

	stOut, err := tessctl(t, "snapshot", "status", file, "-w", "json")
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Revision int64  `json:"revision"`
		TotalKey uint64 `json:"totalKey"`
		Ranges   []any  `json:"ranges"`
	}
	if err := json.Unmarshal([]byte(stOut), &st); err != nil {
		t.Fatalf("snapshot status: %v: %s", err, stOut)
	}
	want := readAllAt(t, cli, st.Revision)
	if st.TotalKey != uint64(len(want)) || len(st.Ranges) != len(splitKeys)+1 {
		t.Fatalf("snapshot status: %d keys in %d ranges, want %d keys (a read at %d) in %d ranges", st.TotalKey, len(st.Ranges), len(want), st.Revision, len(splitKeys)+1)
	}
	t.Logf("backup at revision %d: %d keys, %d ranges", st.Revision, st.TotalKey, len(st.Ranges))

	// tessctl snapshot save does the same (no terminal here: no progress
	// bar), through another node.
	file2 := filepath.Join(dir, "backup2.db")
	if out, err := tessctl(t, "--endpoints", src.nodes[2].clientURL, "snapshot", "save", file2); err != nil || !strings.HasPrefix(out, "Snapshot saved at "+file2) {
		t.Fatalf("tessctl snapshot save: %v: %s", err, out)
	}
	stOut2, err := tessctl(t, "snapshot", "status", file2, "-w", "json")
	if err != nil {
		t.Fatal(err)
	}
	var st2 struct {
		Revision int64  `json:"revision"`
		TotalKey uint64 `json:"totalKey"`
	}
	if err := json.Unmarshal([]byte(stOut2), &st2); err != nil {
		t.Fatal(err)
	}
	if n := len(readAllAt(t, cli, st2.Revision)); st2.TotalKey != uint64(n) || st2.Revision <= st.Revision {
		t.Errorf("tessctl snapshot save: %d keys at %d, want %d (a read there), after %d", st2.TotalKey, st2.Revision, n, st.Revision)
	}

	// Corrupt and truncated copies are refused before anything is written.
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	flipped := append([]byte(nil), raw...)
	flipped[len(flipped)/2] ^= 0x40
	for name, content := range map[string][]byte{"corrupt": flipped, "truncated": raw[:len(raw)-1000]} {
		bad := filepath.Join(dir, name+".db")
		if err := os.WriteFile(bad, content, 0o600); err != nil {
			t.Fatal(err)
		}
		dataDir := filepath.Join(dir, "bad-"+name)
		_, err := tessctl(t, "snapshot", "restore", bad, "--name", "n1", "--data-dir", dataDir,
			"--initial-cluster", "n1=http://127.0.0.1:1", "--initial-advertise-peer-urls", "http://127.0.0.1:1")
		if err == nil || !strings.Contains(err.Error(), "corrupt or truncated") {
			t.Errorf("restore of a %s file: %v, want a corrupt-or-truncated error", name, err)
		}
		if entries, _ := os.ReadDir(dir); true {
			for _, e := range entries {
				if strings.HasPrefix(e.Name(), "bad-"+name) {
					t.Errorf("restore of a %s file left %s behind", name, e.Name())
				}
			}
		}
	}

	// Restore into a new cluster, once per member.
	restoreStart := time.Now()
	var restoreTook time.Duration
	dst := newCluster(t, clusterConfig{nodes: 3, prepare: func(n *node) {
		initial := ""
		for i, a := range n.args {
			if a == "--initial-cluster" {
				initial = n.args[i+1]
			}
		}
		if _, err := tessctl(t, "snapshot", "restore", file, "--name", n.name, "--data-dir", n.dataDir,
			"--initial-cluster", initial, "--initial-advertise-peer-urls", n.peerURL); err != nil {
			t.Fatal(err)
		}
		restoreTook = time.Since(restoreStart)
	}})
	t.Logf("tessctl snapshot restore of 3 members: %v", restoreTook)
	for _, n := range dst.nodes {
		got := readAllAt(t, n.client(), 0)
		if diff := diffKVs(want, got); diff != "" {
			t.Fatalf("%s after restore differs from the source at revision %d: %s", n.name, st.Revision, diff)
		}
	}
	checkHashes(t, dst)

	// Writes go on above the backup's revision.
	dcli := dst.client()
	resp, err := dcli.Put(ctx, keyOf(1), "after restore")
	if err != nil {
		t.Fatal(err)
	}
	if resp.Header.Revision <= st.Revision {
		t.Errorf("a put after restore got revision %d, not above the backup's %d", resp.Header.Revision, st.Revision)
	}
	g, err := dcli.Get(ctx, keyOf(1))
	if err != nil || len(g.Kvs) != 1 || g.Kvs[0].Version != 3 {
		t.Errorf("key %s after a put on the restored cluster: %v %v, want version 3", keyOf(1), g, err)
	}
}

// diffKVs describes the first difference between two key lists.
func diffKVs(want, got []*mvccpb.KeyValue) string {
	for i := range min(len(want), len(got)) {
		w, g := want[i], got[i]
		if !bytes.Equal(w.Key, g.Key) || !bytes.Equal(w.Value, g.Value) || w.CreateRevision != g.CreateRevision ||
			w.ModRevision != g.ModRevision || w.Version != g.Version || w.Lease != g.Lease {
			return fmt.Sprintf("key %d: want %v, got %v", i, w, g)
		}
	}
	if len(want) != len(got) {
		return fmt.Sprintf("%d keys, want %d", len(got), len(want))
	}
	return ""
}
