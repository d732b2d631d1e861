package engine

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// BenchmarkMVCCGetApply measures the apply path's read of a key's previous
// version (an indexed batch over the engine) with n versions in the
// versions, as under a sustained put load.
func BenchmarkMVCCGetApply(b *testing.B) {
	for _, n := range []int{1000, 50_000, 200_000} {
		b.Run(fmt.Sprintf("versions=%d", n), func(b *testing.B) {
			cfg := DefaultConfig(b.TempDir())
			cfg.Registerer = prometheus.NewRegistry()
			e, err := Open(cfg)
			if err != nil {
				b.Fatal(err)
			}
			defer e.Close()
			key := func(i int) []byte { return fmt.Appendf(nil, "key-%08d-%020d", i, i*7919) }
			val := make([]byte, 256)
			w := e.NewWriteBatch()
			for i := range n {
				if err := MVCCPut(w, key(i), Revision(i+1), Value{CreateRev: Revision(i + 1), Version: 1, Data: val}); err != nil {
					b.Fatal(err)
				}
				if w.Len() > 1<<20 {
					if err := w.Commit(false); err != nil {
						b.Fatal(err)
					}
					w.Close()
					w = e.NewWriteBatch()
				}
			}
			if err := w.Commit(false); err != nil {
				b.Fatal(err)
			}
			w.Close()
			for _, mode := range []string{"reused-iterator", "iterator-per-key"} {
				b.Run(mode, func(b *testing.B) {
					batch := e.NewBatch()
					defer batch.Close()
					var r Reader = batch
					if mode == "iterator-per-key" {
						r = hiddenBatch{batch} // MVCCGet cannot see the batch: one iterator per call
					}
					b.ResetTimer()
					for range b.N {
						if _, _, err := MVCCGet(r, key(rand.IntN(n)), Revision(n+1)); err != nil {
							b.Fatal(err)
						}
					}
				})
			}
		})
	}
}

// hiddenBatch is a Reader over a batch that MVCCGet does not recognise as
// one.
type hiddenBatch struct{ Reader }
