package scheduler

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Mover carries out the steps of operations on a range: each call is one
// ConfChangeV2 (or leader transfer) of the range, done when it returns nil.
// The replica moves implement it; it must refuse a step that no longer fits
// the range (a replica already there, a learner already promoted) with an
// error rather than do something else.
type Mover interface {
	// AddLearner adds a learner on node and returns once it holds a
	// snapshot of the range.
	AddLearner(ctx context.Context, r RangeID, node NodeID) error
	// PromoteLearner makes node's learner a voter through joint consensus.
	PromoteLearner(ctx context.Context, r RangeID, node NodeID) error
	// RemoveReplica removes node's replica (voter or learner).
	RemoveReplica(ctx context.Context, r RangeID, node NodeID) error
	// TransferLeader moves the range's leadership to node.
	TransferLeader(ctx context.Context, r RangeID, node NodeID) error
}

// ExecutorConfig configures an Executor.
type ExecutorConfig struct {
	// Mover does the steps.
	Mover Mover
	// Limits bound moves per node and snapshot bandwidth per node.
	Limits Limits
	// MaxRunning bounds the operations running at once in the cluster (64:
	// 16 nodes' worth of moves at the default per-node limit; more only
	// loads the meta leader with waiting goroutines).
	MaxRunning int
	// MaxQueued bounds the operations waiting; Submit drops the rest (1024:
	// eight rounds of the default scheduler; the next round plans again
	// from fresh state anyway).
	MaxQueued int
	// StepTimeout bounds a step that sends no snapshot (30 s: a conf change
	// or leader transfer takes a few election timeouts at worst).
	StepTimeout time.Duration
	// SnapshotSlack is added to a snapshot step's expected time (its bytes
	// at Limits.SnapshotRate) to make its timeout; the expected time is
	// counted twice, for a sender shared with other work (30 s).
	SnapshotSlack time.Duration
	// RecentResults is how many finished operations Status reports (32).
	RecentResults int
	// Registerer receives the metrics; nil registers nothing.
	Registerer prometheus.Registerer
	// Logger is the executor's logger; nil discards.
	Logger *slog.Logger
	// Knobs are test hooks; nil in production.
	Knobs *ExecutorKnobs
}

// ExecutorKnobs are hooks for tests.
type ExecutorKnobs struct {
	// Now replaces time.Now for the snapshot budgets.
	Now func() time.Time
}

// DefaultExecutorConfig returns the configuration described on the fields
// (without a Mover).
func DefaultExecutorConfig() ExecutorConfig {
	return ExecutorConfig{
		Limits:        DefaultLimits(),
		MaxRunning:    64,
		MaxQueued:     1024,
		StepTimeout:   30 * time.Second,
		SnapshotSlack: 30 * time.Second,
		RecentResults: 32,
	}
}

// Validate reports a configuration that cannot work.
func (c ExecutorConfig) Validate() error {
	var errs []error
	if c.Mover == nil {
		errs = append(errs, errors.New("scheduler: executor without a Mover"))
	}
	if c.MaxRunning < 1 {
		errs = append(errs, fmt.Errorf("scheduler: executor max running %d: must be at least 1", c.MaxRunning))
	}
	if c.MaxQueued < 0 {
		errs = append(errs, fmt.Errorf("scheduler: executor max queued %d: must not be negative", c.MaxQueued))
	}
	if c.StepTimeout <= 0 || c.SnapshotSlack < 0 {
		errs = append(errs, fmt.Errorf("scheduler: executor step timeout %v, snapshot slack %v: must be positive", c.StepTimeout, c.SnapshotSlack))
	}
	if c.RecentResults < 0 {
		errs = append(errs, fmt.Errorf("scheduler: executor recent results %d: must not be negative", c.RecentResults))
	}
	errs = append(errs, c.Limits.Validate())
	return errors.Join(errs...)
}

// ErrExecutorClosed is returned by Submit after Close.
var ErrExecutorClosed = errors.New("scheduler: executor closed")

// RunningOp is an operation being run.
type RunningOp struct {
	Op Operation
	// Step is the index in Op.Steps() of the step under way.
	Step    int
	Started time.Time
}

// WaitingOp is an operation not started yet, and why.
type WaitingOp struct {
	Op     Operation
	Reason string
}

// Result is a finished operation.
type Result struct {
	Op       Operation
	Err      string // empty when it succeeded
	Finished time.Time
}

// Status is what the executor does.
type Status struct {
	Paused  bool
	Running []RunningOp
	Waiting []WaitingOp
	// Done and Failed count finished operations since the start.
	Done, Failed uint64
	// Recent are the last finished operations, newest last.
	Recent []Result
}

// Executor runs operations with limits. Operations start in the order they
// were submitted, each once its nodes have room under the limits (an
// operation that must wait does not hold back later ones on other nodes);
// one range has at most one operation queued or running. Pause stops new
// starts; running operations finish their steps, so a pause never leaves a
// learner behind on purpose. All methods are safe for concurrent use.
type Executor struct {
	cfg     ExecutorConfig
	log     *slog.Logger
	metrics *executorMetrics
	now     func() time.Time
	ctx     context.Context
	cancel  context.CancelFunc
	wake    chan struct{}
	wg      sync.WaitGroup // the dispatcher and every running operation

	mu struct {
		sync.Mutex
		closed  bool
		paused  bool
		queue   []Operation
		ranges  map[RangeID]bool // queued or running
		running map[RangeID]*RunningOp
		moves   map[NodeID]int // snapshot-sending operations running per node
		budgets map[NodeID]*snapshotBudget
		done    uint64
		failed  uint64
		recent  []Result
	}
}

// NewExecutor starts an executor; Close stops it.
func NewExecutor(cfg ExecutorConfig) (*Executor, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	e := &Executor{cfg: cfg, log: cfg.Logger, now: time.Now, wake: make(chan struct{}, 1)}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	if cfg.Knobs != nil && cfg.Knobs.Now != nil {
		e.now = cfg.Knobs.Now
	}
	m, err := newExecutorMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	e.metrics = m
	e.ctx, e.cancel = context.WithCancel(context.Background())
	e.mu.ranges = make(map[RangeID]bool)
	e.mu.running = make(map[RangeID]*RunningOp)
	e.mu.moves = make(map[NodeID]int)
	e.mu.budgets = make(map[NodeID]*snapshotBudget)
	e.wg.Add(1)
	go e.dispatch()
	return e, nil
}

// Submit queues operations (in order) and returns how many it took: an
// operation of a range that already has one queued or running is skipped,
// and so is everything beyond MaxQueued.
func (e *Executor) Submit(ops []Operation) (int, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.mu.closed {
		return 0, ErrExecutorClosed
	}
	n := 0
	for _, op := range ops {
		if e.mu.ranges[op.Range] {
			continue
		}
		if len(e.mu.queue) >= e.cfg.MaxQueued {
			e.metrics.result(op.Kind, "dropped")
			continue
		}
		e.mu.queue = append(e.mu.queue, op)
		e.mu.ranges[op.Range] = true
		n++
	}
	e.metrics.waiting.Set(float64(len(e.mu.queue)))
	e.kick()
	return n, nil
}

// Pause stops starting operations; running ones finish.
func (e *Executor) Pause() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.mu.paused = true
	e.metrics.paused.Set(1)
}

// Resume starts operations again.
func (e *Executor) Resume() {
	e.mu.Lock()
	e.mu.paused = false
	e.metrics.paused.Set(0)
	e.mu.Unlock()
	e.kick()
}

// InFlight returns the operations running or waiting: the scheduler's
// Snapshot.InFlight.
func (e *Executor) InFlight() []Operation {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]Operation, 0, len(e.mu.running)+len(e.mu.queue))
	for _, r := range e.sortedRunningLocked() {
		out = append(out, r.Op)
	}
	return append(out, e.mu.queue...)
}

// Status returns what runs, what waits and why, and the recent results.
func (e *Executor) Status() Status {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := Status{Paused: e.mu.paused, Done: e.mu.done, Failed: e.mu.failed, Recent: slices.Clone(e.mu.recent)}
	for _, r := range e.sortedRunningLocked() {
		s.Running = append(s.Running, *r)
	}
	now := e.now()
	for _, op := range e.mu.queue {
		reason := e.blockedLocked(op, now)
		if reason == "" {
			reason = "starting"
		}
		s.Waiting = append(s.Waiting, WaitingOp{Op: op, Reason: reason})
	}
	return s
}

// Close stops starting operations, cancels the running ones and waits for
// them. Queued operations are dropped.
func (e *Executor) Close() {
	e.mu.Lock()
	if e.mu.closed {
		e.mu.Unlock()
		return
	}
	e.mu.closed = true
	e.mu.Unlock()
	e.cancel()
	e.wg.Wait()
}

func (e *Executor) sortedRunningLocked() []*RunningOp {
	out := make([]*RunningOp, 0, len(e.mu.running))
	for _, r := range e.mu.running {
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b *RunningOp) int {
		if c := a.Started.Compare(b.Started); c != 0 {
			return c
		}
		return cmp.Compare(a.Op.Range, b.Op.Range)
	})
	return out
}

// kick wakes the dispatcher.
func (e *Executor) kick() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// chargedNodes returns the nodes whose move limit and snapshot budget an
// operation uses: the receiver, and the node the replica leaves unless it
// is dead or removed (a replacement of a dead node's replica).
func chargedNodes(op Operation) []NodeID {
	if !op.Kind.movesData() {
		return nil
	}
	if op.Kind == OpMove && op.From != 0 && op.Reason != ReasonDead {
		return []NodeID{op.To, op.From}
	}
	return []NodeID{op.To}
}

func (e *Executor) budgetLocked(n NodeID, now time.Time) *snapshotBudget {
	b := e.mu.budgets[n]
	if b == nil {
		b = &snapshotBudget{}
		e.mu.budgets[n] = b
	}
	rate := float64(e.cfg.Limits.SnapshotRate)
	b.refill(now, rate, rate)
	return b
}

// blockedLocked returns why op cannot start now, or "".
func (e *Executor) blockedLocked(op Operation, now time.Time) string {
	if e.mu.paused {
		return "paused"
	}
	if len(e.mu.running) >= e.cfg.MaxRunning {
		return fmt.Sprintf("%d operations running (the most at once)", len(e.mu.running))
	}
	for _, n := range chargedNodes(op) {
		if e.mu.moves[n] >= e.cfg.Limits.MaxMovesPerNode {
			return fmt.Sprintf("%s has %d moves running (the most at once)", n, e.mu.moves[n])
		}
		if w := e.budgetLocked(n, now).wait(float64(e.cfg.Limits.SnapshotRate)); w > 0 {
			return fmt.Sprintf("snapshot budget of %s (%v)", n, w.Round(time.Millisecond))
		}
	}
	return ""
}

// dispatch starts queued operations as they become admissible.
func (e *Executor) dispatch() {
	defer e.wg.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		next := e.startAdmissible()
		if next > 0 {
			timer.Reset(next)
		}
		select {
		case <-e.ctx.Done():
			return
		case <-e.wake:
		case <-timer.C:
		}
	}
}

// startAdmissible starts every queued operation that may start, in queue
// order, and returns when to look again for those held by a snapshot budget
// (0: only when woken).
func (e *Executor) startAdmissible() time.Duration {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.mu.closed || e.mu.paused {
		return 0
	}
	now := e.now()
	rate := float64(e.cfg.Limits.SnapshotRate)
	var retry time.Duration
	kept := e.mu.queue[:0]
	for _, op := range e.mu.queue {
		if e.blockedLocked(op, now) != "" {
			for _, n := range chargedNodes(op) {
				if w := e.budgetLocked(n, now).wait(rate); w > 0 && (retry == 0 || w < retry) {
					retry = w
				}
			}
			kept = append(kept, op)
			continue
		}
		for _, n := range chargedNodes(op) {
			e.mu.moves[n]++
			e.budgetLocked(n, now).level -= float64(op.Bytes)
		}
		e.metrics.snapshotBytes.Add(float64(op.Bytes))
		ro := &RunningOp{Op: op, Started: now}
		e.mu.running[op.Range] = ro
		e.wg.Add(1)
		go e.run(ro)
	}
	clear(e.mu.queue[len(kept):])
	e.mu.queue = kept
	e.metrics.running.Set(float64(len(e.mu.running)))
	e.metrics.waiting.Set(float64(len(e.mu.queue)))
	return retry
}

// run runs the steps of one operation and records the result.
func (e *Executor) run(ro *RunningOp) {
	defer e.wg.Done()
	op := ro.Op
	start := time.Now()
	var err error
	for i, st := range op.Steps() {
		e.mu.Lock()
		ro.Step = i
		e.mu.Unlock()
		if err = e.step(op, st); err != nil {
			err = fmt.Errorf("%s: step %s: %w", op, st, err)
			break
		}
	}
	e.metrics.duration.WithLabelValues(op.Kind.String()).Observe(time.Since(start).Seconds())
	e.mu.Lock()
	delete(e.mu.running, op.Range)
	delete(e.mu.ranges, op.Range)
	for _, n := range chargedNodes(op) {
		e.mu.moves[n]--
		if e.mu.moves[n] == 0 {
			delete(e.mu.moves, n)
		}
	}
	res := Result{Op: op, Finished: e.now()}
	if err != nil {
		res.Err = err.Error()
		e.mu.failed++
		e.metrics.result(op.Kind, "failed")
		e.log.Warn("placement operation failed", "op", op.String(), "err", err)
	} else {
		e.mu.done++
		e.metrics.result(op.Kind, "done")
		e.log.Debug("placement operation done", "op", op.String())
	}
	if e.cfg.RecentResults > 0 {
		if len(e.mu.recent) >= e.cfg.RecentResults {
			e.mu.recent = slices.Delete(e.mu.recent, 0, 1)
		}
		e.mu.recent = append(e.mu.recent, res)
	}
	e.metrics.running.Set(float64(len(e.mu.running)))
	e.mu.Unlock()
	e.kick()
}

// step runs one step with its timeout.
func (e *Executor) step(op Operation, st Step) error {
	timeout := e.cfg.StepTimeout
	if st.Kind == StepAddLearner {
		expected := time.Duration(float64(op.Bytes) / float64(e.cfg.Limits.SnapshotRate) * float64(time.Second))
		timeout += 2*expected + e.cfg.SnapshotSlack
	}
	ctx, cancel := context.WithTimeout(e.ctx, timeout)
	defer cancel()
	m := e.cfg.Mover
	switch st.Kind {
	case StepAddLearner:
		return m.AddLearner(ctx, op.Range, st.Node)
	case StepPromote:
		return m.PromoteLearner(ctx, op.Range, st.Node)
	case StepRemove:
		return m.RemoveReplica(ctx, op.Range, st.Node)
	case StepTransferLeader:
		return m.TransferLeader(ctx, op.Range, st.Node)
	}
	return fmt.Errorf("unknown step %v", st.Kind)
}
