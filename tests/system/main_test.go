// Package system_test runs Tessera as real processes: it builds the tessera
// binary once, starts clusters of it on free loopback ports with their data
// in temporary directories, kills them (SIGKILL) or stops them (SIGTERM) and
// restarts them with the same flags, and checks what etcd clients
// (go.etcd.io/etcd/client/v3 and Debian's etcdctl) see.
//
// Environment:
//
//	TESSERA_BINARY      use this tessera binary instead of building one
//	TESSERA_SYSTEM_RACE build the binary with the race detector (slow)
//	TESSERA_ETCDCTL     the etcdctl to run (default /usr/bin/etcdctl)
package system_test

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// tesseraBin is the binary the tests run, set by TestMain.
var tesseraBin string

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	if p := os.Getenv("TESSERA_BINARY"); p != "" {
		tesseraBin = p
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "tessera-system-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "system:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	tesseraBin = filepath.Join(dir, "tessera")
	args := []string{"build", "-o", tesseraBin}
	if os.Getenv("TESSERA_SYSTEM_RACE") != "" {
		args = append(args, "-race")
	}
	args = append(args, "github.com/tesseradb/tessera/cmd/tessera")
	// go test puts its own go command first in PATH.
	build := exec.Command("go", args...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "system: go %v: %v\n", args, err)
		return 1
	}
	return m.Run()
}
