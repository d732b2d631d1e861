package bench

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Dial opens cfg.Conns connections to cfg.Endpoints and checks that each one
// answers a serializable read, so that connection setup is not part of the
// first requests' latency.
func Dial(ctx context.Context, cfg RunConfig) ([]*clientv3.Client, error) {
	var clients []*clientv3.Client
	closeAll := func() {
		for _, c := range clients {
			_ = c.Close()
		}
	}
	for i := range cfg.Conns {
		c, err := clientv3.New(clientv3.Config{
			Endpoints:   cfg.Endpoints,
			DialTimeout: cfg.DialTimeout,
			TLS:         cfg.TLS,
			Username:    cfg.Username,
			Password:    cfg.Password,
			Logger:      zap.NewNop(), // failures are counted per request, not logged
			Context:     ctx,
		})
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("bench: connect %v: %w", cfg.Endpoints, err)
		}
		clients = append(clients, c)
		rctx, cancel := context.WithTimeout(ctx, cfg.DialTimeout)
		_, err = c.Get(rctx, "tessbench/ping", clientv3.WithSerializable())
		cancel()
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("bench: connection %d to %v does not answer: %w", i, cfg.Endpoints, err)
		}
	}
	return clients, nil
}

// Execute runs the named workload against run.Endpoints and returns what it
// measured. Request failures are in the result; the error reports only what
// kept the run from happening (no connection, a failed preload).
func Execute(ctx context.Context, run RunConfig, wl WorkloadConfig, name string, logger *slog.Logger) (*Result, error) {
	if err := run.Validate(); err != nil {
		return nil, err
	}
	w, err := NewWorkload(name, wl)
	if err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With("workload", name)
	clients, err := Dial(ctx, run)
	if err != nil {
		return nil, err
	}
	defer func() {
		for _, c := range clients {
			_ = c.Close()
		}
	}()
	env := &Env{Clients: clients, Run: run, Logger: logger, Clock: RealClock{}}
	return Run(ctx, env, w)
}

// Run drives workload w with the connections and settings of env.
func Run(ctx context.Context, env *Env, w Workload) (res *Result, err error) {
	// The workload's own context ends with the run, not with a cancelled
	// ctx, so that Close can still clean up after an interrupt.
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	defer func() {
		cctx, ccancel := context.WithTimeout(context.WithoutCancel(ctx), env.Run.Timeout)
		defer ccancel()
		if cerr := w.Close(cctx); cerr != nil {
			env.Logger.Warn("workload cleanup failed", "err", cerr)
		}
	}()
	stopSetup := context.AfterFunc(ctx, cancel)
	err = w.Setup(wctx, env)
	stopSetup()
	if err != nil {
		return nil, fmt.Errorf("bench: %s: setup: %w", w.Name(), err)
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	workers := make([]Worker, env.Run.Clients)
	for i := range workers {
		if workers[i], err = w.Worker(i); err != nil {
			return nil, fmt.Errorf("bench: %s: worker %d: %w", w.Name(), i, err)
		}
	}
	env.Logger.Debug("run starting", "mode", env.Run.Mode(), "clients", env.Run.Clients, "conns", len(env.Clients))
	rec, stats := Drive(ctx, env.Run, workers, env.Clock)

	res = &Result{
		Workload:  w.Name(),
		Endpoints: env.Run.Endpoints,
		Conns:     len(env.Clients),
		Clients:   env.Run.Clients,
		Mode:      env.Run.Mode(),
		Rate:      env.Run.Rate,
		Start:     stats.Span.Start.Round(0).UTC(),
		Elapsed:   ToSeconds(stats.Span.End.Sub(stats.Span.Start)),
		Unsent:    stats.Unsent,
		Counters:  map[string]int64{},
	}
	if err := w.Finish(wctx, stats.Span, rec, res); err != nil {
		return nil, fmt.Errorf("bench: %s: finish: %w", w.Name(), err)
	}
	res.Params = w.Params()
	if err := res.fill(rec); err != nil {
		return nil, err
	}
	if len(res.Counters) == 0 {
		res.Counters = nil
	}
	if stats.Unsent > 0 && !stats.Interrupted {
		res.Notes = append(res.Notes, fmt.Sprintf(
			"%d scheduled requests were not sent: the server fell more than %s behind the open-loop schedule; the offered rate is above what it sustains",
			stats.Unsent, env.Run.maxLag().Round(time.Millisecond)))
	}
	if stats.Interrupted {
		res.Notes = append(res.Notes, "the run was interrupted; figures cover the part that ran")
		return res, ctx.Err()
	}
	return res, nil
}
