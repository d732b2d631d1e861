package system_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// etcdctl runs Debian's etcdctl (API v3) against a cluster.
type etcdctl struct {
	t         *testing.T
	bin       string
	endpoints []string
}

// result is one etcdctl run.
type result struct {
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("exit status %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
}

// run runs etcdctl with args and stdin against all endpoints.
func (e *etcdctl) run(stdin string, args ...string) result {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	full := append([]string{"--endpoints=" + strings.Join(e.endpoints, ","), "--dial-timeout=5s", "--command-timeout=20s"}, args...)
	cmd := exec.CommandContext(ctx, e.bin, full...)
	// No ETCDCTL_API: etcdctl 3.4 and later speak v3 by default, and 3.6+
	// warn about the variable on every call.
	cmd.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "ETCDCTL_API=") })
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	if err != nil {
		if _, ok := err.(*exec.ExitError); !ok {
			e.t.Fatalf("etcdctl %q: %v", args, err)
		}
		r.code = cmd.ProcessState.ExitCode()
	}
	return r
}

// ok runs etcdctl and fails the test unless it succeeds.
func (e *etcdctl) ok(args ...string) string {
	e.t.Helper()
	r := e.run("", args...)
	if r.code != 0 {
		e.t.Fatalf("etcdctl %q: %v", args, r)
	}
	return r.stdout
}

// expect runs etcdctl and checks that it succeeds with exactly want.
func (e *etcdctl) expect(want string, args ...string) {
	e.t.Helper()
	if got := e.ok(args...); got != want {
		e.t.Errorf("etcdctl %q:\ngot:\n%s\nwant:\n%s", args, got, want)
	}
}

// expectError runs etcdctl and checks that it fails with exit status 1
// and "Error: "+msg on stderr.
func (e *etcdctl) expectError(msg string, args ...string) {
	e.t.Helper()
	r := e.run("", args...)
	if r.code != 1 || !strings.Contains(r.stderr, "Error: "+msg+"\n") {
		e.t.Errorf("etcdctl %q: %v; want exit status 1 and %q", args, r, "Error: "+msg)
	}
}

// jsonRevisions runs etcdctl with -w json and returns the header's
// revision and the mod revisions of the kvs, if any.
func (e *etcdctl) jsonRevisions(args ...string) (header int64, mod []int64) {
	e.t.Helper()
	out := e.ok(append(args, "-w", "json")...)
	var resp struct {
		Header struct {
			Revision json.Number `json:"revision"`
		} `json:"header"`
		Kvs []struct {
			ModRevision json.Number `json:"mod_revision"`
		} `json:"kvs"`
	}
	dec := json.NewDecoder(strings.NewReader(out))
	dec.UseNumber() // revisions exceed float64's exact integers
	if err := dec.Decode(&resp); err != nil {
		e.t.Fatalf("etcdctl %q: %v in %q", args, err, out)
	}
	parse := func(n json.Number) int64 {
		rev, err := strconv.ParseInt(n.String(), 10, 64)
		if err != nil || rev <= 0 {
			e.t.Fatalf("etcdctl %q: revision %q in %q: %v", args, n, out, err)
		}
		return rev
	}
	header = parse(resp.Header.Revision)
	for _, kv := range resp.Kvs {
		mod = append(mod, parse(kv.ModRevision))
	}
	return header, mod
}

// TestEtcdctlSmoke runs etcdctl's KV, compaction and cluster commands
// against a 3-node cluster cut into 4 ranges and checks their output where
// etcdctl's format is fixed.
func TestEtcdctlSmoke(t *testing.T) {
	bin := os.Getenv("TESSERA_ETCDCTL")
	if bin == "" {
		bin = "/usr/bin/etcdctl"
	}
	if _, err := os.Stat(bin); err != nil {
		t.Skipf("no etcdctl at %s (install Debian's etcd-client, as .ci/run does, or set TESSERA_ETCDCTL): %v", bin, err)
	}
	// Ranges: ["", "key/g"), ["key/g", "key/n"), ["key/n", "key/t"), ["key/t", "").
	c := newCluster(t, clusterConfig{nodes: 3, splitKeys: []string{"key/g", "key/n", "key/t"}})
	e := &etcdctl{t: t, bin: bin, endpoints: c.endpoints()}
	if v := e.ok("version"); !strings.Contains(v, "API version: 3") {
		t.Fatalf("etcdctl version: %q", v)
	}

	// put, get: one key in each range.
	for _, kv := range [][2]string{{"key/apple", "1"}, {"key/hello", "world"}, {"key/orange", "2"}, {"key/zebra", "3"}, {"zzz", "last"}} {
		e.expect("OK\n", "put", kv[0], kv[1])
	}
	e.expect("key/apple\n1\n", "get", "key/apple")
	e.expect("", "get", "key/none")
	e.expect("world\n", "get", "key/hello", "--print-value-only")

	// Reads across ranges.
	e.expect("key/apple\n1\nkey/hello\nworld\nkey/orange\n2\nkey/zebra\n3\n", "get", "key/", "--prefix")
	e.expect("key/hello\nworld\nkey/orange\n2\nkey/zebra\n3\nzzz\nlast\n", "get", "key/h", "--from-key")
	e.expect("key/apple\n1\nkey/hello\nworld\n", "get", "key/", "--prefix", "--limit=2")
	e.expect("key/hello\nworld\nkey/orange\n2\n", "get", "key/b", "key/p") // [key/b, key/p)
	e.expect("key/zebra\n3\nkey/orange\n2\nkey/hello\nworld\nkey/apple\n1\n", "get", "key/", "--prefix", "--sort-by=KEY", "--order=DESCEND")
	if out := e.ok("get", "key/", "--prefix", "-w", "fields"); !strings.Contains(out, "\"Count\" : 4\n") {
		t.Errorf("get -w fields: no count 4 in %q", out)
	}

	// del, del --prefix within one range (["key/n", "key/t")).
	e.expect("1\n", "del", "key/apple")
	e.expect("0\n", "del", "key/apple")
	e.expect("OK\n", "put", "key/orange1", "a")
	e.expect("OK\n", "put", "key/orange2", "b")
	e.expect("OK\n", "put", "key/p", "not-deleted")
	e.expect("3\n", "del", "key/o", "--prefix")
	e.expect("key/hello\nworld\nkey/p\nnot-deleted\nkey/zebra\n3\n", "get", "key/", "--prefix")
	e.expect("1\nkey/p\nnot-deleted\n", "del", "key/p", "--prev-kv")

	// txn from stdin, as `etcdctl txn <<EOF`: the success branch...
	r := e.run(`value("key/hello") = "world"

put key/hello world2
get key/hello

put key/hello nope

`, "txn")
	if want := "SUCCESS\n\nOK\n\nkey/hello\nworld2\n"; r.code != 0 || r.stdout != want {
		t.Errorf("txn (success):%v\nwant stdout %q", r, want)
	}
	// ...the failure branch, with the interactive prompts.
	r = e.run(`mod("key/hello") = "0"
version("key/hello") > "5"

put key/hello never

get key/hello
del key/hellp

`, "txn", "--interactive")
	if want := "compares:\nsuccess requests (get, put, del):\nfailure requests (get, put, del):\nFAILURE\n\nkey/hello\nworld2\n\n0\n"; r.code != 0 || r.stdout != want {
		t.Errorf("txn --interactive (failure):%v\nwant stdout %q", r, want)
	}
	e.expect("key/hello\nworld2\n", "get", "key/hello")

	// Revisions, compaction, reads at a revision.
	rev1, _ := e.jsonRevisions("put", "key/hello", "v1")
	rev2, _ := e.jsonRevisions("put", "key/hello", "v2")
	if rev2 <= rev1 {
		t.Fatalf("revision of the second put %d is not above the first's %d", rev2, rev1)
	}
	if header, mod := e.jsonRevisions("get", "key/hello"); header < rev2 || len(mod) != 1 || mod[0] != rev2 {
		t.Errorf("get -w json: header revision %d, mod revisions %d; want a header at or above %d and mod revision %d", header, mod, rev2, rev2)
	}
	e.expect("key/hello\nv1\n", "get", "key/hello", fmt.Sprintf("--rev=%d", rev1))
	e.expect("key/hello\nv2\n", "get", "key/hello", fmt.Sprintf("--rev=%d", rev2))
	e.expect("key/hello\nworld2\n", "get", "key/hello", fmt.Sprintf("--rev=%d", rev1-1))
	e.expect("key/hello\nv1\nkey/zebra\n3\nzzz\nlast\n", "get", "key/h", "zzzz", fmt.Sprintf("--rev=%d", rev1))
	e.expectError("etcdserver: mvcc: required revision is a future revision", "get", "key/hello", fmt.Sprintf("--rev=%d", 2*rev2))

	e.expect(fmt.Sprintf("compacted revision %d\n", rev2), "compaction", strconv.FormatInt(rev2, 10))
	e.expectError("etcdserver: mvcc: required revision has been compacted", "get", "key/hello", fmt.Sprintf("--rev=%d", rev1))
	e.expectError("etcdserver: mvcc: required revision has been compacted", "get", "key/", "--prefix", fmt.Sprintf("--rev=%d", rev1))
	e.expect("key/hello\nv2\n", "get", "key/hello", fmt.Sprintf("--rev=%d", rev2))
	e.expect("key/hello\nv2\n", "get", "key/hello")
	e.expectError("etcdserver: mvcc: required revision has been compacted", "compaction", strconv.FormatInt(rev1, 10))

	// member list: "ID, status, name, peer URLs, client URLs, is learner",
	// IDs in hex (1..N).
	var members strings.Builder
	for _, n := range c.nodes {
		fmt.Fprintf(&members, "%x, started, %s, %s, %s, false\n", n.id, n.name, n.peerURL, n.clientURL)
	}
	e.expect(members.String(), "member", "list")

	// endpoint health: one line per endpoint, in any order, on stdout or
	// stderr depending on the etcdctl version; the same with --cluster
	// (endpoints from member list).
	healthy := regexp.MustCompile(`^(http://127\.0\.0\.1:\d+) is healthy: successfully committed proposal: took = \S+$`)
	for _, args := range [][]string{{"endpoint", "health"}, {"endpoint", "health", "--cluster"}} {
		r := e.run("", args...)
		if r.code != 0 {
			t.Errorf("etcdctl %q: %v", args, r)
			continue
		}
		var got []string
		for _, line := range strings.Split(strings.TrimSpace(r.stdout+"\n"+r.stderr), "\n") {
			m := healthy.FindStringSubmatch(line)
			if m == nil {
				t.Errorf("etcdctl %q: unexpected line %q", args, line)
				continue
			}
			got = append(got, m[1])
		}
		sort.Strings(got)
		want := c.endpoints()
		sort.Strings(want)
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("etcdctl %q: healthy endpoints %q, want %q", args, got, want)
		}
	}
}
