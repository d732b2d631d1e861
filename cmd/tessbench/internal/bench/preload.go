package bench

import (
	"context"
	"fmt"
	"sync/atomic"

	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/sync/errgroup"
)

// preload writes keys 0..n-1 of g with value v, using the run's clients in
// parallel. It skips the work when exactly n keys are already under the
// prefix, as after an earlier round of the same workload.
func preload(ctx context.Context, env *Env, g KeyGen, n int, v []byte, skip bool) error {
	if skip {
		return nil
	}
	resp, err := env.Client(0).Get(ctx, g.Prefix(), clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return fmt.Errorf("bench: preload: count %q: %w", g.Prefix(), err)
	}
	if resp.Count == int64(n) {
		env.Logger.Debug("preload skipped: keys present", "prefix", g.Prefix(), "keys", n)
		return nil
	}
	env.Logger.Info("preloading", "prefix", g.Prefix(), "keys", n, "value_size", len(v))
	if resp.Count > int64(n) {
		// Keys from a run with another key space would be ranged too.
		if _, err := env.Client(0).Delete(ctx, g.Prefix(), clientv3.WithPrefix()); err != nil {
			return fmt.Errorf("bench: preload: clear %q: %w", g.Prefix(), err)
		}
	}
	var next atomic.Int64
	eg, ctx := errgroup.WithContext(ctx)
	val := string(v)
	for i := 0; i < env.Run.Clients; i++ {
		cli := env.Client(i)
		eg.Go(func() error {
			for {
				k := next.Add(1) - 1
				if k >= int64(n) {
					return nil
				}
				rctx, cancel := context.WithTimeout(ctx, env.Run.Timeout)
				_, err := cli.Put(rctx, g.Key(int(k)), val)
				cancel()
				if err != nil {
					return fmt.Errorf("bench: preload %q: %w", g.Key(int(k)), err)
				}
			}
		})
	}
	return eg.Wait()
}
