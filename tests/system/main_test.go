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
	"testing"

	"github.com/tesseradb/tessera/tests/proccluster"
)

// tesseraBin is the binary the tests run, set by TestMain; tessctlBin is
// tessctl, built next to it (TestReadme runs it).
var tesseraBin, tessctlBin string

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	race := os.Getenv("TESSERA_SYSTEM_RACE") != ""
	bin, cleanup, err := proccluster.BuildTessera(race)
	if err != nil {
		fmt.Fprintln(os.Stderr, "system:", err)
		return 1
	}
	defer cleanup()
	ctl, ctlCleanup, err := proccluster.BuildCommand("tessctl", race)
	if err != nil {
		fmt.Fprintln(os.Stderr, "system:", err)
		return 1
	}
	defer ctlCleanup()
	tesseraBin, tessctlBin = bin, ctl
	return m.Run()
}
