package shard

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tesseradb/tessera/engine"
	"github.com/tesseradb/tessera/internal/coalesce"
	"github.com/tesseradb/tessera/proto/tesserapb"
	"github.com/tesseradb/tessera/raftgroup"
	"google.golang.org/protobuf/proto"
)

// Clock hands out cluster-wide timestamps (the TSO client of the node). A
// timestamp is always fetched after the call began, which is what makes
// revisions follow real time across ranges.
type Clock interface {
	// Timestamps returns the first of n consecutive fresh timestamps.
	Timestamps(ctx context.Context, n int) (engine.Revision, error)
}

// RaftHost is what a Replica needs from the node's raft host.
type RaftHost interface {
	Propose(id raftgroup.GroupID, data []byte) error
	ReadIndex(ctx context.Context, id raftgroup.GroupID) (uint64, error)
}

var _ RaftHost = (*raftgroup.Host)(nil)

// Config configures a Replica.
type Config struct {
	NodeID raftgroup.NodeID
	Engine *engine.Engine
	Raft   RaftHost
	Clock  Clock
	// Limits are etcd's request limits.
	Limits Limits
	// AmbiguousTimeout: after this replica loses leadership, a write it
	// proposed that has not applied within this time fails with etcd's
	// "timed out due to leader failure" (its outcome is unknown). 3 s: a few
	// election timeouts, so a write that the new leader commits is usually
	// reported as done.
	AmbiguousTimeout time.Duration
	// CompactBatch is the number of deletions per batch of a physical
	// compaction (1024).
	CompactBatch int
	// Metrics are the node's shard metrics (nil: a private, unregistered set).
	Metrics *Metrics
	// LoadHalfLife is the half-life of the replica's request rate (Load);
	// 0: DefaultLoadHalfLife.
	LoadHalfLife time.Duration
	// FlushTimeout bounds one timestamp fetch of the proposal pipeline (5 s:
	// longer than a TSO leader election, so a write outlives one).
	FlushTimeout time.Duration
	// Batching: how far the write that starts a batch serves other writes'
	// batches (internal/coalesce; zero value: coalesce.DefaultConfig()).
	Batching coalesce.Config
	// ClosedWait bounds how long a serializable read waits for the replica's
	// closed revision to reach its revision (5 s; shard/closed.go).
	ClosedWait time.Duration
	// OnSplit is called once the batch that applied a split of this range
	// committed (the Store opens the right half); nil: nothing is done.
	OnSplit func(res SplitResult, trigger string)
	// OnMerge is called once the batch that applied a merge into this
	// range committed (the Store destroys the right's replica).
	OnMerge func(merged *tesserapb.RangeDescriptor, rightID uint64)
	// OnRemoved is called once the batch that applied a replica change
	// removing this node's replica committed (the Store destroys it).
	OnRemoved func(desc *tesserapb.RangeDescriptor)
	// AuthRevision returns the auth revision this node has applied, 0 when
	// auth is disabled (shard/auth_revision.go); nil: writes are not
	// stamped.
	AuthRevision func() uint64
	Logger       *slog.Logger
}

// Replica is one replica of a range.
type Replica struct {
	cfg   Config
	group raftgroup.GroupID
	log   *slog.Logger

	mu struct {
		sync.Mutex
		desc       *tesserapb.RangeDescriptor
		compactRev engine.Revision
		logCut     engine.Revision // see rangeState
		appliedRev engine.Revision // highest revision applied
		// publishedRev is appliedRev as of the last committed apply batch:
		// every change at or below it is readable in the engine (feeds read
		// up to it).
		publishedRev engine.Revision
		applied      uint64          // raft applied index
		resolved     engine.Revision // no write <= this can still appear (leader view)
		leader       raftgroup.NodeID
		term         uint64
		isLeader     bool
		closed       bool

		// The proposal pipeline (replica_proposal.go).
		flushing   bool                 // a batch is fetching timestamps / proposing
		inflight   map[uint64]*proposal // proposed, not applied, by id
		flushEpoch uint64               // incremented when a flush has proposed its batch
		// results of local proposals applied in the current round, delivered
		// once the apply batch committed.
		applyResults []applyResult
		// changed is closed (and replaced) whenever the applied index, the
		// flush epoch or the in-flight set changes; waiters select on it.
		changed     chan struct{}
		compactNext engine.Revision // physical compaction to run after commit
		cl          closedState     // closed revision (closed.go)
		// splits applied in the current round, handed to Config.OnSplit
		// once the apply batch committed (split.go).
		splits []splitApplied
		// merges applied in the current round (merge.go), for
		// Config.OnMerge after the commit.
		merges []mergeApplied
		// frozen: the range is frozen for a merge (replicated, merge.go).
		frozen bool
		// frozenSince: when this replica applied the freeze or opened
		// the range frozen (zero when not frozen; merge_queue.go).
		frozenSince time.Time
		// mergedInto: this replica's range was merged into that one; it
		// sends every request there (set by the Store, merge.go).
		mergedInto *tesserapb.RangeDescriptor
		// leaseGCNext caches the earliest revision at which a revocation
		// record may be forgotten (0: not known; lease_gc.go).
		leaseGCNext engine.Revision
		authRev     uint64 // highest auth revision applied (auth_revision.go)
		// removed: an applied replica change left this node out of the
		// descriptor (replica_confchange.go); the Store destroys it.
		removed bool
		// peersChanged: the descriptor's replicas changed in the current
		// apply round; the raft host's peer map is replaced after it.
		peersChanged bool
	}

	// load is the decaying request rate of this replica (reads and writes).
	load loadMeter
	// loadSplit counts requests per second and samples their keys for
	// load-based splits (split_load.go).
	loadSplit loadSplitter
	// size is the last measurement of the range (split_size.go).
	size sizeState

	// batches queues writes for the proposal pipeline (replica_proposal.go).
	// Lock order: mu before the batcher's own lock.
	batches *coalesce.Batcher[*proposal]
	// route is what the write path checks a request against without
	// taking mu (replica_route.go); republished under mu on every change.
	route atomic.Pointer[routeState]
	// nextID numbers this replica's proposals.
	nextID atomic.Uint64

	compactions chan engine.Revision
	wg          sync.WaitGroup
	stop        chan struct{}
}

var _ raftgroup.StateMachine = (*Replica)(nil)

// Open loads a replica's state from the engine (its descriptor must have
// been written by WriteInitialState or arrive with a snapshot).
func Open(cfg Config, group raftgroup.GroupID) (*Replica, error) {
	if cfg.AmbiguousTimeout <= 0 {
		cfg.AmbiguousTimeout = 3 * time.Second
	}
	if cfg.CompactBatch <= 0 {
		cfg.CompactBatch = 1024
	}
	if cfg.FlushTimeout <= 0 {
		cfg.FlushTimeout = 5 * time.Second
	}
	if cfg.Batching == (coalesce.Config{}) {
		cfg.Batching = coalesce.DefaultConfig()
	}
	if cfg.ClosedWait <= 0 {
		cfg.ClosedWait = defaultClosedWait
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics(nil)
	}
	if cfg.LoadHalfLife <= 0 {
		cfg.LoadHalfLife = DefaultLoadHalfLife
	}
	r := &Replica{
		cfg:         cfg,
		group:       group,
		log:         cfg.Logger.With("range", uint64(group)),
		compactions: make(chan engine.Revision, 1),
		stop:        make(chan struct{}),
	}
	r.mu.inflight = make(map[uint64]*proposal)
	r.mu.changed = make(chan struct{})
	r.load.halfLife = cfg.LoadHalfLife
	var err error
	if r.batches, err = coalesce.New(cfg.Batching, r.flush); err != nil {
		return nil, fmt.Errorf("shard: range %d: %w", group, err)
	}
	// Proposal ids only need to be unique among this replica's proposals,
	// including those of earlier incarnations still in the log.
	r.nextID.Store(uint64(time.Now().UnixNano()))
	if err := r.loadLocked(); err != nil {
		return nil, err
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		r.compactLoop()
	}()
	return r, nil
}

// Close stops the replica's background work; waiting requests fail.
func (r *Replica) Close() {
	r.mu.Lock()
	if r.mu.closed {
		r.mu.Unlock()
		return
	}
	r.mu.closed = true
	r.publishRouteLocked()
	// A range merged away: its unapplied writes were refused (it was
	// frozen), so they go to the merged range (a routing error).
	closeErr := ErrReplicaClosed
	if r.mu.mergedInto != nil {
		closeErr = r.routeLocked().check(0)
	}
	for _, p := range r.mu.inflight {
		p.finish(nil, closeErr)
	}
	for _, p := range r.batches.Drain() {
		p.finish(nil, closeErr)
	}
	r.mu.inflight = map[uint64]*proposal{}
	r.notifyLocked()
	r.mu.Unlock()
	r.batches.Close()
	close(r.stop)
	r.wg.Wait()
}

// rangeState is the replicated per-range state besides the descriptor.
type rangeState struct {
	compact engine.Revision // history below it is gone
	applied engine.Revision // highest revision applied
	// logCut is the highest change-log revision a compaction removed: a
	// feed positioned below it has lost events (shard/feed.go).
	logCut engine.Revision
	// frozen: frozen for a merge (shard/merge.go).
	frozen bool
}

func encodeRangeState(s rangeState) []byte {
	b := binary.BigEndian.AppendUint64(nil, uint64(s.compact))
	b = binary.BigEndian.AppendUint64(b, uint64(s.applied))
	b = binary.BigEndian.AppendUint64(b, uint64(s.logCut))
	if s.frozen {
		b = append(b, 1) // only a frozen range has the flag byte
	}
	return b
}

// decodeRangeState decodes a range state; one written before the change
// log (16 bytes) gets the cautious log cut just below its compaction.
func decodeRangeState(b []byte) (rangeState, error) {
	switch len(b) {
	case 16, 24, 25:
	default:
		return rangeState{}, fmt.Errorf("range state of %d bytes", len(b))
	}
	s := rangeState{
		compact: engine.Revision(binary.BigEndian.Uint64(b)),
		applied: engine.Revision(binary.BigEndian.Uint64(b[8:])),
	}
	if len(b) >= 24 {
		s.logCut = engine.Revision(binary.BigEndian.Uint64(b[16:]))
		s.frozen = len(b) == 25 && b[24] == 1
	} else {
		s.logCut = max(s.compact-1, 0)
	}
	return s, nil
}

func (r *Replica) loadLocked() error {
	g := uint64(r.group)
	db, err := r.cfg.Engine.Get(engine.LocalGroupKey(g, engine.KindDescriptor))
	if err != nil {
		return fmt.Errorf("shard: range %d: read descriptor: %w", g, err)
	}
	desc := &tesserapb.RangeDescriptor{}
	if err := proto.Unmarshal(db, desc); err != nil {
		return fmt.Errorf("shard: range %d: decode descriptor: %w", g, err)
	}
	r.mu.desc = desc
	r.mu.leaseGCNext = 0
	r.publishRouteLocked()
	sb, err := r.cfg.Engine.Get(engine.LocalGroupKey(g, engine.KindRangeState))
	switch {
	case errors.Is(err, engine.ErrNotFound):
	case err != nil:
		return fmt.Errorf("shard: range %d: read state: %w", g, err)
	default:
		st, err := decodeRangeState(sb)
		if err != nil {
			return fmt.Errorf("shard: range %d: %w", g, err)
		}
		r.mu.compactRev, r.mu.appliedRev, r.mu.logCut, r.mu.frozen = st.compact, st.applied, st.logCut, st.frozen
		r.noteFrozenLocked()
	}
	if err := r.loadAuthRevisionLocked(); err != nil {
		return err
	}
	r.mu.resolved = max(r.mu.resolved, r.mu.appliedRev)
	r.mu.publishedRev = r.mu.appliedRev
	// The applied index the engine holds: a follower that restarts serves
	// reads and hashes that wait for an index before any new entry applies.
	idx, err := raftgroup.AppliedIndex(r.cfg.Engine, r.group)
	if err != nil {
		return fmt.Errorf("shard: range %d: read applied index: %w", g, err)
	}
	r.mu.applied = max(r.mu.applied, idx)
	return nil
}

// WriteInitialState writes a new range's descriptor into the engine (part of
// cluster bootstrap, identical on every initial replica).
func WriteInitialState(eng *engine.Engine, desc *tesserapb.RangeDescriptor) error {
	v, err := proto.Marshal(desc)
	if err != nil {
		return fmt.Errorf("shard: encode descriptor: %w", err)
	}
	b := eng.NewWriteBatch()
	defer b.Close()
	if err := b.Set(engine.LocalGroupKey(desc.GetRangeId(), engine.KindDescriptor), v); err != nil {
		return err
	}
	if err := b.Commit(true); err != nil {
		return fmt.Errorf("shard: write descriptor of range %d: %w", desc.GetRangeId(), err)
	}
	return nil
}

// Descriptor returns the range's descriptor.
func (r *Replica) Descriptor() *tesserapb.RangeDescriptor {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.mu.desc
}

// Status is a replica's view of its range.
type Status struct {
	Descriptor *tesserapb.RangeDescriptor
	Leader     raftgroup.NodeID
	Term       uint64
	IsLeader   bool
	Applied    uint64
	AppliedRev engine.Revision
	Resolved   engine.Revision
	CompactRev engine.Revision
}

// Load returns the replica's recent request rate (reads and writes per
// second, decaying with Config.LoadHalfLife).
func (r *Replica) Load() float64 { return r.load.rate(time.Now()) }

// PendingWrites returns the writes this replica's leader holds that have not
// applied yet: waiting for a revision or proposed and not applied.
func (r *Replica) PendingWrites() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.batches.Queued() + len(r.mu.inflight)
}

// Status returns the replica's status.
func (r *Replica) Status() Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	return Status{
		Descriptor: r.mu.desc, Leader: r.mu.leader, Term: r.mu.term, IsLeader: r.mu.isLeader,
		Applied: r.mu.applied, AppliedRev: r.mu.appliedRev, Resolved: r.mu.resolved, CompactRev: r.mu.compactRev,
	}
}

// DataSpan implements raftgroup.StateMachine.
func (r *Replica) DataSpan() engine.Span {
	d := r.Descriptor()
	return engine.DataSpan(d.GetStartKey(), d.GetEndKey())
}

// LeaderChanged implements raftgroup.StateMachine.
func (r *Replica) LeaderChanged(leader raftgroup.NodeID, term uint64, isLeader bool) {
	r.mu.Lock()
	lost := r.mu.isLeader && (!isLeader || term != r.mu.term)
	r.mu.leader, r.mu.term, r.mu.isLeader = leader, term, isLeader
	r.publishRouteLocked()
	var orphans []*proposal
	if lost {
		for _, p := range r.mu.inflight {
			orphans = append(orphans, p)
		}
		// Writes not yet proposed can go to the new leader safely.
		for _, p := range r.batches.Drain() {
			p.finish(nil, r.notLeaderLocked())
		}
	}
	r.notifyLocked()
	r.mu.Unlock()
	if len(orphans) > 0 {
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			r.expireOrphans(orphans)
		}()
	}
}

// notifyLocked wakes everything waiting for a change of state.
func (r *Replica) notifyLocked() {
	close(r.mu.changed)
	r.mu.changed = make(chan struct{})
}

// waitLocked waits until cond holds, releasing the lock while it waits.
func (r *Replica) waitLocked(ctx context.Context, cond func() bool) error {
	for !cond() {
		if r.mu.closed {
			return ErrReplicaClosed
		}
		ch := r.mu.changed
		r.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			r.mu.Lock()
			return ctx.Err()
		}
		r.mu.Lock()
	}
	return nil
}

func (r *Replica) notLeaderLocked() error { return r.routeLocked().notLeader() }

// checkRequestLocked checks that the request is for this range as it is now.
func (r *Replica) checkRoutingLocked(generation uint64) error {
	return r.routeLocked().check(generation)
}

func (r *Replica) keyMismatchLocked() error { return r.routeLocked().keyMismatch() }
