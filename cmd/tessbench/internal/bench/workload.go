package bench

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Workload is one kind of benchmark traffic. The harness calls Setup, then
// Worker for each client, drives the workers, then Finish and Close.
type Workload interface {
	// Name is the workload's name on the command line.
	Name() string
	// Params lists the parameters that shaped the run, by flag name.
	Params() map[string]any
	// Setup prepares the server (preloads keys, grants leases, opens
	// watches) before the clock starts. ctx lives until Close.
	Setup(ctx context.Context, env *Env) error
	// Worker returns the requester of client i.
	Worker(i int) (Worker, error)
	// Finish runs after the last request: it may wait for work the
	// requests caused (watch events) and add to rec and res.Counters.
	Finish(ctx context.Context, span RunSpan, rec *Recorder, res *Result) error
	// Close releases what Setup opened. It is called even when Setup failed.
	Close(ctx context.Context) error
}

// Worker sends the requests of one client. Each worker is used by one
// goroutine only.
type Worker interface {
	// Do sends one request and names the op it was ("put", "read", …).
	Do(ctx context.Context) (op string, err error)
}

// WorkerFunc adapts a function to Worker.
type WorkerFunc func(ctx context.Context) (string, error)

// Do implements Worker.
func (f WorkerFunc) Do(ctx context.Context) (string, error) { return f(ctx) }

// Env is what a workload may use.
type Env struct {
	// Clients are the connections, one clientv3.Client each.
	Clients []*clientv3.Client
	Run     RunConfig
	Logger  *slog.Logger
	Clock   Clock
}

// Client returns the connection of client i.
func (e *Env) Client(i int) *clientv3.Client { return e.Clients[i%len(e.Clients)] }

// Rand returns client i's random source, derived from the run's seed.
func (e *Env) Rand(i int) *rand.Rand {
	return rand.New(rand.NewPCG(e.Run.Seed, uint64(i)+1))
}

// RunSpan is when the driven part of a run happened.
type RunSpan struct {
	Start, End time.Time
}

var workloads = map[string]func(WorkloadConfig) Workload{
	"put":             func(c WorkloadConfig) Workload { return &putWorkload{keyedWrites{cfg: c}} },
	"range":           func(c WorkloadConfig) Workload { return &rangeWorkload{cfg: c} },
	"txn-put":         func(c WorkloadConfig) Workload { return &txnPutWorkload{keyedWrites: keyedWrites{cfg: c}} },
	"watch":           func(c WorkloadConfig) Workload { return &watchWorkload{cfg: c} },
	"lease-keepalive": func(c WorkloadConfig) Workload { return &leaseWorkload{cfg: c} },
	"mixed":           func(c WorkloadConfig) Workload { return &mixedWorkload{cfg: c} },
}

// WorkloadNames lists the workloads, sorted.
func WorkloadNames() []string { return slices.Sorted(maps.Keys(workloads)) }

// NewWorkload returns the named workload after validating cfg for it.
func NewWorkload(name string, cfg WorkloadConfig) (Workload, error) {
	mk, ok := workloads[name]
	if !ok {
		return nil, fmt.Errorf("bench: unknown workload %q (want one of %s)", name, strings.Join(WorkloadNames(), ", "))
	}
	if err := cfg.Validate(name); err != nil {
		return nil, err
	}
	return mk(cfg), nil
}

// keyPicker chooses the key index of each request: at random, or
// sequentially across all clients through a shared counter.
type keyPicker struct {
	space int
	seq   *atomic.Int64 // nil: random
	rng   *rand.Rand
}

func newKeyPicker(space int, seq *atomic.Int64, rng *rand.Rand) keyPicker {
	return keyPicker{space: space, seq: seq, rng: rng}
}

func (p keyPicker) next() int {
	if p.seq != nil {
		return int((p.seq.Add(1) - 1) % int64(p.space))
	}
	return p.rng.IntN(p.space)
}

// readOpts returns the clientv3 options of a read at consistency c.
func readOpts(c Consistency, extra ...clientv3.OpOption) []clientv3.OpOption {
	if c == Serializable {
		extra = append(extra, clientv3.WithSerializable())
	}
	return extra
}
