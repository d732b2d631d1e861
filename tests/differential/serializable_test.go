package differential

import (
	"fmt"
	"os"
	"testing"

	"github.com/tesseradb/tessera/tests/testcluster"
)

// TestDifferentialSerializableThroughOneNode is TestDifferentialTesseraVsEtcd
// with serializable Ranges sent as such, through the node that served the
// writes (one client endpoint), on four ranges whose leaders are spread over
// three nodes: that node's replicas of some ranges are followers, and every
// serializable answer must still be etcd's (docs/decisions.md, "Serializable
// reads").
func TestDifferentialSerializableThroughOneNode(t *testing.T) {
	bin := etcdBinary()
	if _, err := os.Stat(bin); err != nil {
		t.Skipf("no etcd binary at %s (set TESSERA_ETCD): %v", bin, err)
	}
	seeds, nOps := seedsAndOps(3001)
	for _, seed := range seeds {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			prefix := fmt.Sprintf("diff/%d/", seed)
			var splits []string
			for _, c := range []string{"b", "d", "f"} {
				splits = append(splits, prefix+c)
			}
			c := testcluster.Start(t, testcluster.Options{Nodes: 3, SplitKeys: splits})
			c.WaitReady(t)
			// Data ranges 2..5: node 0 leads one, the others three.
			for g := uint64(2); g <= 5; g++ {
				c.TransferLeader(g, int(g%3))
			}
			etcd := startEtcd(t, bin, "etcd")
			RunOptions(t, etcd, c.NodeClient(t, 0), Options{
				Seed: seed, NOps: nOps, Prefix: prefix, Compact: true, KeepKeys: true,
				Skip: func(req any) bool { return writeSpansRanges(req, splits) },
			})
		})
	}
}
