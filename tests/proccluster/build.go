package proccluster

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// BinaryEnv names the environment variable that points the harness at a
// tessera binary instead of building one.
const BinaryEnv = "TESSERA_BINARY"

// BuildTessera returns the tessera binary the tests run: $TESSERA_BINARY
// if set, else one built into a new temporary directory (with the race
// detector when race is set). cleanup removes what it built.
func BuildTessera(race bool) (bin string, cleanup func(), err error) {
	if p := os.Getenv(BinaryEnv); p != "" {
		return p, func() {}, nil
	}
	return BuildCommand("tessera", race)
}

// BuildCommand builds the project's command cmd/<name> into a new
// temporary directory (with the race detector when race is set); cleanup
// removes it.
func BuildCommand(name string, race bool) (bin string, cleanup func(), err error) {
	dir, err := os.MkdirTemp("", name+"-bin-")
	if err != nil {
		return "", nil, fmt.Errorf("proccluster: %w", err)
	}
	cleanup = func() { _ = os.RemoveAll(dir) }
	bin = filepath.Join(dir, name)
	args := []string{"build", "-o", bin}
	if race {
		args = append(args, "-race")
	}
	args = append(args, "github.com/tesseradb/tessera/cmd/"+name)
	// go test puts its own go command first in PATH.
	build := exec.Command("go", args...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		cleanup()
		return "", nil, fmt.Errorf("proccluster: go %v: %w", args, err)
	}
	return bin, cleanup, nil
}
