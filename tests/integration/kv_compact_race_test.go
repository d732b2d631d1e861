package integration_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestReadRacingCompactionSeesEveryKey: plain gets of a prefix while the
// keys under it are rewritten and the history is compacted at the current
// revision over and over (etcd's periodic compaction at its head) see
// every key, with nothing but ordinary client requests. A get is served at
// the timestamp it fetched first; a compaction at a later revision may
// apply before the range reads, and its physical deletion keeps only the
// newest version at or below the compaction revision, which may be newer
// than the get. Before the fix the range served the get from those
// versions anyway and a key rewritten meanwhile was missing from the
// answer (issue #10); now the range refuses such a read and the router
// retries it at a fresh timestamp.
func TestReadRacingCompactionSeesEveryKey(t *testing.T) {
	_, cli := newClusterClient(t)
	const nKeys, reads = 5, 200
	for i := range nKeys {
		put(t, cli, fmt.Sprintf("c/%d", i), "0")
	}
	stop := make(chan struct{})
	var bg sync.WaitGroup
	bgErr := make(chan error, 2)
	loop := func(name string, step func(ctx context.Context, i int) error) {
		bg.Add(1)
		go func() {
			defer bg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
				err := step(ctx, i)
				cancel()
				if err != nil {
					bgErr <- fmt.Errorf("%s: %w", name, err)
					return
				}
			}
		}()
	}
	loop("writer", func(ctx context.Context, i int) error {
		_, err := cli.Put(ctx, fmt.Sprintf("c/%d", i%nKeys), fmt.Sprint(i+1))
		return err
	})
	loop("compactor", func(ctx context.Context, _ int) error {
		g, err := cli.Get(ctx, "e")
		if err != nil {
			return err
		}
		_, err = cli.Compact(ctx, g.Header.Revision)
		return err
	})
	defer func() {
		close(stop)
		bg.Wait()
	}()

	compacted := 0
	for n := range reads {
		select {
		case err := <-bgErr:
			t.Fatal(err)
		default:
		}
		g, err := cli.Get(tctx(t), "c/", clientv3.WithPrefix())
		if errIs(err, rpctypes.ErrGRPCCompacted) {
			// Every attempt raced a newer compaction: refused, never
			// partial.
			compacted++
			continue
		}
		must(t, "get", err)
		if len(g.Kvs) != nKeys {
			t.Fatalf("read %d at %d: %d keys, want %d: %s", n, g.Header.Revision, len(g.Kvs), nKeys, fmtKVs(g.Kvs))
		}
	}
	t.Logf("%d of %d gets refused as compacted after every retry", compacted, reads)
	if compacted > reads/10 {
		t.Errorf("%d of %d gets refused as compacted", compacted, reads)
	}
}
