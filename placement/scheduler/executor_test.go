package scheduler

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// modelMover applies steps to a model of the ranges (Range.ApplyStep, which
// refuses steps that do not fit), records them, and can hold a step kind
// until released or fail it.
type modelMover struct {
	mu     sync.Mutex
	ranges map[RangeID]*Range
	calls  []string
	hold   map[StepKind]chan struct{} // a step of this kind waits for a receive
	fail   map[StepKind]error
}

func newModelMover(ranges ...Range) *modelMover {
	m := &modelMover{ranges: map[RangeID]*Range{}, hold: map[StepKind]chan struct{}{}, fail: map[StepKind]error{}}
	for i := range ranges {
		m.ranges[ranges[i].ID] = &ranges[i]
	}
	return m
}

func (m *modelMover) do(ctx context.Context, r RangeID, st Step) error {
	m.mu.Lock()
	gate, err := m.hold[st.Kind], m.fail[st.Kind]
	m.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls = append(m.calls, fmt.Sprintf("r%d %s", uint64(r), st))
	if err != nil {
		return err
	}
	rng := m.ranges[r]
	if rng == nil {
		return fmt.Errorf("no range r%d", uint64(r))
	}
	return rng.ApplyStep(st)
}

func (m *modelMover) AddLearner(ctx context.Context, r RangeID, n NodeID) error {
	return m.do(ctx, r, Step{StepAddLearner, n})
}
func (m *modelMover) PromoteLearner(ctx context.Context, r RangeID, n NodeID) error {
	return m.do(ctx, r, Step{StepPromote, n})
}
func (m *modelMover) RemoveReplica(ctx context.Context, r RangeID, n NodeID) error {
	return m.do(ctx, r, Step{StepRemove, n})
}
func (m *modelMover) TransferLeader(ctx context.Context, r RangeID, n NodeID) error {
	return m.do(ctx, r, Step{StepTransferLeader, n})
}

func (m *modelMover) callList() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.calls)
}

var _ Mover = (*modelMover)(nil)

func threeVoters(id RangeID, leader NodeID) Range {
	return Range{ID: id, Generation: 1, Leader: leader, SizeBytes: 100,
		Replicas: []Replica{{Node: 1, ID: 1}, {Node: 2, ID: 2}, {Node: 3, ID: 3}}}
}

func newTestExecutor(t *testing.T, m Mover, edit func(*ExecutorConfig)) *Executor {
	t.Helper()
	cfg := DefaultExecutorConfig()
	cfg.Mover = m
	if edit != nil {
		edit(&cfg)
	}
	e, err := NewExecutor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	return e
}

// waitFor polls cond until it holds or 10 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestExecutorRunsStepsInOrder(t *testing.T) {
	m := newModelMover(threeVoters(2, 1))
	reg := prometheus.NewRegistry()
	e := newTestExecutor(t, m, func(c *ExecutorConfig) { c.Registerer = reg })
	op := Operation{Kind: OpMove, Range: 2, From: 1, To: 4, LeaderTo: 2, Bytes: 100, Reason: ReasonCount}
	if n, err := e.Submit([]Operation{op, op}); err != nil || n != 1 {
		t.Fatalf("Submit of one operation twice took %d (%v), want 1", n, err)
	}
	waitFor(t, "the move", func() bool { return e.Status().Done == 1 })
	want := []string{"r2 transfer-leader n2", "r2 add-learner n4", "r2 promote n4", "r2 remove n1"}
	if got := m.callList(); !slices.Equal(got, want) {
		t.Fatalf("steps %v, want %v", got, want)
	}
	r := m.ranges[2]
	if r.Leader != 2 || len(r.Replicas) != 3 || r.voters() != 3 {
		t.Fatalf("range after the move: %+v", r)
	}
	if _, ok := r.replicaOn(1); ok {
		t.Fatalf("n1 still holds a replica: %+v", r)
	}
	if got := metricValue(t, reg, "tessera_scheduler_operations_total", "kind", "move", "result", "done"); got != 1 {
		t.Fatalf("tessera_scheduler_operations_total{kind=move,result=done} = %v, want 1", got)
	}
	if got := metricValue(t, reg, "tessera_scheduler_snapshot_bytes_total"); got != 100 {
		t.Fatalf("tessera_scheduler_snapshot_bytes_total = %v, want 100", got)
	}
	if len(e.InFlight()) != 0 {
		t.Fatalf("in flight after the end: %v", e.InFlight())
	}
}

func TestExecutorMovesPerNode(t *testing.T) {
	m := newModelMover(threeVoters(2, 1), threeVoters(3, 1), threeVoters(4, 1))
	gate := make(chan struct{})
	m.hold[StepAddLearner] = gate
	e := newTestExecutor(t, m, func(c *ExecutorConfig) { c.Limits.MaxMovesPerNode = 2 })
	var ops []Operation
	for r := RangeID(2); r <= 4; r++ {
		ops = append(ops, Operation{Kind: OpAddVoter, Range: r, To: 5, Bytes: 1, Reason: ReasonReplication})
	}
	if n, _ := e.Submit(ops); n != 3 {
		t.Fatalf("took %d of 3", n)
	}
	waitFor(t, "two moves running", func() bool { return len(e.Status().Running) == 2 })
	st := e.Status()
	if len(st.Waiting) != 1 || st.Waiting[0].Op.Range != 4 || !strings.Contains(st.Waiting[0].Reason, "n5 has 2 moves running") {
		t.Fatalf("waiting %+v, want r4 held by n5's limit", st.Waiting)
	}
	if got := len(e.InFlight()); got != 3 {
		t.Fatalf("InFlight has %d operations, want 3", got)
	}
	gate <- struct{}{}
	waitFor(t, "the third move to start", func() bool {
		st := e.Status()
		return st.Done == 1 && len(st.Running) == 2 && len(st.Waiting) == 0
	})
	close(gate)
	waitFor(t, "all moves", func() bool { return e.Status().Done == 3 })
}

func TestExecutorSnapshotBudget(t *testing.T) {
	var mu sync.Mutex
	now := time.Unix(1000, 0)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	m := newModelMover(threeVoters(2, 1), threeVoters(3, 1))
	e := newTestExecutor(t, m, func(c *ExecutorConfig) {
		c.Limits.SnapshotRate = 100 // bytes/s; the bucket holds one second
		c.Knobs = &ExecutorKnobs{Now: clock}
	})
	// The first 250-byte snapshot starts at once (the bucket is full) and
	// leaves it 150 bytes in debt: the second waits 1.5 s of the clock.
	ops := []Operation{
		{Kind: OpAddVoter, Range: 2, To: 4, Bytes: 250, Reason: ReasonReplication},
		{Kind: OpAddVoter, Range: 3, To: 4, Bytes: 250, Reason: ReasonReplication},
	}
	e.Submit(ops)
	waitFor(t, "the first add", func() bool { return e.Status().Done == 1 })
	st := e.Status()
	if len(st.Waiting) != 1 || !strings.Contains(st.Waiting[0].Reason, "snapshot budget of n4 (1.5s)") {
		t.Fatalf("waiting %+v, want r3 held by n4's snapshot budget for 1.5s", st.Waiting)
	}
	mu.Lock()
	now = now.Add(1400 * time.Millisecond)
	mu.Unlock()
	e.kick()
	if st := e.Status(); len(st.Waiting) != 1 || !strings.Contains(st.Waiting[0].Reason, "(100ms)") {
		t.Fatalf("after 1.4 s: waiting %+v, want 100ms to go", st.Waiting)
	}
	mu.Lock()
	now = now.Add(100 * time.Millisecond)
	mu.Unlock()
	e.kick()
	waitFor(t, "the second add", func() bool { return e.Status().Done == 2 })
}

func TestExecutorPauseResume(t *testing.T) {
	m := newModelMover(threeVoters(2, 1))
	e := newTestExecutor(t, m, nil)
	e.Pause()
	e.Submit([]Operation{{Kind: OpTransferLeader, Range: 2, From: 1, To: 3, Reason: ReasonLeaders}})
	st := e.Status()
	if !st.Paused || len(st.Waiting) != 1 || st.Waiting[0].Reason != "paused" {
		t.Fatalf("paused status %+v", st)
	}
	// An admission pass (what the dispatcher runs when woken) starts
	// nothing while paused.
	e.startAdmissible()
	if st := e.Status(); len(st.Running) != 0 || len(st.Waiting) != 1 {
		t.Fatalf("paused executor started an operation: %+v", st)
	}
	if calls := m.callList(); len(calls) != 0 {
		t.Fatalf("paused executor ran %v", calls)
	}
	e.Resume()
	waitFor(t, "the transfer", func() bool { return e.Status().Done == 1 })
	if m.ranges[2].Leader != 3 {
		t.Fatalf("leader %s, want n3", m.ranges[2].Leader)
	}
}

func TestExecutorPauseLetsRunningFinish(t *testing.T) {
	m := newModelMover(threeVoters(2, 1))
	gate := make(chan struct{})
	m.hold[StepPromote] = gate
	e := newTestExecutor(t, m, nil)
	e.Submit([]Operation{{Kind: OpAddVoter, Range: 2, To: 4, Reason: ReasonReplication}})
	waitFor(t, "the add to reach its promotion", func() bool {
		st := e.Status()
		return len(st.Running) == 1 && st.Running[0].Step == 1
	})
	e.Pause()
	close(gate)
	waitFor(t, "the add to finish", func() bool { return e.Status().Done == 1 })
	if m.ranges[2].voters() != 4 {
		t.Fatalf("paused mid-operation left %+v", m.ranges[2].Replicas)
	}
}

func TestExecutorFailure(t *testing.T) {
	m := newModelMover(threeVoters(2, 1))
	m.fail[StepPromote] = errors.New("injected")
	e := newTestExecutor(t, m, nil)
	op := Operation{Kind: OpAddVoter, Range: 2, To: 4, Reason: ReasonReplication}
	e.Submit([]Operation{op})
	waitFor(t, "the failure", func() bool { return e.Status().Failed == 1 })
	st := e.Status()
	if len(st.Recent) != 1 || !strings.Contains(st.Recent[0].Err, "step promote n4: injected") {
		t.Fatalf("recent %+v", st.Recent)
	}
	// The range is free again: the scheduler's next round may resubmit
	// (here: the learner left behind is removed).
	if n, _ := e.Submit([]Operation{{Kind: OpRemove, Range: 2, From: 4, Reason: ReasonInterrupted}}); n != 1 {
		t.Fatal("range still busy after its operation failed")
	}
	waitFor(t, "the rollback", func() bool { return e.Status().Done == 1 })
	if _, ok := m.ranges[2].replicaOn(4); ok {
		t.Fatalf("learner still there: %+v", m.ranges[2].Replicas)
	}
}

func TestExecutorCloseCancelsRunning(t *testing.T) {
	m := newModelMover(threeVoters(2, 1))
	m.hold[StepAddLearner] = make(chan struct{}) // never released
	e := newTestExecutor(t, m, nil)
	e.Submit([]Operation{{Kind: OpAddVoter, Range: 2, To: 4, Reason: ReasonReplication}})
	waitFor(t, "the add to start", func() bool { return len(e.Status().Running) == 1 })
	e.Close()
	st := e.Status()
	if st.Failed != 1 || len(st.Running) != 0 || !strings.Contains(st.Recent[0].Err, context.Canceled.Error()) {
		t.Fatalf("after Close: %+v", st)
	}
	if _, err := e.Submit([]Operation{{Kind: OpTransferLeader, Range: 2, To: 2}}); !errors.Is(err, ErrExecutorClosed) {
		t.Fatalf("Submit after Close: %v", err)
	}
}

func TestExecutorQueueBound(t *testing.T) {
	m := newModelMover()
	reg := prometheus.NewRegistry()
	e := newTestExecutor(t, m, func(c *ExecutorConfig) { c.MaxQueued = 2; c.Registerer = reg })
	e.Pause()
	var ops []Operation
	for r := RangeID(2); r < 6; r++ {
		ops = append(ops, Operation{Kind: OpTransferLeader, Range: r, To: 1})
	}
	if n, _ := e.Submit(ops); n != 2 {
		t.Fatalf("took %d, want MaxQueued=2", n)
	}
	if got := metricValue(t, reg, "tessera_scheduler_operations_total", "kind", "transfer-leader", "result", "dropped"); got != 2 {
		t.Fatalf("dropped %v, want 2", got)
	}
}

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	bad := DefaultConfig()
	bad.Tolerance, bad.Limits.SnapshotRate = 0, 0
	err := bad.Validate()
	if err == nil || !strings.Contains(err.Error(), "tolerance") || !strings.Contains(err.Error(), "snapshot rate") {
		t.Fatalf("Validate of a bad config: %v", err)
	}
	ec := DefaultExecutorConfig()
	if err := ec.Validate(); err == nil || !strings.Contains(err.Error(), "Mover") {
		t.Fatalf("executor config without a mover: %v", err)
	}
	ec.Mover = newModelMover()
	if err := ec.Validate(); err != nil {
		t.Fatal(err)
	}
}

// metricValue returns the value of the series of name with the given label
// pairs (a counter or gauge) in reg, 0 if there is none.
func metricValue(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue series
				}
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}
