// Package benchtest helps tessbench's tests run against a real etcd: it
// starts a cluster of the installed etcd in the test's temporary directory
// and stops it (only it) when the test ends. Tests are skipped, with a
// message, where etcd is not installed.
package benchtest

import (
	"os/exec"
	"testing"
	"time"

	cluster "github.com/tesseradb/tessera/tests/proccluster"
)

// EtcdBin returns the installed etcd binary, or skips the test.
func EtcdBin(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("etcd")
	if err != nil {
		t.Skip("etcd is not installed (apt-get install etcd-server); skipping the run against a real etcd")
	}
	return p
}

// StartEtcd starts an etcd cluster of n members on free loopback ports and
// returns its client endpoints. It is stopped when the test ends.
func StartEtcd(t testing.TB, n int) *cluster.Cluster {
	t.Helper()
	cfg := cluster.DefaultConfig("etcd", EtcdBin(t), t.TempDir()+"/etcd")
	cfg.Nodes = n
	cfg.StartTimeout = 30 * time.Second
	return cluster.StartForTest(t, cfg)
}
