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

// tesseraBin is the binary the tests run, set by TestMain.
var tesseraBin string

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	bin, cleanup, err := proccluster.BuildTessera(os.Getenv("TESSERA_SYSTEM_RACE") != "")
	if err != nil {
		fmt.Fprintln(os.Stderr, "system:", err)
		return 1
	}
	defer cleanup()
	tesseraBin = bin
	return m.Run()
}
