package system_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/tesseradb/tessera/tests/proccluster"
)

// etcdBinary returns the etcd to compare against: $TESSERA_ETCD, else the
// reference build (proccluster.ReferenceEtcd: scripts/etcd-reference.sh
// builds it). The test is skipped when there is none, or when it is not
// etcd 3.7: Debian's 3.4 has no /v3/auth/status in its gateway and answers
// several requests differently, so it cannot stand in for it.
func etcdBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("TESSERA_ETCD"); p != "" {
		out, err := exec.Command(p, "--version").Output()
		if err != nil {
			t.Fatalf("%s --version: %v", p, err)
		}
		if !bytes.Contains(out, []byte("etcd Version: 3.7.")) {
			t.Skipf("%s is not etcd 3.7 (%s); build the reference with scripts/etcd-reference.sh", p, bytes.TrimSpace(bytes.SplitN(out, []byte("\n"), 2)[0]))
		}
		return p
	}
	p, err := proccluster.ReferenceEtcd("etcd")
	if err != nil {
		t.Skip(err)
	}
	return p
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
