package system_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tesseradb/tessera/cmd/buildinfo"
)

// readmeBlocks returns the ```sh blocks of the README, each as its lines.
func readmeBlocks(t *testing.T) [][]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	var blocks [][]string
	rest := string(b)
	for {
		_, after, ok := strings.Cut(rest, "```sh\n")
		if !ok {
			return blocks
		}
		body, after, ok := strings.Cut(after, "```")
		if !ok {
			t.Fatal("README: unterminated ```sh block")
		}
		blocks = append(blocks, strings.Split(strings.TrimSuffix(body, "\n"), "\n"))
		rest = after
	}
}

// splitComment cuts a README line into its command and its comment.
func splitComment(line string) string {
	if i := strings.Index(line, "  #"); i >= 0 {
		line = line[:i]
	}
	return strings.TrimSpace(line)
}

// etcdctlBin finds the etcdctl the README's commands use: TESSERA_ETCDCTL,
// else the one on PATH.
func etcdctlBin() (string, error) {
	if p := os.Getenv("TESSERA_ETCDCTL"); p != "" {
		_, err := os.Stat(p)
		return p, err
	}
	return exec.LookPath("etcdctl")
}

// readmeCheck checks one Quickstart command's output.
type readmeCheck struct {
	needs string // a tool the command runs besides Tessera's ("etcdctl", "curl")
	check func(stdout string) error
}

func exactly(want string) func(string) error {
	return func(got string) error {
		if got != want {
			return fmt.Errorf("got %q, want %q", got, want)
		}
		return nil
	}
}

func matchesLines(res ...string) func(string) error {
	return func(got string) error {
		lines := strings.Split(strings.TrimSuffix(got, "\n"), "\n")
		if len(lines) != len(res) {
			return fmt.Errorf("%d lines, want %d:\n%s", len(lines), len(res), got)
		}
		for i, re := range res {
			if !regexp.MustCompile(re).MatchString(lines[i]) {
				return fmt.Errorf("line %d %q does not match %q", i+1, lines[i], re)
			}
		}
		return nil
	}
}

// readmeQuickstart holds every command of the README's Quickstart (its
// third ```sh block) and what its output must be: a command missing here,
// or here but not in the README, fails TestReadme, so the two move
// together.
var readmeQuickstart = map[string]readmeCheck{
	`etcdctl --endpoints=$E put apple 1`:       {"etcdctl", exactly("OK\n")},
	`etcdctl --endpoints=$E put zebra 2`:       {"etcdctl", exactly("OK\n")},
	`etcdctl --endpoints=$E get "" --from-key`: {"etcdctl", exactly("apple\n1\nzebra\n2\n")},
	`etcdctl --endpoints=$E member list`: {"etcdctl", matchesLines(
		`^1, started, node1, http://127\.0\.0\.1:\d+, http://127\.0\.0\.1:\d+, false$`,
		`^2, started, node2, http://127\.0\.0\.1:\d+, http://127\.0\.0\.1:\d+, false$`,
		`^3, started, node3, http://127\.0\.0\.1:\d+, http://127\.0\.0\.1:\d+, false$`)},
	`etcdctl --endpoints=$E endpoint status`: {"etcdctl", func(out string) error {
		v := regexp.QuoteMeta(buildinfo.ServerVersion())
		return matchesLines(
			`^http://127\.0\.0\.1:\d+, 1, `+v+`, `,
			`^http://127\.0\.0\.1:\d+, 2, `+v+`, `,
			`^http://127\.0\.0\.1:\d+, 3, `+v+`, `)(out)
	}},
	`go run ./cmd/tessctl --endpoints=$E status`: {"", matchesLines(
		`^ID  NAME   CLIENT URL +REPLICAS  LEADERS  META +HEALTH$`,
		`^1   node1  http://127\.0\.0\.1:\d+ +5 +\d +(leader|replica) +healthy$`,
		`^2   node2  http://127\.0\.0\.1:\d+ +5 +\d +(leader|replica) +healthy$`,
		`^3   node3  http://127\.0\.0\.1:\d+ +5 +\d +(leader|replica) +healthy$`)},
	`go run ./cmd/tessctl --endpoints=$E ranges`: {"", matchesLines(
		// Replicas as node/replica id: InitialLayout gives ids 1..3 in
		// round-robin order, so they differ from node ids on ranges 3 and 4.
		`^RANGE  SPAN        REPLICAS     LEADER  TERM  APPLIED  RESOLVED$`,
		`^meta   -           1/1,2/2,3/3  [123] +\d+ +\d+ +-$`,
		`^2      \["", "g"\)   1/1,2/2,3/3  [123] +\d+ +\d+ +20\d\d-\d\d-\d\dT\d\d:\d\d:\d\d\.\d\d\dZ(\+\d+)?$`,
		`^3      \["g", "n"\)  1/3,2/1,3/2  [123] +\d+ +\d+ +20\d\d-`,
		`^4      \["n", "t"\)  1/2,2/3,3/1  [123] +\d+ +\d+ +20\d\d-`,
		`^5      \["t", ""\)   1/1,2/2,3/3  [123] +\d+ +\d+ +20\d\d-`,
		`^$`,
		`^REPLICAS: node id/replica id`,
		`^RESOLVED: `,
		`^Revisions are TSO timestamps`)},
	`go run ./cmd/tessctl --endpoints=$E check`: {"", matchesLines(
		`^RANGE  SPAN        APPLIED  REVISION +COMPACT  HASH      STATUS$`,
		`^meta   -           \d+ +- +- +[0-9a-f]{8}  ok$`,
		`^2      \["", "g"\)   \d+ +(0|20\d\d-\S+) +0 +[0-9a-f]{8}  ok$`,
		`^3      \["g", "n"\)  \d+ +(0|20\d\d-\S+) +0 +[0-9a-f]{8}  ok$`,
		`^4      \["n", "t"\)  \d+ +(0|20\d\d-\S+) +0 +[0-9a-f]{8}  ok$`,
		`^5      \["t", ""\)   \d+ +(0|20\d\d-\S+) +0 +[0-9a-f]{8}  ok$`,
		`^$`,
		`^REVISION: `,
		`^Revisions are TSO timestamps`)},
	`go run ./cmd/tessctl --endpoints=$E transfer-leader --range 2 --to 3`: {"", exactly("range 2: leader is node 3\n")},
	`curl -s "${E%%,*}/readyz?verbose"`: {"curl", exactly(
		"[+]data_corruption ok\n[+]serializable_read ok\n[+]linearizable_read ok\n[+]non_learner ok\nok\n")},
	`curl -s "${E%%,*}/metrics" | grep ^tessera_raft_groups`: {"curl", exactly("tessera_raft_groups 5\n")},
	`etcdctl --endpoints=$E del apple`:                       {"etcdctl", exactly("1\n")},
}

// TestReadme follows the README on a fresh machine: the run command, then
// the Quickstart (tessera dev, the line it prints to copy, every command,
// Ctrl-C), checking each command's output. `go run ./cmd/X` runs the
// binaries TestMain built; etcdctl is TESSERA_ETCDCTL or the one on PATH,
// and its commands are skipped (and said so) without one.
func TestReadme(t *testing.T) {
	blocks := readmeBlocks(t)
	if len(blocks) < 4 {
		t.Fatalf("README: %d ```sh blocks; want the run command, the dev command, the export line and the Quickstart", len(blocks))
	}
	run, dev, export, quick := blocks[0], blocks[1], blocks[2], blocks[3]

	t.Run("run", func(t *testing.T) {
		if len(run) != 2 || splitComment(run[0]) != "go run ./cmd/tessera" || splitComment(run[1]) != "make test" {
			t.Fatalf("README's run block changed: %q", run)
		}
		// `go run ./cmd/tessera` as written, but on free ports: 2379 may
		// be taken on a machine running tests.
		dir := t.TempDir()
		ports := freePorts(t, 2)
		client, peer := fmt.Sprintf("http://127.0.0.1:%d", ports[0]), fmt.Sprintf("http://127.0.0.1:%d", ports[1])
		p := startProc(t, dir, nil, tesseraBin, "--listen-client-urls", client, "--advertise-client-urls", client,
			"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer)
		checkStartLines(t, p, dir, client, peer)
		if code := p.stop(t, syscall.SIGINT); code != 0 {
			t.Fatalf("exit code %d after Ctrl-C", code)
		}
		checkStopLines(t, p, dir, "interrupt")
	})

	// tessera dev, exactly as the README has it.
	if len(dev) != 1 || !strings.HasPrefix(dev[0], "go run ./cmd/tessera dev ") {
		t.Fatalf("README's dev block changed: %q", dev)
	}
	devArgs := strings.Fields(strings.TrimPrefix(splitComment(dev[0]), "go run ./cmd/tessera "))
	p := startProc(t, t.TempDir(), []string{"TMPDIR=" + t.TempDir()}, tesseraBin, devArgs...)
	exportRE := regexp.MustCompile(`^export E=(http://127\.0\.0\.1:\d+(?:,http://127\.0\.0\.1:\d+){2})$`)
	if len(export) != 1 || !exportRE.MatchString(export[0]) {
		t.Fatalf("README's export line %q is not what tessera dev prints (%s)", export, exportRE)
	}
	m := p.stdout.await(t, regexp.MustCompile(`^  (export E=.*)$`), startTimeout)
	if !exportRE.MatchString(m[1]) {
		t.Fatalf("tessera dev printed %q, not a line like the README's %q", m[1], export[0])
	}
	endpoints := exportRE.FindStringSubmatch(m[1])[1]
	dataDir := p.stdout.await(t, regexp.MustCompile(`^data: (\S+) \(temporary, removed on exit`), startTimeout)[1]

	// The Quickstart's commands, in the README's order.
	pathDir := t.TempDir()
	etcdctl, etcdctlErr := etcdctlBin()
	if etcdctlErr == nil {
		if err := os.Symlink(etcdctl, filepath.Join(pathDir, "etcdctl")); err != nil {
			t.Fatal(err)
		}
	}
	_, curlErr := exec.LookPath("curl")
	seen := map[string]bool{}
	for _, line := range quick {
		command := splitComment(line)
		c, ok := readmeQuickstart[command]
		if !ok {
			t.Errorf("README command %q has no check in TestReadme's readmeQuickstart", command)
			continue
		}
		seen[command] = true
		switch {
		case c.needs == "etcdctl" && etcdctlErr != nil:
			t.Logf("SKIP %q: no etcdctl (set TESSERA_ETCDCTL or put etcdctl on PATH): %v", command, etcdctlErr)
			continue
		case c.needs == "curl" && curlErr != nil:
			t.Logf("SKIP %q: no curl: %v", command, curlErr)
			continue
		}
		script := strings.ReplaceAll(command, "go run ./cmd/tessctl", tessctlBin)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		cmd := exec.CommandContext(ctx, "bash", "-c", script)
		cmd.Env = append(os.Environ(), "E="+endpoints, "PATH="+pathDir+string(os.PathListSeparator)+os.Getenv("PATH"))
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		cancel()
		if err != nil {
			t.Errorf("%s: %v; stdout %q, stderr %q", command, err, stdout.String(), stderr.String())
			continue
		}
		if err := c.check(stdout.String()); err != nil {
			t.Errorf("%s: %v (stderr %q)", command, err, stderr.String())
		}
	}
	for command := range readmeQuickstart {
		if !seen[command] {
			t.Errorf("readmeQuickstart checks %q, which is not in the README's Quickstart", command)
		}
	}

	// Ctrl-C: the cluster stops quietly and its temporary data is gone.
	if code := p.stop(t, syscall.SIGINT); code != 0 {
		t.Fatalf("tessera dev: exit code %d after Ctrl-C", code)
	}
	p.stdout.await(t, regexp.MustCompile(`^removed the temporary data dir `+regexp.QuoteMeta(dataDir)+`$`), time.Second)
	if _, err := os.Stat(dataDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temporary data dir %s after Ctrl-C: %v", dataDir, err)
	}
	if log := p.stderr.String(); log != "" {
		t.Errorf("tessera dev logged (warnings on shutdown?):\n%s", log)
	}
}
