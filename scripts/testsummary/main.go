// Command testsummary runs `go test -json` with the given arguments, prints
// what a plain `go test` prints (package results, the output of failing
// tests, build errors), and ends with the tests that were skipped and why,
// so that a test skipped for a missing tool (etcd, etcdctl) does not pass
// unnoticed. It exits with go test's status. `make test` runs it:
//
//	go build -o bin/testsummary ./scripts/testsummary
//	GO=go bin/testsummary -race -timeout 15m ./...
//
// $GO names the go command (default: go).
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sort"
	"strings"
)

// event is one line of `go test -json` (cmd/test2json).
type event struct {
	Action  string
	Package string
	Test    string
	Output  string
}

// skip is a skipped test and the reason it logged.
type skip struct {
	pkg, test, reason string
}

func main() {
	goCmd := os.Getenv("GO")
	if goCmd == "" {
		goCmd = "go"
	}
	cmd := exec.Command(goCmd, append([]string{"test", "-json"}, os.Args[1:]...)...)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		fmt.Fprintln(os.Stderr, "testsummary:", err)
		os.Exit(2)
	}
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "testsummary:", err)
		os.Exit(2)
	}
	skips := summarize(stdout, os.Stdout)
	err = cmd.Wait()
	report(os.Stdout, skips)
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		os.Exit(exit.ExitCode())
	case err != nil:
		fmt.Fprintln(os.Stderr, "testsummary:", err)
		os.Exit(2)
	}
}

// summarize copies the interesting part of the event stream r to w and
// returns the skipped tests.
func summarize(r io.Reader, w io.Writer) []skip {
	type key struct{ pkg, test string }
	buffered := map[key][]string{}
	var skips []skip
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var e event
		if err := json.Unmarshal(line, &e); err != nil {
			fmt.Fprintln(w, string(line)) // not an event: show it as is
			continue
		}
		k := key{e.Package, e.Test}
		switch {
		case e.Action == "build-output":
			fmt.Fprint(w, e.Output)
		case e.Test == "" && e.Action == "output":
			if e.Output != "PASS\n" && !strings.HasPrefix(e.Output, "=== ") {
				fmt.Fprint(w, e.Output)
			}
		case e.Action == "output":
			buffered[k] = append(buffered[k], e.Output)
		case e.Action == "fail":
			for _, o := range buffered[k] {
				fmt.Fprint(w, o)
			}
			delete(buffered, k)
		case e.Action == "skip" && e.Test == "":
			// A package without test files: nothing was skipped.
		case e.Action == "skip":
			skips = append(skips, skip{pkg: e.Package, test: e.Test, reason: skipReason(buffered[k])})
			delete(buffered, k)
		case e.Action == "pass":
			delete(buffered, k)
		}
	}
	if err := sc.Err(); err != nil {
		fmt.Fprintln(w, "testsummary: reading go test's output:", err)
	}
	return skips
}

// skipReason is what a skipped test logged (t.Skip's message), on one line.
func skipReason(out []string) string {
	var parts []string
	for _, o := range out {
		o = strings.TrimSpace(o)
		if o == "" || strings.HasPrefix(o, "=== ") || strings.HasPrefix(o, "--- SKIP") {
			continue
		}
		parts = append(parts, o)
	}
	if len(parts) == 0 {
		return "(no reason given)"
	}
	return strings.Join(parts, " ")
}

// report prints the skipped tests, and how to get the tools they lacked.
func report(w io.Writer, skips []skip) {
	if len(skips) == 0 {
		fmt.Fprintln(w, "testsummary: no test skipped")
		return
	}
	sort.Slice(skips, func(i, j int) bool {
		if skips[i].pkg != skips[j].pkg {
			return skips[i].pkg < skips[j].pkg
		}
		return skips[i].test < skips[j].test
	})
	fmt.Fprintf(w, "\ntestsummary: %d tests skipped; they did not run:\n", len(skips))
	needEtcd := false
	for _, s := range skips {
		fmt.Fprintf(w, "  SKIP %s %s: %s\n", strings.TrimPrefix(s.pkg, "github.com/tesseradb/tessera/"), s.test, s.reason)
		if strings.Contains(s.reason, "etcd") {
			needEtcd = true
		}
	}
	if needEtcd {
		fmt.Fprintln(w, "testsummary: tests that compare with etcd or run etcdctl need etcd's binaries:"+
			" `make etcd-reference` builds etcd 3.7.3 (the release Tessera is compared with) from the Go module proxy, `sudo apt-get install etcd-server etcd-client` gives etcdctl (.ci/run does both), or point TESSERA_ETCD_DIR at a directory holding etcd 3.7's etcd and etcdctl.")
	}
}
