package robustness

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Environment and flags:
//
//	TESSERA_BINARY          use this tessera binary instead of building one
//	ROBUSTNESS_LONG=1       or -robustness.long: the full set (3 and 5 nodes, longer traffic)
//	ROBUSTNESS_ARTIFACTS    directory for failure artifacts (history, visualization, node logs)
var longRuns = flag.Bool("robustness.long", os.Getenv("ROBUSTNESS_LONG") != "", "run the long robustness scenarios (3 and 5 nodes)")

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
	dir, err := os.MkdirTemp("", "tessera-robustness-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "robustness:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	tesseraBin = filepath.Join(dir, "tessera")
	// go test puts its own go command first in PATH.
	build := exec.Command("go", "build", "-o", tesseraBin, "github.com/tesseradb/tessera/cmd/tessera")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "robustness: build tessera: %v\n", err)
		return 1
	}
	return m.Run()
}
