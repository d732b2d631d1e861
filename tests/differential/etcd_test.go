package differential

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/tesseradb/tessera/tests/proccluster"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

var (
	flagSeeds = flag.Int("differential.seeds", 0, "number of seeds per differential test (0: the default)")
	flagOps   = flag.Int("differential.ops", 0, "operations per seed (0: the default)")
)

// seedsAndOps returns the seeds (from first) and the number of operations
// for a differential test.
func seedsAndOps(first int64) ([]int64, int) {
	n, ops := 6, 1000
	if testing.Short() {
		n, ops = 2, 300
	}
	if *flagSeeds > 0 {
		n = *flagSeeds
	}
	if *flagOps > 0 {
		ops = *flagOps
	}
	var seeds []int64
	for i := range int64(n) {
		seeds = append(seeds, first+i)
	}
	return seeds, ops
}

// etcdBinary is the etcd to compare against: $TESSERA_ETCD, else the
// reference etcd 3.7.3 build (scripts/etcd-reference.sh; `make
// etcd-reference`). Tests skip, saying how to build it, when it is absent.
func etcdBinary() string {
	if p := os.Getenv("TESSERA_ETCD"); p != "" {
		return p
	}
	p, err := proccluster.ReferenceEtcd("etcd")
	if err != nil {
		return "(" + err.Error() + ")"
	}
	return p
}

// TestDifferentialEtcdVsEtcd runs the harness against two independent etcd
// servers: any difference is a bug of the harness (a nondeterministic
// workload or a wrong normalization), which is what this test is for.
func TestDifferentialEtcdVsEtcd(t *testing.T) {
	bin := etcdBinary()
	if _, err := os.Stat(bin); err != nil {
		t.Skipf("no etcd binary at %s (set TESSERA_ETCD): %v", bin, err)
	}
	a := startEtcd(t, bin, "a")
	b := startEtcd(t, bin, "b")
	seeds, nOps := seedsAndOps(1)
	for _, seed := range seeds {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			Run(t, seed, a, b, nOps)
		})
	}
	// B's revisions with gaps, as Tessera's: the revision mapping at work.
	for _, seed := range seeds[:min(2, len(seeds))] {
		t.Run(fmt.Sprintf("seed=%d,gaps", seed+100), func(t *testing.T) {
			RunOptions(t, a, b, Options{Seed: seed + 100, NOps: nOps, Leases: true, Compact: true, noiseB: true})
		})
	}
}

// TestHarnessDetectsDivergence runs both sides of the harness against one
// server, so that every write happens twice: the harness must report it.
func TestHarnessDetectsDivergence(t *testing.T) {
	bin := etcdBinary()
	if _, err := os.Stat(bin); err != nil {
		t.Skipf("no etcd binary at %s (set TESSERA_ETCD): %v", bin, err)
	}
	a := startEtcd(t, bin, "a")
	rec := &recordingTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		RunOptions(rec, a, a, Options{Seed: 1, NOps: 200, Prefix: "diverge/"})
	}()
	<-done
	for i := len(rec.cleanups) - 1; i >= 0; i-- {
		rec.cleanups[i]()
	}
	if rec.fatal == "" {
		t.Fatal("the harness found no difference between a server and itself one write later")
	}
	t.Logf("reported as expected: %.300s", rec.fatal)
}

// recordingTB records a fatal failure instead of failing the test.
type recordingTB struct {
	testing.TB
	fatal    string
	cleanups []func()
}

func (r *recordingTB) Helper()                        {}
func (r *recordingTB) Cleanup(f func())               { r.cleanups = append(r.cleanups, f) }
func (r *recordingTB) Errorf(format string, a ...any) { r.Fatalf(format, a...) }
func (r *recordingTB) Fatalf(format string, a ...any) {
	if r.fatal == "" {
		r.fatal = fmt.Sprintf(format, a...)
	}
	runtime.Goexit()
}

// startEtcd starts a single-node etcd through the process harness (free
// loopback ports, a temporary directory), waits until it serves, and
// returns a client. Cleanup stops exactly the started process.
func startEtcd(t *testing.T, bin, name string) *clientv3.Client {
	t.Helper()
	cfg := proccluster.DefaultConfig(name, bin, filepath.Join(t.TempDir(), "etcd"))
	cfg.Nodes = 1
	cfg.NodeName = func(int) string { return name }
	cfg.StartTimeout = 30 * time.Second
	cfg.ExtraArgs = []string{"--initial-cluster-token", "differential-" + name, "--logger", "zap", "--log-outputs", "stderr"}
	c := proccluster.StartForTest(t, cfg)
	cli, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatalf("client for etcd %s: %v", name, err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}
