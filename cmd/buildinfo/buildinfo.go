// Package buildinfo holds Tessera's version, shared by the tessera server,
// tessctl and tessbench. It imports nothing of Tessera's, so a client tool
// gets it without the storage packages.
package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"go.etcd.io/etcd/api/v3/version"
)

// Version is Tessera's release version. A release build sets it with
// -ldflags "-X github.com/tesseradb/tessera/cmd/buildinfo.Version=…".
var Version = "0.1.0-dev"

// StorageVersion is the version of the data directory's format: the
// Tessera release that introduced the format this binary writes. It changes
// only when the format does.
const StorageVersion = "0.1.0"

// EtcdAPIVersion is the version of etcd's API Tessera serves (that of the
// go.etcd.io/etcd/api module it is built with).
var EtcdAPIVersion = version.Version

// EtcdClusterVersion is etcd's "cluster version" of that API, major.minor.0
// (what etcd's /version reports as etcdcluster).
func EtcdClusterVersion() string { return version.Cluster(EtcdAPIVersion) + ".0" }

// ServerVersion is the version a node reports where etcd reports its own
// (Maintenance.Status, so etcdctl endpoint status): etcd's API version with
// Tessera's as semver build metadata, e.g. "3.7.3+tessera.0.1.0-dev". Clients
// that parse the major.minor of a server's version (clientv3's
// RejectOldCluster, etcdctl) keep working.
func ServerVersion() string { return EtcdAPIVersion + "+tessera." + Version }

// Commit returns the VCS revision the binary was built from ("" if
// unknown), with "-dirty" when the tree had local changes.
func Commit() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	var rev string
	var dirty bool
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if rev != "" && dirty {
		rev += "-dirty"
	}
	return rev
}

// Lines returns the text of `tessera --version` / `tessctl version`, in
// the shape of etcd's --version output.
func Lines(program string) string {
	commit := Commit()
	if commit == "" {
		commit = "unknown"
	}
	return fmt.Sprintf("%s Version: %s\nGit SHA: %s\nGo Version: %s\nGo OS/Arch: %s/%s\netcd API Version: %s\nStorage Version: %s\n",
		program, Version, commit, runtime.Version(), runtime.GOOS, runtime.GOARCH, EtcdAPIVersion, StorageVersion)
}
