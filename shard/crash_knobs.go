package shard

import (
	"fmt"
	"os"
	"strings"
	"syscall"
)

// Crash points: test knobs that SIGKILL the node's own process at one step
// of a split or a merge, so that tests of real processes
// (tests/system/split_crash_test.go) can check that a crash at that step
// recovers to one consistent layout. They are off unless the environment
// variable CrashPointEnv names the point (a comma-separated list names
// several); production never sets it.
const CrashPointEnv = "TESSERA_TEST_CRASH_AT"

// The crash points, in the order a split or a merge reaches them.
const (
	// CrashSplitAfterPropose: the leader proposed the split command and
	// has not seen it applied.
	CrashSplitAfterPropose = "split-after-propose"
	// CrashSplitAfterApply: a replica's split batch committed; the Store
	// has not opened the right half.
	CrashSplitAfterApply = "split-after-apply"
	// CrashSplitBeforeDirectory: the split applied on the leader; the
	// directory has not been told.
	CrashSplitBeforeDirectory = "split-before-directory"
	// CrashMergeAfterFreeze: the initiator froze the right range and has
	// not proposed the merge.
	CrashMergeAfterFreeze = "merge-after-freeze"
	// CrashMergeAfterApply: a replica's merge batch committed (the right's
	// state deleted, its tombstone written); the Store has not stopped
	// the right's raft group nor removed its raft state.
	CrashMergeAfterApply = "merge-after-apply"
	// CrashMergeBeforeDirectory: the merge applied on the initiator; the
	// directory has not been told.
	CrashMergeBeforeDirectory = "merge-before-directory"
)

// crashPoints is read once, at start.
var crashPoints = parseCrashPoints(os.Getenv(CrashPointEnv))

func parseCrashPoints(s string) map[string]bool {
	if s == "" {
		return nil
	}
	m := map[string]bool{}
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			m[p] = true
		}
	}
	return m
}

// CrashPoint kills the process with SIGKILL if the crash point is enabled
// (CrashPointEnv). It writes one line to stderr first, so a test can tell
// the crash came from this point.
func CrashPoint(point string) {
	if !crashPoints[point] {
		return
	}
	fmt.Fprintf(os.Stderr, "tessera: crash point %s reached: SIGKILL\n", point)
	_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {} // the signal is on its way
}
