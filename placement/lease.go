package placement

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/protobuf/proto"

	"github.com/tesseradb/tessera/engine"
	"github.com/tesseradb/tessera/proto/tesserapb"
	"github.com/tesseradb/tessera/raftgroup"
)

// Leases are cluster objects kept by the meta group, as DESIGN.md places
// them. Grants, revocations and TTL checkpoints are meta commands, applied
// on every meta replica (one system key per lease). Expiry is decided by
// the meta group's leader alone, from deadlines it keeps in memory:
// keep-alives move a deadline without a Raft write. A replica that becomes
// leader starts every lease from its checkpointed remaining TTL (else its
// full TTL) plus an election timeout, as etcd's lessor.Promote does, so a
// leader change never expires a lease early.
//
// The keys of a lease live on the data ranges: revoking a lease is first a
// revocation command on every range (shard/replica_lease.go), then the
// removal of the lease here. Until the removal applies the lease still
// exists; while its leader revokes it, keep-alives fail as for an expired
// lease.

// leasePrefix is the system key prefix of the granted leases.
const leasePrefix = "meta/lease/"

var leaseSpan = engine.SystemSpan(leasePrefix)

func leaseKey(id int64) []byte {
	return engine.SystemKey(fmt.Sprintf("%s%016x", leasePrefix, uint64(id)))
}

// LeaseConfig configures the meta group's lessor.
type LeaseConfig struct {
	// MinTTL is the smallest TTL granted, in seconds; a smaller request is
	// raised to it (etcd's --min-lease-ttl rule: 1.5 election timeouts,
	// rounded up, so a leader change cannot expire a fresh lease).
	MinTTL int64
	// PromoteExtension is added to every lease's deadline when this replica
	// becomes the meta leader: an election timeout, as in etcd.
	PromoteExtension time.Duration
	// LookupValidity is how long a looked-up lease incarnation may be used
	// by a write (in TSO time, from the lookup to the write's revision),
	// and so how long a range remembers a revocation (lease_gc.go): 30 s,
	// far above a write's time in flight (etcd's 7 s request timeout plus
	// retries). It must be the same on every node.
	LookupValidity time.Duration
}

// DefaultLeaseConfig is etcd's: 1 s election timeout, so a 2 s minimum TTL.
func DefaultLeaseConfig() LeaseConfig {
	return LeaseConfig{MinTTL: 2, PromoteExtension: time.Second, LookupValidity: 30 * time.Second}
}

// Validate checks the configuration.
func (c LeaseConfig) Validate() error {
	if c.MinTTL < 1 {
		return fmt.Errorf("placement: lease MinTTL %d must be at least 1 s", c.MinTTL)
	}
	if c.PromoteExtension < 0 {
		return fmt.Errorf("placement: lease PromoteExtension %v must not be negative", c.PromoteExtension)
	}
	if c.LookupValidity < time.Millisecond {
		return fmt.Errorf("placement: lease LookupValidity %v must be at least 1 ms", c.LookupValidity)
	}
	return nil
}

// MaxLeaseTTL is etcd's largest TTL in seconds (lease.MaxLeaseTTL).
const MaxLeaseTTL = 9_000_000_000

// lease is one granted lease on a meta replica.
type lease struct {
	rec *tesserapb.LeaseRecord
	// Leader only: when it expires, and whether a revocation is under way.
	expiry   time.Time
	revoking bool
	heapIdx  int // in Meta.mu.expiries; -1: not there (lease_heap.go)
}

// ref names this grant of the lease.
func (l *lease) ref() *tesserapb.LeaseRef {
	return &tesserapb.LeaseRef{Id: l.rec.GetId(), Incarnation: l.rec.GetIncarnation()}
}

// SetLeaseConfig sets the lessor's configuration (before the node starts).
func (m *Meta) SetLeaseConfig(cfg LeaseConfig) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.mu.leaseCfg = cfg
	return nil
}

// loadLeasesLocked reads the granted leases from the engine.
func (m *Meta) loadLeasesLocked() error {
	it, err := m.eng.NewIter(leaseSpan)
	if err != nil {
		return fmt.Errorf("placement: read leases: %w", err)
	}
	defer it.Close()
	leases := make(map[int64]*lease)
	for valid := it.First(); valid; valid = it.Next() {
		v, err := it.Value()
		if err != nil {
			return fmt.Errorf("placement: read leases: %w", err)
		}
		rec := &tesserapb.LeaseRecord{}
		if err := proto.Unmarshal(v, rec); err != nil {
			return fmt.Errorf("placement: decode lease %q: %w", it.Key(), err)
		}
		leases[rec.GetId()] = newLease(rec)
	}
	if err := it.Error(); err != nil {
		return fmt.Errorf("placement: read leases: %w", err)
	}
	m.mu.leases = leases
	m.mu.expiries = nil
	if m.mu.isLeader {
		m.promoteLeasesLocked(time.Now())
	}
	return nil
}

func (m *Meta) putLeaseLocked(b *engine.Batch, rec *tesserapb.LeaseRecord) error {
	v, err := proto.Marshal(rec)
	if err != nil {
		return err
	}
	return b.Set(leaseKey(rec.GetId()), v)
}

// applyLeaseGrantLocked grants a lease at log index index (its
// incarnation); an existing id is etcd's "lease already exists".
func (m *Meta) applyLeaseGrantLocked(b *engine.Batch, g *tesserapb.LeaseRecord, index uint64) (*tesserapb.LeaseRecord, error) {
	if _, ok := m.mu.leases[g.GetId()]; ok {
		return nil, rpctypes.ErrGRPCLeaseExist
	}
	rec := &tesserapb.LeaseRecord{Id: g.GetId(), Ttl: g.GetTtl(), Incarnation: index}
	if err := m.putLeaseLocked(b, rec); err != nil {
		return nil, err
	}
	l := newLease(rec)
	if m.mu.isLeader {
		l.expiry = time.Now().Add(time.Duration(rec.GetTtl()) * time.Second)
		m.scheduleLocked(l)
	}
	m.mu.leases[rec.GetId()] = l
	return rec, nil
}

// applyLeaseRevokeLocked removes the leases (of the named incarnation).
func (m *Meta) applyLeaseRevokeLocked(b *engine.Batch, refs []*tesserapb.LeaseRef) error {
	for _, ref := range refs {
		l, ok := m.mu.leases[ref.GetId()]
		if !ok || l.rec.GetIncarnation() != ref.GetIncarnation() {
			continue
		}
		if err := b.Delete(leaseKey(ref.GetId())); err != nil {
			return err
		}
		m.unscheduleLocked(l)
		delete(m.mu.leases, ref.GetId())
	}
	return nil
}

// applyLeaseCheckpointsLocked records remaining TTLs.
func (m *Meta) applyLeaseCheckpointsLocked(b *engine.Batch, cps []*tesserapb.LeaseCheckpoint) error {
	for _, cp := range cps {
		l, ok := m.mu.leases[cp.GetId()]
		if !ok || l.rec.GetRemainingTtl() == cp.GetRemainingTtl() {
			continue
		}
		rec := proto.Clone(l.rec).(*tesserapb.LeaseRecord)
		rec.RemainingTtl = cp.GetRemainingTtl()
		if err := m.putLeaseLocked(b, rec); err != nil {
			return err
		}
		l.rec = rec
	}
	return nil
}

// promoteLeasesLocked starts every lease's deadline on a new leader: its
// checkpointed remaining TTL, else its TTL, plus an election timeout.
func (m *Meta) promoteLeasesLocked(now time.Time) {
	for _, l := range m.mu.leases {
		ttl := l.rec.GetTtl()
		if r := l.rec.GetRemainingTtl(); r > 0 {
			ttl = r
		}
		l.expiry = now.Add(time.Duration(ttl)*time.Second + m.mu.leaseCfg.PromoteExtension)
		l.revoking = false
	}
	m.rescheduleAllLocked()
}

// notLeaderLocked is the error of a lease operation on a follower.
func (m *Meta) notLeaderLocked() error {
	return &raftgroup.NotLeaderError{Group: MetaRangeID, Leader: m.mu.leader}
}

// leaseLeaderLocked reports whether this replica serves leases: it leads
// and has applied an entry of its term, so it knows every lease granted
// before (a lease it has not applied yet would look expired otherwise).
func (m *Meta) leaseLeaderLocked() bool {
	return m.mu.isLeader && m.mu.appliedTerm == m.mu.term
}

// GrantLease grants a lease with the given id (0: one picked here) and TTL
// in seconds (raised to the minimum TTL). It runs on the meta leader.
func (m *Meta) GrantLease(ctx context.Context, id, ttl int64) (*tesserapb.LeaseRecord, error) {
	if ttl > MaxLeaseTTL {
		return nil, rpctypes.ErrGRPCLeaseTTLTooLarge
	}
	m.mu.Lock()
	ttl = max(ttl, m.mu.leaseCfg.MinTTL)
	m.mu.Unlock()
	for attempt := 0; ; attempt++ {
		pick := id
		if pick == 0 {
			// As etcd: a positive random id; a taken one is picked again.
			pick = rand.Int64N(1<<63-1) + 1
		}
		res, err := m.propose(ctx, &tesserapb.MetaCommand{LeaseGrant: &tesserapb.LeaseRecord{Id: pick, Ttl: ttl}})
		if err != nil {
			return nil, fmt.Errorf("placement: grant lease %d: %w", pick, err)
		}
		if res.err == nil {
			return res.lease, nil
		}
		if id != 0 || !errors.Is(res.err, rpctypes.ErrGRPCLeaseExist) || attempt > 8 {
			return nil, res.err
		}
	}
}

// LookupLeases returns the leases among ids that exist (and are not being
// revoked), with their incarnations and the validity of the answer
// (lease_gc.go). It answers on the meta leader only.
func (m *Meta) LookupLeases(ids []int64) ([]*tesserapb.LeaseRef, error) {
	// The TSO floor is taken before the leases are checked (lease_gc.go).
	f, serving := m.tso.floor()
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.leaseLeaderLocked() || !serving {
		return nil, m.notLeaderLocked()
	}
	var out []*tesserapb.LeaseRef
	for _, id := range ids {
		if l, ok := m.mu.leases[id]; ok && !l.revoking {
			ref := l.ref()
			ref.ValidUntil = validUntil(f, m.mu.leaseCfg.LookupValidity)
			out = append(out, ref)
		}
	}
	return out, nil
}

// KeepAliveLease renews a lease on the meta leader and returns its TTL. A
// lease that does not exist, has expired or is being revoked answers
// rpctypes.ErrGRPCLeaseNotFound (etcd then sends TTL 0). A renewal of a
// lease with a checkpointed remaining TTL first clears the checkpoint (one
// Raft write, as etcd's lessor does), so a new leader cannot start it from
// the stale value.
func (m *Meta) KeepAliveLease(ctx context.Context, id int64) (int64, error) {
	now := time.Now()
	m.mu.Lock()
	if !m.leaseLeaderLocked() {
		err := m.notLeaderLocked()
		m.mu.Unlock()
		return 0, err
	}
	l, ok := m.mu.leases[id]
	if !ok || l.revoking || !now.Before(l.expiry) {
		m.mu.Unlock()
		return 0, rpctypes.ErrGRPCLeaseNotFound
	}
	checkpointed := l.rec.GetRemainingTtl() > 0
	ttl := l.rec.GetTtl()
	m.mu.Unlock()
	if checkpointed {
		if _, err := m.propose(ctx, &tesserapb.MetaCommand{LeaseCheckpoints: []*tesserapb.LeaseCheckpoint{{Id: id}}}); err != nil {
			return 0, fmt.Errorf("placement: keep lease %d alive: %w", id, err)
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.leaseLeaderLocked() {
		return 0, m.notLeaderLocked()
	}
	if l, ok = m.mu.leases[id]; !ok || l.revoking {
		return 0, rpctypes.ErrGRPCLeaseNotFound
	}
	l.expiry = time.Now().Add(time.Duration(ttl) * time.Second)
	m.scheduleLocked(l)
	return ttl, nil
}

// LeaseStatus is what LeaseTimeToLive reports.
type LeaseStatus struct {
	Ref *tesserapb.LeaseRef
	// Granted TTL and remaining seconds (rounded down, as etcd).
	TTL, Remaining int64
}

// LeaseTimeToLive reports a lease on the meta leader (ok false: no such
// lease, or it expired).
func (m *Meta) LeaseTimeToLive(id int64) (LeaseStatus, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.leaseLeaderLocked() {
		return LeaseStatus{}, false, m.notLeaderLocked()
	}
	l, ok := m.mu.leases[id]
	if !ok {
		return LeaseStatus{}, false, nil
	}
	rem := int64(time.Until(l.expiry) / time.Second)
	if rem <= 0 || l.revoking {
		rem = -1
	}
	return LeaseStatus{Ref: l.ref(), TTL: l.rec.GetTtl(), Remaining: rem}, true, nil
}

// LeaseIDs lists the granted leases (on the meta leader).
func (m *Meta) LeaseIDs() ([]int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.leaseLeaderLocked() {
		return nil, m.notLeaderLocked()
	}
	ids := make([]int64, 0, len(m.mu.leases))
	for id := range m.mu.leases {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids, nil
}

// StartRevoke marks leases as being revoked (keep-alives and lookups fail
// from now on) and returns the grants to revoke on every range, each with
// the revision after which the ranges may forget it (lease_gc.go). Leases
// that do not exist are left out.
func (m *Meta) StartRevoke(ids []int64) ([]*tesserapb.LeaseRef, error) {
	m.mu.Lock()
	if !m.leaseLeaderLocked() {
		defer m.mu.Unlock()
		return nil, m.notLeaderLocked()
	}
	var out []*tesserapb.LeaseRef
	for _, id := range ids {
		if l, ok := m.mu.leases[id]; ok {
			l.revoking = true
			out = append(out, l.ref())
		}
	}
	m.mu.Unlock()
	if !m.stampRevocations(out) {
		m.AbortRevoke(out)
		m.mu.Lock()
		defer m.mu.Unlock()
		return nil, m.notLeaderLocked()
	}
	return out, nil
}

// AbortRevoke clears the mark of a revocation that failed: the lease lives
// on (its deadline unchanged, so an expired one is tried again).
func (m *Meta) AbortRevoke(refs []*tesserapb.LeaseRef) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, ref := range refs {
		if l, ok := m.mu.leases[ref.GetId()]; ok && l.rec.GetIncarnation() == ref.GetIncarnation() {
			l.revoking = false
			m.scheduleLocked(l)
		}
	}
}

// FinishRevoke removes leases whose keys every range has deleted.
func (m *Meta) FinishRevoke(ctx context.Context, refs []*tesserapb.LeaseRef) error {
	if _, err := m.propose(ctx, &tesserapb.MetaCommand{LeaseRevoke: refs}); err != nil {
		return fmt.Errorf("placement: remove %d revoked leases: %w", len(refs), err)
	}
	return nil
}

// ExpiredLease is a lease whose deadline passed.
type ExpiredLease struct {
	Ref    *tesserapb.LeaseRef
	Expiry time.Time
}

// TakeExpired marks up to limit leases whose deadline is before now as being
// revoked and returns them (on the meta leader; nothing elsewhere).
func (m *Meta) TakeExpired(now time.Time, limit int) []ExpiredLease {
	m.mu.Lock()
	if !m.leaseLeaderLocked() {
		m.mu.Unlock()
		return nil
	}
	var out []ExpiredLease
	var refs []*tesserapb.LeaseRef
	// Earliest deadline first (lease_heap.go).
	for len(out) < limit && len(m.mu.expiries) > 0 && m.mu.expiries[0].expiry.Before(now) {
		l := heap.Pop(&m.mu.expiries).(*lease)
		if l.revoking {
			continue // a revocation under way; AbortRevoke puts it back
		}
		l.revoking = true
		out = append(out, ExpiredLease{Ref: l.ref(), Expiry: l.expiry})
		refs = append(refs, out[len(out)-1].Ref)
		if len(out) == 1 {
			m.log.Debug("lease expired", "lease", l.rec.GetId(), "ttl", l.rec.GetTtl(), "expiry", l.expiry, "term", m.mu.term)
		}
	}
	m.mu.Unlock()
	if len(refs) > 0 && !m.stampRevocations(refs) {
		m.AbortRevoke(refs)
		return nil
	}
	return out
}

// CheckpointLeases records, through the meta group, the remaining TTL of
// every lease whose remaining TTL is below its TTL (etcd's lease
// checkpointing), at most limit per command. It runs on the meta leader.
func (m *Meta) CheckpointLeases(ctx context.Context, limit int) error {
	now := time.Now()
	m.mu.Lock()
	if !m.leaseLeaderLocked() {
		err := m.notLeaderLocked()
		m.mu.Unlock()
		return err
	}
	var cps []*tesserapb.LeaseCheckpoint
	for id, l := range m.mu.leases {
		if l.revoking || l.expiry.IsZero() {
			continue
		}
		rem := int64(l.expiry.Sub(now)/time.Second) + 1 // rounded up: never early
		if rem < l.rec.GetTtl() && rem > 0 && rem != l.rec.GetRemainingTtl() {
			cps = append(cps, &tesserapb.LeaseCheckpoint{Id: id, RemainingTtl: rem})
		}
	}
	m.mu.Unlock()
	for len(cps) > 0 {
		n := min(limit, len(cps))
		if _, err := m.propose(ctx, &tesserapb.MetaCommand{LeaseCheckpoints: cps[:n]}); err != nil {
			return fmt.Errorf("placement: checkpoint leases: %w", err)
		}
		cps = cps[n:]
	}
	return nil
}

// LeaseCount returns the number of granted leases on this replica.
func (m *Meta) LeaseCount() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.mu.leases)
}

// isEtcdError reports whether err is one of etcd's client-facing errors (a
// command's result) rather than a storage failure.
func isEtcdError(err error) bool {
	return errors.Is(err, rpctypes.ErrGRPCLeaseExist)
}
