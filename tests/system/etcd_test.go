package system_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/tesseradb/tessera/tests/proccluster"
)

// etcdBinary returns the etcd to compare against: $TESSERA_ETCD, else the
// 3.7.3 build under /work/etcd373, else Debian's /usr/bin/etcd. The test
// is skipped when there is none.
func etcdBinary(t *testing.T) string {
	t.Helper()
	cands := []string{"/work/etcd373/etcd", "/usr/bin/etcd"}
	if p := os.Getenv("TESSERA_ETCD"); p != "" {
		cands = []string{p}
	}
	for _, p := range cands {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Skipf("no etcd binary (tried %v; set TESSERA_ETCD)", cands)
	return ""
}

// startEtcd starts a one-member etcd through the shared process harness
// and returns its client URL once it serves; it is stopped when the test
// ends.
func startEtcd(t *testing.T, bin string) string {
	t.Helper()
	cfg := proccluster.DefaultConfig("etcd", bin, filepath.Join(t.TempDir(), "etcd"))
	cfg.Nodes = 1
	c := proccluster.StartForTest(t, cfg)
	return c.Node(0).ClientURL
}
