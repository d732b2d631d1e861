package proccluster

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// ReferenceVersion is the etcd release Tessera is compared against.
const ReferenceVersion = "3.7.3"

// ReferenceEtcdDirs lists where the reference etcd build is looked for, in
// order: $TESSERA_ETCD_DIR, scripts/etcd-reference.sh's default output
// directory, and /work/etcd373 (where the development machines keep it).
func ReferenceEtcdDirs() []string {
	var dirs []string
	if d := os.Getenv("TESSERA_ETCD_DIR"); d != "" {
		dirs = append(dirs, d)
	}
	cache := os.Getenv("XDG_CACHE_HOME")
	if cache == "" {
		if home, err := os.UserHomeDir(); err == nil {
			cache = filepath.Join(home, ".cache")
		}
	}
	if cache != "" {
		dirs = append(dirs, filepath.Join(cache, "tessera", "etcd-v"+ReferenceVersion))
	}
	return append(dirs, "/work/etcd373")
}

// ReferenceEtcd returns the path of tool ("etcd", "etcdctl" or "benchmark")
// of the reference etcd build (scripts/etcd-reference.sh builds it). For
// etcd and etcdctl it checks that the build is etcd 3.7. The error says
// where it looked and how to build it.
func ReferenceEtcd(tool string) (string, error) {
	dirs := ReferenceEtcdDirs()
	for _, d := range dirs {
		p := filepath.Join(d, tool)
		if _, err := os.Stat(p); err != nil {
			continue
		}
		if tool == "benchmark" {
			return p, nil
		}
		arg := "--version"
		if tool == "etcdctl" {
			arg = "version"
		}
		out, err := exec.Command(p, arg).Output()
		if err != nil {
			return "", fmt.Errorf("%s %s: %w", p, arg, err)
		}
		if !bytes.Contains(out, []byte("ersion: 3.7.")) {
			line, _, _ := bytes.Cut(bytes.TrimSpace(out), []byte("\n"))
			return "", fmt.Errorf("%s is not etcd 3.7 (%s); build the reference with scripts/etcd-reference.sh", p, line)
		}
		return p, nil
	}
	return "", fmt.Errorf("no etcd %s build (%s) in %v; scripts/etcd-reference.sh builds one (make etcd-reference), or set TESSERA_ETCD_DIR", ReferenceVersion, tool, dirs)
}
