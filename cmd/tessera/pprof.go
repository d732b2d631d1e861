package main

import "runtime"

// Sampling rates of the contention profiles served with --enable-pprof
// (/debug/pprof/mutex and /debug/pprof/block): one in mutexProfileFraction
// contended lock hand-offs, and blocking events about every
// blockProfileRateNs of time blocked. Off by default, as in Go: they cost a
// little on every contended lock and every blocking channel operation.
const (
	mutexProfileFraction = 100
	blockProfileRateNs   = 10_000
)

// enableContentionProfiles turns on the mutex and block profiles. They are
// process-wide runtime settings, so they are set here, where the process is
// wired, and only when profiling was asked for.
func enableContentionProfiles(on bool) {
	if !on {
		return
	}
	runtime.SetMutexProfileFraction(mutexProfileFraction)
	runtime.SetBlockProfileRate(blockProfileRateNs)
}
