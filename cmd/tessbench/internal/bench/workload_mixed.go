package bench

import (
	"context"
)

// mixedWorkload sends reads (ReadRatio of the requests) and puts to random
// keys of a preloaded key space. Reads and writes have their own histograms.
type mixedWorkload struct {
	cfg  WorkloadConfig
	env  *Env
	keys KeyGen
	val  string
}

var _ Workload = (*mixedWorkload)(nil)

func (w *mixedWorkload) Name() string { return "mixed" }

func (w *mixedWorkload) Params() map[string]any {
	return map[string]any{
		"key-size": w.cfg.KeySize, "val-size": w.cfg.ValueSize, "key-space": w.cfg.KeySpace,
		"read-ratio": w.cfg.ReadRatio, "consistency": string(w.cfg.Consistency),
	}
}

func (w *mixedWorkload) Setup(ctx context.Context, env *Env) error {
	w.env = env
	keys, err := w.cfg.keyGen(w.Name())
	if err != nil {
		return err
	}
	w.keys = keys
	v := value(w.cfg.ValueSize)
	w.val = string(v)
	return preload(ctx, env, keys, keys.Space(), v, w.cfg.SkipPreload)
}

func (w *mixedWorkload) Worker(i int) (Worker, error) {
	cli := w.env.Client(i)
	rng := w.env.Rand(i)
	pick := newKeyPicker(w.keys.Space(), nil, rng)
	opts := readOpts(w.cfg.Consistency)
	return WorkerFunc(func(ctx context.Context) (string, error) {
		k := w.keys.Key(pick.next())
		if rng.Float64() < w.cfg.ReadRatio {
			_, err := cli.Get(ctx, k, opts...)
			return "read", err
		}
		_, err := cli.Put(ctx, k, w.val)
		return "write", err
	}), nil
}

func (w *mixedWorkload) Finish(context.Context, RunSpan, *Recorder, *Result) error { return nil }

func (w *mixedWorkload) Close(context.Context) error { return nil }
