package bench

import (
	"context"
	"fmt"
	"sync/atomic"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// txnPutWorkload sends compare-and-swap transactions: put k if k's mod
// revision is still the one last seen, else read k's current mod revision.
//
// The last seen mod revision of each key is shared by all clients, so a
// compare fails only when another client wrote the key in between (a real
// conflict) or when the key changed outside the run. Swaps and conflicts
// have their own histograms ("txn-put" and "txn-put-conflict").
type txnPutWorkload struct {
	keyedWrites
	revs      []atomic.Int64 // last seen mod revision, by key index
	conflicts atomic.Int64
}

var _ Workload = (*txnPutWorkload)(nil)

func (w *txnPutWorkload) Name() string { return "txn-put" }

func (w *txnPutWorkload) Setup(ctx context.Context, env *Env) error {
	if err := w.setup(w.Name(), env); err != nil {
		return err
	}
	keys := w.keys
	w.revs = make([]atomic.Int64, keys.Space())
	// Learn the mod revisions of keys left by an earlier run, so the first
	// touch of each is not a conflict.
	idx := make(map[string]int, keys.Space())
	for i := range keys.Space() {
		idx[keys.Key(i)] = i
	}
	resp, err := env.Client(0).Get(ctx, keys.Prefix(), clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return fmt.Errorf("bench: txn-put: read mod revisions: %w", err)
	}
	for _, kv := range resp.Kvs {
		if i, ok := idx[string(kv.Key)]; ok {
			w.revs[i].Store(kv.ModRevision)
		}
	}
	return nil
}

func (w *txnPutWorkload) Worker(i int) (Worker, error) {
	cli := w.env.Client(i)
	var seq *atomic.Int64
	if w.cfg.Sequential {
		seq = &w.seq
	}
	pick := newKeyPicker(w.keys.Space(), seq, w.env.Rand(i))
	return WorkerFunc(func(ctx context.Context) (string, error) {
		ki := pick.next()
		k := w.keys.Key(ki)
		rev := w.revs[ki].Load()
		resp, err := cli.Txn(ctx).
			If(clientv3.Compare(clientv3.ModRevision(k), "=", rev)).
			Then(clientv3.OpPut(k, w.val)).
			Else(clientv3.OpGet(k, clientv3.WithKeysOnly())).
			Commit()
		if err != nil {
			return "txn-put", err
		}
		if resp.Succeeded {
			// The put's revision is the response's header revision.
			w.revs[ki].CompareAndSwap(rev, resp.Header.Revision)
			return "txn-put", nil
		}
		w.conflicts.Add(1)
		var cur int64
		if len(resp.Responses) > 0 {
			if rr := resp.Responses[0].GetResponseRange(); rr != nil && len(rr.Kvs) > 0 {
				cur = rr.Kvs[0].ModRevision
			}
		}
		w.revs[ki].CompareAndSwap(rev, cur)
		return "txn-put-conflict", nil
	}), nil
}

func (w *txnPutWorkload) Finish(_ context.Context, _ RunSpan, _ *Recorder, res *Result) error {
	res.Counters["txn_conflicts"] = w.conflicts.Load()
	return nil
}

func (w *txnPutWorkload) Close(context.Context) error { return nil }
