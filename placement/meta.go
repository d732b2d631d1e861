package placement

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	etcdpb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/tesseradb/tessera/engine"
	"github.com/tesseradb/tessera/internal/descset"
	"github.com/tesseradb/tessera/proto/tesserapb"
	"github.com/tesseradb/tessera/raftgroup"
)

// System keys of the meta group's replicated state.
var (
	keyBootstrap = engine.SystemKey("meta/bootstrap")
	keyTSOHigh   = engine.SystemKey("meta/tso-high-water-ms")
	metaSpan     = engine.SystemSpan("meta/")
)

// RaftHost is what the meta group needs from the node's raft host.
type RaftHost interface {
	Propose(id raftgroup.GroupID, data []byte) error
	// ReadIndex confirms leadership with a quorum (the TSO proves it still
	// leads before it hands out timestamps).
	ReadIndex(ctx context.Context, id raftgroup.GroupID) (uint64, error)
}

// Meta is the meta group's state machine on one node. On the leader it also
// runs the TSO.
type Meta struct {
	node raftgroup.NodeID
	eng  *engine.Engine
	raft RaftHost
	log  *slog.Logger
	tso  *TSO

	mu struct {
		sync.Mutex
		bootstrap *tesserapb.ClusterBootstrap
		highMs    int64                           // TSO high-water mark
		alarms    map[alarmID]*etcdpb.AlarmMember // active alarms (alarms.go)
		leases    map[int64]*lease                // granted leases (lease.go)
		expiries  leaseHeap                       // leases by deadline (lease_heap.go)
		leaseCfg  LeaseConfig
		nodes     nodeTable // the node table (nodes_table.go)
		// appliedTerm is the term of the last entry applied: a new leader
		// serves leases once it applied an entry of its own term (every
		// earlier committed grant and revoke is applied by then).
		appliedTerm uint64
		leader      raftgroup.NodeID
		isLeader    bool
		term        uint64
		nextID      uint64
		waiters     map[uint64]chan metaResult
		results     []metaResultFor
		// dir is the range directory (directory.go); dirWritten: its
		// entries are in the engine (else it is the bootstrap layout).
		dir        *descset.Set
		dirWritten bool
		// appliedIndex is the last index applied here; appliedCh is
		// closed (and replaced) when it moves (directory reads wait on it).
		appliedIndex uint64
		appliedCh    chan struct{}
	}
	// auth is the auth state (auth_meta.go); its cur is guarded by mu.
	auth metaAuth
}

type metaResult struct {
	prevHighMs, highMs int64
	// alarms: the alarms an alarm request activated or deactivated.
	alarms []*etcdpb.AlarmMember
	// lease: the lease a grant created; err: why a command failed (an
	// etcd error, such as a duplicate lease id).
	lease *tesserapb.LeaseRecord
	err   error
	// node, nodes: the node a node change made and the table after it.
	node  *tesserapb.NodeRecord
	nodes []*tesserapb.NodeRecord
	// authErr: etcd's error when an auth change was refused.
	authErr error
	// firstRangeID: the first of the range ids an allocation handed out.
	firstRangeID uint64
	// recorded: how many descriptors of a directory update changed it.
	recorded int
}

type metaResultFor struct {
	id uint64
	r  metaResult
}

var _ raftgroup.StateMachine = (*Meta)(nil)

// WriteMetaInitialState writes the meta group's initial replicated state
// (identical on every initial meta replica).
func WriteMetaInitialState(eng *engine.Engine, b *tesserapb.ClusterBootstrap) error {
	v, err := proto.Marshal(b)
	if err != nil {
		return fmt.Errorf("placement: encode bootstrap: %w", err)
	}
	wb := eng.NewWriteBatch()
	defer wb.Close()
	if err := wb.Set(keyBootstrap, v); err != nil {
		return err
	}
	if err := wb.Set(keyTSOHigh, binary.BigEndian.AppendUint64(nil, 0)); err != nil {
		return err
	}
	// The range directory starts as the bootstrap layout (directory.go).
	if err := writeDirectory(wb, b.GetRanges()); err != nil {
		return err
	}
	if err := wb.Commit(true); err != nil {
		return fmt.Errorf("placement: write meta state: %w", err)
	}
	return nil
}

// NewMeta opens the meta group's state machine on this node.
func NewMeta(node raftgroup.NodeID, eng *engine.Engine, raft RaftHost, tsoCfg TSOConfig, log *slog.Logger) (*Meta, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := &Meta{node: node, eng: eng, raft: raft, log: log.With("range", MetaRangeID)}
	m.mu.waiters = make(map[uint64]chan metaResult)
	m.mu.alarms = make(map[alarmID]*etcdpb.AlarmMember)
	m.mu.leases = make(map[int64]*lease)
	m.mu.leaseCfg = DefaultLeaseConfig()
	m.mu.nextID = uint64(time.Now().UnixNano())
	m.mu.appliedCh = make(chan struct{})
	if err := m.load(); err != nil {
		return nil, err
	}
	m.tso = newTSO(tsoCfg, m)
	return m, nil
}

func (m *Meta) load() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	v, err := m.eng.Get(keyBootstrap)
	if err != nil && !errors.Is(err, engine.ErrNotFound) {
		return fmt.Errorf("placement: read bootstrap: %w", err)
	}
	if err == nil {
		b := &tesserapb.ClusterBootstrap{}
		if err := proto.Unmarshal(v, b); err != nil {
			return fmt.Errorf("placement: decode bootstrap: %w", err)
		}
		m.mu.bootstrap = b
	}
	h, err := m.eng.Get(keyTSOHigh)
	switch {
	case errors.Is(err, engine.ErrNotFound):
	case err != nil:
		return fmt.Errorf("placement: read TSO high-water mark: %w", err)
	case len(h) == 8:
		m.mu.highMs = int64(binary.BigEndian.Uint64(h))
	default:
		return errors.New("placement: corrupt TSO high-water mark")
	}
	if err := m.loadAuthLocked(); err != nil {
		return err
	}
	if err := m.loadNodesLocked(); err != nil {
		return err
	}
	if err := m.loadDirectoryLocked(); err != nil {
		return err
	}
	if err := m.loadAlarmsLocked(); err != nil {
		return err
	}
	return m.loadLeasesLocked()
}

// TSO returns the node's TSO server (serving only while this node leads the
// meta group).
func (m *Meta) TSO() *TSO { return m.tso }

// Close stops the TSO.
func (m *Meta) Close() { m.tso.close() }

// Leader returns the meta group's leader as known here.
func (m *Meta) Leader() raftgroup.NodeID {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.mu.leader
}

// Bootstrap returns the cluster's bootstrap record.
func (m *Meta) Bootstrap() *tesserapb.ClusterBootstrap {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.mu.bootstrap
}

// DataSpan implements raftgroup.StateMachine.
func (m *Meta) DataSpan() engine.Span { return metaSpan }

// Apply implements raftgroup.StateMachine.
func (m *Meta) Apply(b *engine.Batch, ents []*raftpb.Entry) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, e := range ents {
		m.mu.appliedTerm = e.GetTerm()
		if e.GetType() != raftpb.EntryNormal || len(e.GetData()) == 0 {
			continue
		}
		cmd := &tesserapb.MetaCommand{}
		if err := proto.Unmarshal(e.GetData(), cmd); err != nil {
			return fmt.Errorf("placement: decode meta command at %d: %w", e.GetIndex(), err)
		}
		prev := m.mu.highMs
		if h := cmd.GetTsoHighWaterMs(); h > m.mu.highMs {
			m.mu.highMs = h
			if err := b.Set(keyTSOHigh, binary.BigEndian.AppendUint64(nil, uint64(h))); err != nil {
				return err
			}
		}
		var alarms []*etcdpb.AlarmMember
		if req := cmd.GetAlarmRequest(); len(req) > 0 {
			var err error
			if alarms, err = m.applyAlarmLocked(b, req); err != nil {
				return fmt.Errorf("placement: meta command at %d: %w", e.GetIndex(), err)
			}
		}
		res := metaResult{prevHighMs: prev, highMs: m.mu.highMs, alarms: alarms}
		if req := cmd.GetAuthRequest(); len(req) > 0 {
			var err error
			if res.authErr, err = m.applyAuthLocked(b, req, cmd.GetAuthTokenKey()); err != nil {
				return fmt.Errorf("placement: meta command at %d: %w", e.GetIndex(), err)
			}
		}
		if g := cmd.GetLeaseGrant(); g != nil {
			rec, err := m.applyLeaseGrantLocked(b, g, e.GetIndex())
			if err != nil && !isEtcdError(err) {
				return fmt.Errorf("placement: meta command at %d: %w", e.GetIndex(), err)
			}
			res.lease, res.err = rec, err
		}
		if refs := cmd.GetLeaseRevoke(); len(refs) > 0 {
			if err := m.applyLeaseRevokeLocked(b, refs); err != nil {
				return fmt.Errorf("placement: meta command at %d: %w", e.GetIndex(), err)
			}
		}
		if cps := cmd.GetLeaseCheckpoints(); len(cps) > 0 {
			if err := m.applyLeaseCheckpointsLocked(b, cps); err != nil {
				return fmt.Errorf("placement: meta command at %d: %w", e.GetIndex(), err)
			}
		}
		if n := cmd.GetAllocateRangeIds(); n > 0 {
			first, err := m.applyAllocateRangeIDsLocked(b, n)
			if err != nil {
				return fmt.Errorf("placement: meta command at %d: %w", e.GetIndex(), err)
			}
			res.firstRangeID = first
		}
		if c := cmd.GetNodeChange(); c != nil {
			rec, err := m.applyNodeChangeLocked(b, c)
			if err != nil && !isNodeTableError(err) {
				return fmt.Errorf("placement: meta command at %d: %w", e.GetIndex(), err)
			}
			res.node, res.err = rec, err
			if err == nil {
				res.nodes = m.nodeTableLocked()
			}
		}
		if ds := cmd.GetDirectoryUpdate(); len(ds) > 0 {
			var err error
			if res.recorded, err = m.applyDirectoryLocked(b, ds); err != nil {
				return fmt.Errorf("placement: meta command at %d: %w", e.GetIndex(), err)
			}
		}
		if cmd.GetProposerNode() == uint64(m.node) {
			m.mu.results = append(m.mu.results, metaResultFor{id: cmd.GetProposalId(), r: res})
		}
	}
	return nil
}

// Applied implements raftgroup.StateMachine.
func (m *Meta) Applied(index uint64) {
	m.mu.Lock()
	m.noteAppliedLocked(index)
	results := m.mu.results
	m.mu.results = nil
	var deliver []func()
	for _, r := range results {
		if ch, ok := m.mu.waiters[r.id]; ok {
			delete(m.mu.waiters, r.id)
			res := r.r
			deliver = append(deliver, func() { ch <- res })
		}
	}
	high := m.mu.highMs
	m.mu.Unlock()
	for _, d := range deliver {
		d()
	}
	m.tso.highWaterApplied(high)
}

// SnapshotApplied implements raftgroup.StateMachine.
func (m *Meta) SnapshotApplied(index uint64) error {
	if err := m.load(); err != nil {
		return err
	}
	m.mu.Lock()
	m.noteAppliedLocked(index)
	high := m.mu.highMs
	m.mu.Unlock()
	m.tso.highWaterApplied(high)
	return nil
}

// LeaderChanged implements raftgroup.StateMachine.
func (m *Meta) LeaderChanged(leader raftgroup.NodeID, term uint64, isLeader bool) {
	m.mu.Lock()
	if isLeader && !m.mu.isLeader {
		m.promoteLeasesLocked(time.Now())
		m.log.Debug("meta leader: leases promoted", "leases", len(m.mu.leases), "term", term)
	}
	m.mu.leader, m.mu.isLeader, m.mu.term = leader, isLeader, term
	m.mu.Unlock()
	m.tso.leaderChanged(leader, term, isLeader)
}

// raiseHighWater proposes a new TSO high-water mark and waits until it
// applied, returning the mark before and after it.
func (m *Meta) raiseHighWater(ctx context.Context, highMs int64) (metaResult, error) {
	r, err := m.propose(ctx, &tesserapb.MetaCommand{TsoHighWaterMs: highMs})
	if err != nil {
		return metaResult{}, fmt.Errorf("placement: raise TSO high-water mark: %w", err)
	}
	return r, nil
}

// propose proposes a meta command (its proposal id and proposer are set
// here) and waits until this replica applied it.
func (m *Meta) propose(ctx context.Context, cmd *tesserapb.MetaCommand) (metaResult, error) {
	m.mu.Lock()
	m.mu.nextID++
	id := m.mu.nextID
	ch := make(chan metaResult, 1)
	m.mu.waiters[id] = ch
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		delete(m.mu.waiters, id)
		m.mu.Unlock()
	}()
	cmd.ProposalId, cmd.ProposerNode = id, uint64(m.node)
	data, err := proto.Marshal(cmd)
	if err != nil {
		return metaResult{}, err
	}
	if err := m.raft.Propose(MetaRangeID, data); err != nil {
		return metaResult{}, fmt.Errorf("propose: %w", err)
	}
	select {
	case r := <-ch:
		return r, nil
	case <-ctx.Done():
		return metaResult{}, ctx.Err()
	}
}
