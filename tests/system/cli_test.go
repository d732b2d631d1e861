package system_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tesseradb/tessera/cmd/buildinfo"
)

// lines collects what a process writes to one stream, line by line, and
// lets a test wait for a line.
type lines struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{} // closed and replaced at every write
}

func newLines() *lines { return &lines{changed: make(chan struct{})} }

func (l *lines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	close(l.changed)
	l.changed = make(chan struct{})
	return len(p), nil
}

func (l *lines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// await waits until a complete line matches re, and returns its submatches.
func (l *lines) await(t *testing.T, re *regexp.Regexp, timeout time.Duration) []string {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		l.mu.Lock()
		text, changed := l.buf.String(), l.changed
		l.mu.Unlock()
		for _, line := range strings.SplitAfter(text, "\n") {
			if strings.HasSuffix(line, "\n") {
				if m := re.FindStringSubmatch(strings.TrimSuffix(line, "\n")); m != nil {
					return m
				}
			}
		}
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("no line matching %q within %s; output so far:\n%s", re, timeout, text)
		}
	}
}

// proc is one run of a command whose stdout and stderr a test reads.
type proc struct {
	cmd            *exec.Cmd
	stdout, stderr *lines
	done           chan struct{}
	err            error // cmd.Wait's result, after done
}

// startProc starts bin with args in dir; it is killed when the test ends if
// still running.
func startProc(t *testing.T, dir string, env []string, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(bin, args...), stdout: newLines(), stderr: newLines(), done: make(chan struct{})}
	p.cmd.Dir = dir
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s %q: %v", bin, args, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("%s %q stdout:\n%s\nstderr:\n%s", filepath.Base(bin), args, tail([]byte(p.stdout.String()), 4000), tail([]byte(p.stderr.String()), 6000))
		}
	})
	return p
}

// stop sends sig and waits for the process to exit; it returns the exit
// code.
func (p *proc) stop(t *testing.T, sig syscall.Signal) int {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %v: %v", sig, err)
	}
	select {
	case <-p.done:
	case <-time.After(stopTimeout):
		t.Fatalf("process still running %s after %v", stopTimeout, sig)
	}
	return p.cmd.ProcessState.ExitCode()
}

// runCmd runs bin with args to completion and returns stdout, stderr and
// the exit code.
func runCmd(t *testing.T, bin string, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if _, ok := err.(*exec.ExitError); err != nil && !ok {
		t.Fatalf("%s %q: %v", bin, args, err)
	}
	return stdout.String(), stderr.String(), cmd.ProcessState.ExitCode()
}

// tessera --version and tessera version; an error printed once; one default
// per flag in the help.
func TestCLI(t *testing.T) {
	for _, args := range [][]string{{"--version"}, {"version"}} {
		out, errOut, code := runCmd(t, tesseraBin, args...)
		if code != 0 || errOut != "" || !strings.HasPrefix(out, "Tessera Version: "+buildinfo.Version+"\n") || !strings.Contains(out, "etcd API Version: "+buildinfo.EtcdAPIVersion+"\n") {
			t.Errorf("tessera %s: exit %d, stdout %q, stderr %q", args[0], code, out, errOut)
		}
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--no-such-flag"}, "Error: unknown flag: --no-such-flag\n"},
		{[]string{"no-such-command"}, "Error: unknown command \"no-such-command\" for \"tessera\"\n"},
		{[]string{"--log-level", "loud"}, "Error: --log-level \"loud\": want debug, info, warn, error, panic or fatal\n"},
		{[]string{"dev", "--nodes", "0"}, "Error: --nodes 0: must be at least 1\n"},
	} {
		out, errOut, code := runCmd(t, tesseraBin, tc.args...)
		if code != 1 || out != "" || errOut != tc.want {
			t.Errorf("tessera %q: exit %d, stdout %q, stderr %q; want exit 1 and stderr %q", tc.args, code, out, errOut, tc.want)
		}
	}
	for _, args := range [][]string{{"--help"}, {"dev", "--help"}} {
		out, _, code := runCmd(t, tesseraBin, args...)
		if code != 0 {
			t.Fatalf("tessera %q: exit %d", args, code)
		}
		for _, line := range strings.Split(out, "\n") {
			if strings.Count(line, "(default") > 1 {
				t.Errorf("tessera %q: two defaults in %q", args, line)
			}
		}
		if args[0] == "--help" && !strings.Contains(out, "--data-dir string") {
			t.Errorf("tessera --help has no --data-dir:\n%s", out)
		}
	}
}

// A node started with no flags but its listen URLs logs at info: its
// version, name and member id, data dir, the URLs it serves, then that it
// is ready; SIGTERM stops it, saying where its data stayed.
func TestStartupAndShutdownLines(t *testing.T) {
	dir := t.TempDir()
	ports := freePorts(t, 2)
	client, peer := fmt.Sprintf("http://127.0.0.1:%d", ports[0]), fmt.Sprintf("http://127.0.0.1:%d", ports[1])
	p := startProc(t, dir, nil, tesseraBin, "--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer)
	checkStartLines(t, p, dir, client, peer)
	if code := p.stop(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("exit code %d after SIGTERM", code)
	}
	checkStopLines(t, p, dir, "terminated")
}

// checkStartLines waits for a node's start and ready lines (run in dir
// with the default data dir).
func checkStartLines(t *testing.T, p *proc, dir, client, peer string) {
	t.Helper()
	dataDir := filepath.Join(dir, "default.tessera")
	m := p.stderr.await(t, regexp.MustCompile(`level=INFO msg="starting Tessera" node=default version=(\S+) etcd-api-version=(\S+) member-id=1 data-dir=(\S+)$`), startTimeout)
	if m[1] != buildinfo.Version || m[2] != buildinfo.EtcdAPIVersion || m[3] != dataDir {
		t.Errorf("start line: version %q, etcd API %q, data dir %q; want %q, %q, %q", m[1], m[2], m[3], buildinfo.Version, buildinfo.EtcdAPIVersion, dataDir)
	}
	p.stderr.await(t, regexp.MustCompile(`level=INFO msg="serving peer traffic" node=default listen-peer-url=`+regexp.QuoteMeta(peer)+` `), startTimeout)
	p.stderr.await(t, regexp.MustCompile(`level=INFO msg="serving client traffic .*" node=default listen-client-url=`+regexp.QuoteMeta(client)+` `), startTimeout)
	p.stderr.await(t, regexp.MustCompile(`level=INFO msg="ready to serve client requests" node=default advertise-client-urls=\[`+regexp.QuoteMeta(client)+`\]$`), startTimeout)
	if strings.Contains(p.stderr.String(), "level=WARN") || strings.Contains(p.stderr.String(), "level=ERROR") {
		t.Errorf("warnings or errors while starting:\n%s", p.stderr.String())
	}
}

// checkStopLines checks the last lines of a node stopped by signal
// ("terminated", "interrupt"), and that its data dir stayed.
func checkStopLines(t *testing.T, p *proc, dir, signal string) {
	t.Helper()
	dataDir := filepath.Join(dir, "default.tessera")
	log := p.stderr.String()
	for _, want := range []string{
		`msg="received signal; shutting down" signal=` + signal,
		`msg="stopping Tessera" node=default`,
		`msg="stopped Tessera; its data stays in the data dir (a restart with the same --data-dir resumes)" node=default data-dir=` + dataDir + "\n",
	} {
		if !strings.Contains(log, want) {
			t.Errorf("no %q in the log", want)
		}
	}
	if strings.Contains(log, "level=WARN") || strings.Contains(log, "level=ERROR") {
		t.Errorf("warnings or errors in the log:\n%s", log)
	}
	if _, err := os.Stat(filepath.Join(dataDir, "engine")); err != nil {
		t.Errorf("data dir after shutdown: %v", err)
	}
}
