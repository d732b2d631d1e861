package placement

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/tesseradb/tessera/engine"
	"github.com/tesseradb/tessera/raftgroup"
)

// LogicalBits is the width of a timestamp's logical part.
const LogicalBits = 18

// MaxTSOCount is the most timestamps one request may ask for: the logical
// part of one millisecond, less one.
const MaxTSOCount = 1<<LogicalBits - 1

// TSOConfig configures the TSO.
type TSOConfig struct {
	// Window is how far ahead of the clock the high-water mark is raised
	// (3 s, as PD: a new leader may have to wait up to this long for its
	// clock to pass the mark, and one raft write per window keeps it cheap).
	Window time.Duration
	// Now is the clock; nil is time.Now (tests inject a fake).
	Now func() time.Time
	// Grants is how many write grants the leader remembers (16,384: at
	// 100,000 writes/s in batches of ~10, over a second of grants, so a node
	// reading at least once a second never has to ask every range for its
	// latest write; tso_grants.go).
	Grants int
	// MaxWriters caps the ranges one answer lists as written since the
	// caller's point (1,024); beyond it the caller asks every range.
	MaxWriters int
}

// DefaultTSOConfig returns the defaults.
func DefaultTSOConfig() TSOConfig {
	return TSOConfig{Window: 3 * time.Second, Grants: 16384, MaxWriters: 1024}
}

// ErrTSONotLeader is returned by a TSO that does not serve (this node does
// not lead the meta group, or its leadership is not established yet).
type ErrTSONotLeader struct{ Leader raftgroup.NodeID }

func (e *ErrTSONotLeader) Error() string {
	return fmt.Sprintf("placement: TSO not served here (meta leader %s)", e.Leader)
}

// TSO serves timestamps on the meta group's leader.
type TSO struct {
	cfg  TSOConfig
	meta *Meta

	mu struct {
		sync.Mutex
		serving  bool
		term     uint64
		leader   raftgroup.NodeID
		phys     int64 // ms of the last timestamp handed out
		logical  int64 // next logical value at phys
		highMs   int64 // exclusive limit on phys
		raising  bool
		changed  chan struct{}
		closed   bool
		stopRise context.CancelFunc
		grants   grantLog // write grants of this leadership (tso_grants.go)
	}
	wg sync.WaitGroup
}

func newTSO(cfg TSOConfig, m *Meta) *TSO {
	if cfg.Window <= 0 {
		cfg.Window = DefaultTSOConfig().Window
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Grants <= 0 {
		cfg.Grants = DefaultTSOConfig().Grants
	}
	if cfg.MaxWriters <= 0 {
		cfg.MaxWriters = DefaultTSOConfig().MaxWriters
	}
	t := &TSO{cfg: cfg, meta: m}
	t.mu.grants.limit = cfg.Grants
	t.mu.changed = make(chan struct{})
	return t
}

func (t *TSO) notifyLocked() {
	close(t.mu.changed)
	t.mu.changed = make(chan struct{})
}

func (t *TSO) close() {
	t.mu.Lock()
	t.mu.closed = true
	t.mu.serving = false
	if t.mu.stopRise != nil {
		t.mu.stopRise()
	}
	t.notifyLocked()
	t.mu.Unlock()
	t.wg.Wait()
}

// leaderChanged starts or stops serving. A new leader serves only after its
// own raise of the high-water mark applied: the mark it replaced bounds
// everything its predecessors handed out.
func (t *TSO) leaderChanged(leader raftgroup.NodeID, term uint64, isLeader bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.mu.leader = leader
	if !isLeader || t.mu.closed {
		t.mu.serving = false
		if t.mu.stopRise != nil {
			t.mu.stopRise()
			t.mu.stopRise = nil
		}
		t.notifyLocked()
		return
	}
	if t.mu.serving && t.mu.term == term {
		return
	}
	t.mu.serving = false
	t.mu.term = term
	t.startRaiseLocked(true)
}

// startRaiseLocked raises the high-water mark in the background.
func (t *TSO) startRaiseLocked(takeover bool) {
	if t.mu.raising && !takeover {
		return
	}
	if t.mu.stopRise != nil {
		t.mu.stopRise()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.mu.stopRise = cancel
	t.mu.raising = true
	term := t.mu.term
	target := max(t.cfg.Now().UnixMilli(), t.mu.highMs) + t.cfg.Window.Milliseconds()
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		defer cancel()
		res, err := t.meta.raiseHighWater(ctx, target)
		t.mu.Lock()
		defer t.mu.Unlock()
		t.mu.raising = false
		if err != nil || t.mu.term != term || t.mu.closed {
			if takeover && err != nil && t.mu.term == term && !t.mu.closed {
				// Retry the takeover: a leader that cannot raise the
				// mark cannot serve.
				t.startRaiseLocked(true)
			}
			t.notifyLocked()
			return
		}
		if takeover {
			// Everything handed out before is below prevHighMs.
			if res.prevHighMs > t.mu.phys {
				t.mu.phys, t.mu.logical = res.prevHighMs, 0
			}
			// Every timestamp handed out before, by any leader, is below
			// the next one: the grant log is complete above it.
			t.mu.grants.reset(engine.Revision(t.mu.phys<<LogicalBits|t.mu.logical) - 1)
			t.mu.serving = true
		}
		if res.highMs > t.mu.highMs {
			t.mu.highMs = res.highMs
		}
		t.notifyLocked()
	}()
}

// highWaterApplied records a mark applied by the meta group.
func (t *TSO) highWaterApplied(highMs int64) {
	t.mu.Lock()
	if highMs > t.mu.highMs {
		t.mu.highMs = highMs
		t.notifyLocked()
	}
	t.mu.Unlock()
}

// Serving reports whether this TSO hands out timestamps now.
func (t *TSO) Serving() (bool, raftgroup.NodeID) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.mu.serving, t.mu.leader
}

// Allocate returns the first of n consecutive timestamps, each greater than
// every timestamp handed out before by any leader.
//
// A leader cut off from the others believes it leads until CheckQuorum
// makes it step down, an election timeout later; by then the others may
// have elected a leader that hands out timestamps above this one's whole
// window. Handing out a lower timestamp after that would put a request
// below writes acknowledged before it arrived (a stale read). So the
// timestamps go out only after a ReadIndex round that started after they
// were chosen has confirmed the leadership: a new leader's election ends
// after that round's quorum answered, hence after these timestamps were
// chosen, and everything it hands out is above them anyway.
func (t *TSO) Allocate(ctx context.Context, n int) (engine.Revision, error) {
	first, _, _, err := t.AllocateFor(ctx, n, nil, 0)
	return first, err
}

// AllocateFor is Allocate for a batch of parts (their counts sum to n; nil:
// one part, no write): the grants to ranges' writes are remembered, and
// when since > 0 the answer lists the ranges granted write timestamps above
// since, up to the batch's last timestamp, and whether that list is
// complete (tso_grants.go).
func (t *TSO) AllocateFor(ctx context.Context, n int, parts []TSOPart, since engine.Revision) (engine.Revision, []TSOWriter, bool, error) {
	first, term, writers, complete, err := t.allocate(ctx, n, parts, since)
	if err != nil {
		return 0, nil, false, err
	}
	if _, err := t.meta.raft.ReadIndex(ctx, MetaRangeID); err != nil {
		if ctx.Err() != nil {
			return 0, nil, false, fmt.Errorf("placement: TSO confirming leadership: %w", err)
		}
		// Not confirmed: possibly deposed; the leader is not known here.
		return 0, nil, false, &ErrTSONotLeader{}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.mu.serving || t.mu.term != term {
		return 0, nil, false, &ErrTSONotLeader{Leader: t.mu.leader}
	}
	return first, writers, complete, nil
}

// allocate picks n timestamps and returns them with the term they were
// picked in, recording parts' grants and listing the writers since since.
func (t *TSO) allocate(ctx context.Context, n int, parts []TSOPart, since engine.Revision) (engine.Revision, uint64, []TSOWriter, bool, error) {
	if n <= 0 || n > MaxTSOCount {
		return 0, 0, nil, false, fmt.Errorf("placement: TSO request for %d timestamps", n)
	}
	if parts != nil {
		sum := 0
		for _, p := range parts {
			if p.Count <= 0 {
				return 0, 0, nil, false, fmt.Errorf("placement: TSO request part of %d timestamps", p.Count)
			}
			sum += p.Count
		}
		if sum != n {
			return 0, 0, nil, false, fmt.Errorf("placement: TSO request parts sum to %d, not %d", sum, n)
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for {
		if t.mu.closed {
			return 0, 0, nil, false, errors.New("placement: TSO closed")
		}
		if !t.mu.serving {
			return 0, 0, nil, false, &ErrTSONotLeader{Leader: t.mu.leader}
		}
		now := t.cfg.Now().UnixMilli()
		phys, logical := t.mu.phys, t.mu.logical
		if now > phys {
			phys, logical = now, 0
		}
		if logical+int64(n) > 1<<LogicalBits {
			phys, logical = phys+1, 0
		}
		if phys < t.mu.highMs {
			t.mu.phys, t.mu.logical = phys, logical+int64(n)
			if t.mu.highMs-phys < t.cfg.Window.Milliseconds()/2 {
				t.startRaiseLocked(false)
			}
			first := engine.Revision(phys<<LogicalBits | logical)
			t.mu.grants.add(first, parts)
			var writers []TSOWriter
			complete := false
			if since > 0 {
				writers, complete = t.mu.grants.writersSince(since, t.cfg.MaxWriters)
			}
			return first, t.mu.term, writers, complete, nil
		}
		// At the mark: wait for the raise.
		t.startRaiseLocked(false)
		ch := t.mu.changed
		t.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			t.mu.Lock()
			return 0, 0, nil, false, fmt.Errorf("placement: TSO waiting for high-water mark: %w", ctx.Err())
		}
		t.mu.Lock()
	}
}
