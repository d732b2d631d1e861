package compare

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
)

// clockTicks is the kernel's USER_HZ, the unit of utime and stime in
// /proc/PID/stat: 100 on every Linux architecture Go supports (the value
// sysconf(_SC_CLK_TCK) reports), so the figures are good to 10 ms per
// process and run.
const clockTicks = 100

// processCPU returns the CPU time (user + system) the process has used so
// far, from /proc/PID/stat.
func processCPU(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("compare: cpu of process %d: %w", pid, err)
	}
	// The command name (field 2) is in parentheses and may hold spaces:
	// the fields after the last ')' start at field 3 (state).
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("compare: cpu of process %d: malformed stat %q", pid, b)
	}
	f := bytes.Fields(b[i+1:])
	// utime and stime are fields 14 and 15, so 11 and 12 after the state.
	if len(f) < 13 {
		return 0, fmt.Errorf("compare: cpu of process %d: stat has %d fields", pid, len(f)+2)
	}
	ut, err1 := strconv.ParseUint(string(f[11]), 10, 64)
	st, err2 := strconv.ParseUint(string(f[12]), 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("compare: cpu of process %d: utime %q stime %q", pid, f[11], f[12])
	}
	return float64(ut+st) / clockTicks, nil
}

// clusterCPU is the CPU time used so far by all the given processes; -1
// when any cannot be read (not Linux, or a process gone).
func clusterCPU(pids []int) float64 {
	total := 0.0
	for _, pid := range pids {
		s, err := processCPU(pid)
		if err != nil {
			return -1
		}
		total += s
	}
	return total
}

// pids are the system's server processes.
func (s *system) pids() []int {
	var out []int
	for _, n := range s.cluster.Nodes() {
		out = append(out, n.PID())
	}
	return out
}
