package compare

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
)

// Machine describes where a comparison ran, for docs/benchmarks.md.
type Machine struct {
	CPU        string `json:"cpu"`
	CPUs       int    `json:"cpus"`
	Memory     string `json:"memory"`
	OS         string `json:"os"`
	Kernel     string `json:"kernel"`
	DataDir    string `json:"data_dir"`
	DataDevice string `json:"data_device"`
	DataFS     string `json:"data_fs"`
	Go         string `json:"go"`
}

// DescribeMachine reads what Linux says about this machine and the disk
// under dataDir. Unknown facts are "unknown".
func DescribeMachine(dataDir string) Machine {
	m := Machine{
		CPU: "unknown", CPUs: runtime.NumCPU(), Memory: "unknown", OS: runtime.GOOS, Kernel: "unknown",
		DataDir: dataDir, DataDevice: "unknown", DataFS: "unknown", Go: runtime.Version(),
	}
	if v := fieldOf("/proc/cpuinfo", "model name", ':'); v != "" {
		m.CPU = v
	}
	if v := fieldOf("/proc/meminfo", "MemTotal", ':'); v != "" {
		if kb, err := strconv.ParseInt(strings.TrimSuffix(v, " kB"), 10, 64); err == nil {
			m.Memory = fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
		}
	}
	if v := fieldOf("/etc/os-release", "PRETTY_NAME", '='); v != "" {
		m.OS = strings.Trim(v, `"`)
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if dev, fs := mountOf(dataDir); dev != "" {
		m.DataDevice, m.DataFS = dev, fs
	}
	return m
}

// fieldOf returns the value of the first line "key<sep>value" of a file.
func fieldOf(path, key string, sep byte) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), string(sep))
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// mountOf returns the device and filesystem type of the mount holding dir.
func mountOf(dir string) (dev, fstype string) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", ""
	}
	if r, err := filepath.EvalSymlinks(abs); err == nil {
		abs = r
	}
	f, err := os.Open("/proc/mounts")
	if err != nil {
		return "", ""
	}
	defer f.Close()
	best := -1
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 3 {
			continue
		}
		mnt := fs[1]
		if (abs == mnt || strings.HasPrefix(abs, strings.TrimSuffix(mnt, "/")+"/") || mnt == "/") && len(mnt) > best {
			best, dev, fstype = len(mnt), fs[0], fs[2]
		}
	}
	return dev, fstype
}

// LoadAvg returns the 1-minute load average, or -1 when unknown. Other work
// on the machine shows here: the runs share its cores with it.
func LoadAvg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return -1
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return -1
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return -1
	}
	return v
}
