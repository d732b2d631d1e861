package bench

import (
	"context"
	"sync/atomic"
)

// putWorkload writes values of ValueSize bytes to keys of KeySize bytes
// chosen at random (or in sequence) from KeySpace keys.
// keyedWrites is what the put-like workloads share: their keys, the value
// they write and a sequence for sequential keys.
type keyedWrites struct {
	cfg  WorkloadConfig
	env  *Env
	keys KeyGen
	val  string
	seq  atomic.Int64
}

func (w *keyedWrites) Params() map[string]any {
	return map[string]any{
		"key-size": w.cfg.KeySize, "val-size": w.cfg.ValueSize,
		"key-space": w.cfg.KeySpace, "seq-keys": w.cfg.Sequential,
	}
}

// setup prepares the keys of the workload called name.
func (w *keyedWrites) setup(name string, env *Env) error {
	w.env = env
	keys, err := w.cfg.keyGen(name)
	if err != nil {
		return err
	}
	w.keys = keys
	w.val = string(value(w.cfg.ValueSize))
	return nil
}

type putWorkload struct {
	keyedWrites
}

var _ Workload = (*putWorkload)(nil)

func (w *putWorkload) Name() string { return "put" }

func (w *putWorkload) Setup(_ context.Context, env *Env) error { return w.setup(w.Name(), env) }

func (w *putWorkload) Worker(i int) (Worker, error) {
	cli := w.env.Client(i)
	var seq *atomic.Int64
	if w.cfg.Sequential {
		seq = &w.seq
	}
	pick := newKeyPicker(w.keys.Space(), seq, w.env.Rand(i))
	return WorkerFunc(func(ctx context.Context) (string, error) {
		_, err := cli.Put(ctx, w.keys.Key(pick.next()), w.val)
		return "put", err
	}), nil
}

func (w *putWorkload) Finish(context.Context, RunSpan, *Recorder, *Result) error { return nil }

func (w *putWorkload) Close(context.Context) error { return nil }
