package bench

import (
	"context"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// rangeWorkload reads one random key of a preloaded key space per request,
// or, with PrefixKeys > 0, the whole of a preloaded prefix of PrefixKeys
// keys (which Tessera may have cut into several ranges).
type rangeWorkload struct {
	cfg  WorkloadConfig
	env  *Env
	keys KeyGen
}

var _ Workload = (*rangeWorkload)(nil)

func (w *rangeWorkload) Name() string { return "range" }

func (w *rangeWorkload) Params() map[string]any {
	p := map[string]any{
		"key-size": w.cfg.KeySize, "val-size": w.cfg.ValueSize,
		"consistency": string(w.cfg.Consistency),
	}
	if w.cfg.PrefixKeys > 0 {
		p["prefix-keys"] = w.cfg.PrefixKeys
	} else {
		p["key-space"] = w.cfg.KeySpace
	}
	return p
}

// RangePrefixKeys returns the key names the range workload uses for a
// prefix of n keys under cfg, so that a caller can cut them into ranges.
func RangePrefixKeys(cfg WorkloadConfig, n int) (KeyGen, error) {
	return NewKeyGen(cfg.KeyPrefix("range")+"prefix/", cfg.KeySize, n)
}

func (w *rangeWorkload) Setup(ctx context.Context, env *Env) error {
	w.env = env
	var err error
	if w.keys, err = w.cfg.keyGen(w.Name()); err != nil {
		return err
	}
	return preload(ctx, env, w.keys, w.keys.Space(), value(w.cfg.ValueSize), w.cfg.SkipPreload)
}

func (w *rangeWorkload) Worker(i int) (Worker, error) {
	cli := w.env.Client(i)
	if w.cfg.PrefixKeys > 0 {
		opts := readOpts(w.cfg.Consistency, clientv3.WithPrefix())
		want := int64(w.cfg.PrefixKeys)
		check := w.cfg.Consistency == Linearizable
		return WorkerFunc(func(ctx context.Context) (string, error) {
			resp, err := cli.Get(ctx, w.keys.Prefix(), opts...)
			if err == nil && check && (resp.Count != want || int64(len(resp.Kvs)) != want) {
				// A linearizable read after the preload must see every key;
				// fewer means the server lost part of the span.
				err = fmt.Errorf("range over prefix returned %d keys (count %d), want %d", len(resp.Kvs), resp.Count, want)
			}
			return "range", err
		}), nil
	}
	opts := readOpts(w.cfg.Consistency)
	pick := newKeyPicker(w.keys.Space(), nil, w.env.Rand(i))
	return WorkerFunc(func(ctx context.Context) (string, error) {
		_, err := cli.Get(ctx, w.keys.Key(pick.next()), opts...)
		return "range", err
	}), nil
}

func (w *rangeWorkload) Finish(context.Context, RunSpan, *Recorder, *Result) error { return nil }

func (w *rangeWorkload) Close(context.Context) error { return nil }
