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

// tesseraBin is the binary the tests run, set by TestMain; tessctlBin is
// tessctl, built next to it (TestReadme runs it).
var tesseraBin, tessctlBin string

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	dir, err := os.MkdirTemp("", "tessera-system-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "system:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	tesseraBin, tessctlBin = filepath.Join(dir, "tessera"), filepath.Join(dir, "tessctl")
	if p := os.Getenv("TESSERA_BINARY"); p != "" {
		tesseraBin = p
	} else if err := goBuild(tesseraBin, "github.com/tesseradb/tessera/cmd/tessera"); err != nil {
		fmt.Fprintln(os.Stderr, "system:", err)
		return 1
	}
	if err := goBuild(tessctlBin, "github.com/tesseradb/tessera/cmd/tessctl"); err != nil {
		fmt.Fprintln(os.Stderr, "system:", err)
		return 1
	}
	return m.Run()
}

// goBuild builds pkg into out (with the race detector when
// TESSERA_SYSTEM_RACE is set).
func goBuild(out, pkg string) error {
	args := []string{"build", "-o", out}
	if os.Getenv("TESSERA_SYSTEM_RACE") != "" {
		args = append(args, "-race")
	}
	args = append(args, pkg)
	// go test puts its own go command first in PATH.
	build := exec.Command("go", args...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("go %v: %w", args, err)
	}
	return nil
}
