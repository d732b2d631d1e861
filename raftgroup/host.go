package raftgroup

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tesseradb/tessera/engine"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/grpc"
)

// Errors returned by the Host.
var (
	ErrGroupNotFound = errors.New("raftgroup: group not found")
	ErrGroupExists   = errors.New("raftgroup: group already exists")
	ErrNotLeader     = errors.New("raftgroup: not the leader")
	ErrStopped       = errors.New("raftgroup: host stopped")
)

// NotLeaderError says which node this replica believes leads the group.
type NotLeaderError struct {
	Group  GroupID
	Leader NodeID // 0: unknown
}

func (e *NotLeaderError) Error() string {
	return fmt.Sprintf("raftgroup: %s: not the leader (leader %s)", e.Group, e.Leader)
}

func (e *NotLeaderError) Unwrap() error { return ErrNotLeader }

// Host runs many Raft groups on one node: one engine, one worker pool, one
// ticker, one transport. See doc.go for the round it runs.
type Host struct {
	cfg       Config
	log       *slog.Logger
	eng       *engine.Engine
	sched     *scheduler
	transport *Transport
	// snapshotRate paces every snapshot this host sends (snapshot_rate.go).
	snapshotRate *rateLimiter
	metrics      *hostMetrics

	mu struct {
		sync.RWMutex
		groups map[GroupID]*group
		// tombstones caches the groups' tombstones read so far (tombstone.go).
		tombstones map[GroupID]ReplicaID
	}

	readSeq atomic.Uint64
	stopper chan struct{}
	// spawnMu orders goTracked against Close, so that no goroutine is added
	// to wg once Close waits for it.
	spawnMu sync.Mutex
	wg      sync.WaitGroup
	closed  atomic.Bool
}

// goTracked runs fn on a goroutine owned by the host (Close waits for it),
// unless the host is closing.
func (h *Host) goTracked(fn func()) bool {
	h.spawnMu.Lock()
	defer h.spawnMu.Unlock()
	if h.closed.Load() {
		return false
	}
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		fn()
	}()
	return true
}

// NewHost creates a host and its transport. Call Start to run it.
func NewHost(cfg Config) (*Host, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.SnapshotDir, 0o755); err != nil {
		return nil, fmt.Errorf("raftgroup: snapshot dir: %w", err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := &Host{
		cfg:   cfg,
		log:   log.With("node_id", cfg.NodeID),
		eng:   cfg.Engine,
		sched: newScheduler(cfg.MaxGroupsPerRound),

		snapshotRate: newRateLimiter(cfg.SnapshotRate),
		metrics:      newHostMetrics(cfg.Registerer),
		stopper:      make(chan struct{}),
	}
	h.mu.groups = make(map[GroupID]*group)
	h.mu.tombstones = make(map[GroupID]ReplicaID)
	tcfg := cfg.Transport
	tcfg.NodeID = cfg.NodeID
	tcfg.Handler = h
	if tcfg.Registerer == nil {
		tcfg.Registerer = cfg.Registerer
	}
	if tcfg.Logger == nil {
		tcfg.Logger = h.log
	}
	t, err := NewTransport(tcfg)
	if err != nil {
		return nil, err
	}
	h.transport = t
	return h, nil
}

// RegisterService registers the raft transport on a gRPC server.
func (h *Host) RegisterService(s *grpc.Server) { h.transport.Register(s) }

// Transport returns the host's transport.
func (h *Host) Transport() *Transport { return h.transport }

// Start starts the worker pool and the ticker.
func (h *Host) Start() {
	for i := 0; i < h.cfg.Workers; i++ {
		h.wg.Add(1)
		go func() {
			defer h.wg.Done()
			h.worker()
		}()
	}
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		h.ticker()
	}()
}

// Close stops the host: ticker, workers, snapshot senders and transport. It
// does not close the engine.
func (h *Host) Close() error {
	h.spawnMu.Lock()
	if !h.closed.CompareAndSwap(false, true) {
		h.spawnMu.Unlock()
		return nil
	}
	h.spawnMu.Unlock()
	close(h.stopper)
	h.sched.stop()
	h.wg.Wait()
	h.mu.RLock()
	for _, g := range h.mu.groups {
		g.reads.close()
	}
	h.mu.RUnlock()
	return h.transport.Close()
}

func (h *Host) ticker() {
	t := time.NewTicker(h.cfg.TickInterval)
	defer t.Stop()
	var ids []GroupID
	for {
		select {
		case <-h.stopper:
			return
		case <-t.C:
		}
		ids = ids[:0]
		h.mu.RLock()
		for id := range h.mu.groups {
			ids = append(ids, id)
		}
		h.mu.RUnlock()
		h.sched.enqueueMany(ids, flagTick)
	}
}

// Bootstrap writes the initial state of a new group whose initial voters
// (replica ids) are given. Every initial voter's host must bootstrap it (with
// the same voters) before creating it; replicas added later start empty and
// get a snapshot.
func (h *Host) Bootstrap(id GroupID, voters []ReplicaID) error {
	return writeBootstrap(h.cfg.Engine, id, voters)
}

// CreateGroup starts hosting replica self of group id with its persisted
// state (none: an empty replica that waits for a snapshot). peers maps every
// replica of the group known now (self included) to its node; SetPeers
// replaces it when the group's configuration changes. A self below the
// group's tombstone is refused with ErrTombstoned.
func (h *Host) CreateGroup(id GroupID, self ReplicaID, peers []Peer, sm StateMachine) error {
	if self == 0 {
		return fmt.Errorf("raftgroup: create %s: replica id 0", id)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed.Load() {
		return ErrStopped
	}
	if _, ok := h.mu.groups[id]; ok {
		return fmt.Errorf("%w: %s", ErrGroupExists, id)
	}
	ts, err := h.tombstoneLocked(id)
	if err != nil {
		return err
	}
	if self < ts {
		return fmt.Errorf("%w: create %s as %s: replica ids below %s were removed from this node", ErrTombstoned, id, self, ts)
	}
	pm := newPeerMap(peers)
	if n := pm.node(self); n != 0 && n != h.cfg.NodeID {
		return fmt.Errorf("raftgroup: create %s as %s: the peer map puts %s on %s, not on this node %s", id, self, self, n, h.cfg.NodeID)
	}
	if pm.node(self) == 0 {
		pm = newPeerMap(append(slices.Clone(peers), Peer{Replica: self, Node: h.cfg.NodeID}))
	}
	g, err := h.newGroupLocked(id, self, sm)
	if err != nil {
		return err
	}
	g.peers.Store(pm)
	h.mu.groups[id] = g
	h.metrics.groups.Set(float64(len(h.mu.groups)))
	h.sched.enqueue(id, flagReady)
	return nil
}

func (h *Host) newGroupLocked(id GroupID, self ReplicaID, sm StateMachine) (*group, error) {
	st, err := loadStorage(h.cfg.Engine, id, h.cfg.EntryCacheSize)
	if err != nil {
		return nil, err
	}
	g := &group{id: id, self: self, sm: sm, storage: st, log: h.log.With("group", id, "replica_id", self)}
	g.reads = newReadBatcher(h.stopper, func() (chan uint64, func(), func() error, error) { return h.startReadIndex(id) })
	g.mu.readWaiters = make(map[string]chan uint64)
	g.mu.staged = make(map[uint64]stagedSnapshot)
	rn, err := raft.NewRawNode(&raft.Config{
		ID:                        uint64(self),
		ElectionTick:              h.cfg.ElectionTicks,
		HeartbeatTick:             h.cfg.HeartbeatTicks,
		Storage:                   st,
		Applied:                   st.appliedState().Index,
		MaxSizePerMsg:             h.cfg.MaxSizePerMsg,
		MaxCommittedSizePerReady:  h.cfg.MaxCommittedBytesPerReady,
		MaxUncommittedEntriesSize: h.cfg.MaxUncommittedEntriesBytes,
		MaxInflightMsgs:           h.cfg.MaxInflightMsgs,
		CheckQuorum:               true,
		PreVote:                   true,
		StepDownOnRemoval:         true,
		DisableProposalForwarding: h.cfg.DisableProposalForwarding,
		Logger:                    raftLogger{l: g.log},
	})
	if err != nil {
		return nil, fmt.Errorf("raftgroup: %s: new raft node: %w", id, err)
	}
	g.rn = rn
	return g, nil
}

// SetPeers replaces group id's replica->node map (after a configuration
// change or a snapshot brought a new descriptor). The local replica keeps its
// id; a map that puts it on another node is refused.
func (h *Host) SetPeers(id GroupID, peers []Peer) error {
	g, err := h.group(id)
	if err != nil {
		return err
	}
	pm := newPeerMap(peers)
	if n := pm.node(g.self); n != 0 && n != h.cfg.NodeID {
		return fmt.Errorf("raftgroup: %s: peer map puts local replica %s on %s", id, g.self, n)
	}
	if pm.node(g.self) == 0 {
		pm = newPeerMap(append(slices.Clone(peers), Peer{Replica: g.self, Node: h.cfg.NodeID}))
	}
	g.peers.Store(pm)
	// A leader learned before its replica was in the map is named now.
	g.raftMu.Lock()
	lead := g.rn.BasicStatus().Lead
	g.raftMu.Unlock()
	g.leader.Store(uint64(pm.node(ReplicaID(lead))))
	return nil
}

// ReplicaID returns the local replica id of a hosted group.
func (h *Host) ReplicaID(id GroupID) (ReplicaID, error) {
	g, err := h.group(id)
	if err != nil {
		return 0, err
	}
	return g.self, nil
}

func (h *Host) group(id GroupID) (*group, error) {
	h.mu.RLock()
	g := h.mu.groups[id]
	h.mu.RUnlock()
	if g == nil {
		return nil, fmt.Errorf("%w: %s", ErrGroupNotFound, id)
	}
	return g, nil
}

// Groups returns the ids of the hosted groups.
func (h *Host) Groups() []GroupID {
	h.mu.RLock()
	defer h.mu.RUnlock()
	ids := make([]GroupID, 0, len(h.mu.groups))
	for id := range h.mu.groups {
		ids = append(ids, id)
	}
	return ids
}

// withRaft runs fn with the group's raft node locked, then schedules the group.
func (h *Host) withRaft(id GroupID, fn func(g *group) error) error {
	if h.closed.Load() {
		return ErrStopped
	}
	g, err := h.group(id)
	if err != nil {
		return err
	}
	g.raftMu.Lock()
	err = fn(g)
	g.raftMu.Unlock()
	h.sched.enqueue(id, flagReady)
	return err
}

// Propose proposes data to the group. It returns once raft accepted the
// proposal into its log (not when it commits): the state machine sees it in
// Apply. On a follower it fails with a *NotLeaderError.
func (h *Host) Propose(id GroupID, data []byte) error {
	err := h.withRaft(id, func(g *group) error {
		if err := g.rn.Propose(data); err != nil {
			if errors.Is(err, raft.ErrProposalDropped) {
				return &NotLeaderError{Group: id, Leader: g.leaderID()}
			}
			return fmt.Errorf("raftgroup: %s: propose: %w", id, err)
		}
		return nil
	})
	if err == nil {
		h.metrics.proposals.Inc()
	} else {
		h.metrics.proposalsDropped.Inc()
	}
	return err
}

// ProposeConfChange proposes a configuration change (joint consensus when it
// changes more than one voter). Its node ids are ReplicaIDs (raft peer ids);
// call SetPeers so every replica's map knows a replica being added. Apply sees the entry after it committed and
// the host applied it.
func (h *Host) ProposeConfChange(id GroupID, cc *raftpb.ConfChangeV2) error {
	return h.withRaft(id, func(g *group) error {
		if err := g.rn.ProposeConfChange(cc); err != nil {
			if errors.Is(err, raft.ErrProposalDropped) {
				return &NotLeaderError{Group: id, Leader: g.leaderID()}
			}
			return fmt.Errorf("raftgroup: %s: propose conf change: %w", id, err)
		}
		return nil
	})
}

// TransferLeader asks the group's leader (this replica) to hand leadership to
// the replica on node to.
func (h *Host) TransferLeader(id GroupID, to NodeID) error {
	return h.withRaft(id, func(g *group) error {
		if st := g.rn.BasicStatus(); st.RaftState != raft.StateLeader {
			return &NotLeaderError{Group: id, Leader: g.nodeOf(st.Lead)}
		}
		r := g.replicaOn(to)
		if r == 0 {
			return fmt.Errorf("raftgroup: %s: transfer leader: %s holds no replica of the group", id, to)
		}
		g.rn.TransferLeader(uint64(r))
		return nil
	})
}

// Campaign makes this replica start an election now.
func (h *Host) Campaign(id GroupID) error {
	return h.withRaft(id, func(g *group) error { return g.rn.Campaign() })
}

// ReadIndex returns a commit index that a linearizable read may be served at
// once the group has applied it. It needs the leader to confirm its term with
// a quorum (raft's ReadOnlySafe), so it fails on followers and waits for ctx
// when the leader cannot reach a quorum. Concurrent calls share one raft
// ReadIndex round (see readindex.go).
func (h *Host) ReadIndex(ctx context.Context, id GroupID) (uint64, error) {
	g, err := h.group(id)
	if err != nil {
		return 0, err
	}
	return g.reads.wait(ctx)
}

// startReadIndex starts one raft ReadIndex round; the channel receives its
// index, cancel forgets it, lost fails once leadership moved (raft forgets
// pending reads when its leader steps down).
func (h *Host) startReadIndex(id GroupID) (chan uint64, func(), func() error, error) {
	rctx := binary.BigEndian.AppendUint64(nil, h.readSeq.Add(1))
	ch := make(chan uint64, 1)
	var g *group
	var term uint64
	err := h.withRaft(id, func(gr *group) error {
		g = gr
		st := g.rn.BasicStatus()
		if st.RaftState != raft.StateLeader {
			return &NotLeaderError{Group: id, Leader: g.nodeOf(st.Lead)}
		}
		term = st.GetTerm()
		g.mu.Lock()
		g.mu.readWaiters[string(rctx)] = ch
		g.mu.Unlock()
		g.rn.ReadIndex(rctx)
		return nil
	})
	if err != nil {
		return nil, nil, nil, err
	}
	cancel := func() {
		g.mu.Lock()
		delete(g.mu.readWaiters, string(rctx))
		g.mu.Unlock()
	}
	lost := func() error {
		return h.withRaft(id, func(gr *group) error {
			if st := gr.rn.BasicStatus(); st.RaftState != raft.StateLeader || st.GetTerm() != term {
				return &NotLeaderError{Group: id, Leader: gr.nodeOf(st.Lead)}
			}
			return nil
		})
	}
	return ch, cancel, lost, nil
}

// Status is a group's raft status as seen by this replica.
type Status struct {
	Group    GroupID
	Leader   NodeID
	Term     uint64
	Commit   uint64
	Applied  uint64
	IsLeader bool
	// Voters and Learners are the nodes of the group's configuration (0 for
	// a replica id missing from the peer map).
	Voters   []NodeID
	Learners []NodeID
	// ActiveVoters, on a leader, counts the voters (itself included) it
	// heard from within the last election timeout (raft's RecentActive
	// under CheckQuorum); 0 on a follower. Groups heartbeat on their own
	// today; once idle groups quiesce, a quiesced leader must count its
	// voters as active (it stopped hearing from them on purpose).
	ActiveVoters int
	// LeaderChanges counts the changes of the known leader seen by this
	// replica since it was opened.
	LeaderChanges uint64
	// Joint: the configuration is joint (a ConfChangeV2 entered it and
	// has not left it yet).
	Joint bool
	// Match, on a leader, is the highest log index known replicated on
	// each node's replica (voters and learners); nil on a follower. A new
	// learner has caught up once its match reaches the leader's commit.
	Match map[NodeID]uint64
}

// Status returns a group's status.
func (h *Host) Status(id GroupID) (Status, error) {
	g, err := h.group(id)
	if err != nil {
		return Status{}, err
	}
	g.raftMu.Lock()
	st := g.rn.Status()
	g.raftMu.Unlock()
	s := Status{
		Group:    id,
		Leader:   g.nodeOf(st.Lead),
		Term:     st.GetTerm(),
		Commit:   st.GetCommit(),
		Applied:  g.storage.appliedState().Index,
		IsLeader: st.RaftState == raft.StateLeader,

		LeaderChanges: g.leaderChanges.Load(),
	}
	for v := range st.Config.Voters.IDs() {
		s.Voters = append(s.Voters, g.nodeOf(v))
		if pr, ok := st.Progress[v]; s.IsLeader && ok && (pr.RecentActive || v == st.ID) {
			s.ActiveVoters++
		}
	}
	for l := range st.Config.Learners {
		s.Learners = append(s.Learners, g.nodeOf(l))
	}
	for l := range st.Config.LearnersNext {
		s.Learners = append(s.Learners, g.nodeOf(l))
	}
	s.Joint = len(st.Config.Voters[1]) > 0
	if s.IsLeader {
		s.Match = make(map[NodeID]uint64, len(st.Progress))
		for id, pr := range st.Progress {
			s.Match[g.nodeOf(id)] = pr.Match
		}
	}
	return s, nil
}

// Leader returns the leader this replica knows of (0: none).
func (h *Host) Leader(id GroupID) (NodeID, error) {
	g, err := h.group(id)
	if err != nil {
		return 0, err
	}
	return g.leaderID(), nil
}

// HandleMessages implements MessageHandler: it steps each message into its
// group, creating an empty replica for an unknown group when a leader talks
// to it and Config.NewReplica allows it. from is the node the stream
// authenticated as; a message is stepped only when its To is the local
// replica and its From is from's replica in the group (else it is dropped
// and counted by reason).
func (h *Host) HandleMessages(from NodeID, msgs []GroupMessage) {
	for _, m := range msgs {
		g, reason, err := h.groupForMessage(from, m.Group, m.Message)
		if err != nil || g == nil {
			h.metrics.dropped(reason)
			if err != nil {
				h.log.Debug("raft message dropped", "group", m.Group, "from", from, "err", err)
			}
			continue
		}
		g.raftMu.Lock()
		err = g.rn.Step(m.Message)
		g.raftMu.Unlock()
		if err != nil {
			g.log.Debug("step failed", "from", from, "type", m.Message.GetType().String(), "err", err)
		}
		h.sched.enqueue(m.Group, flagReady)
	}
}

// groupForMessage returns the group a message from node from may be stepped
// into, or nil and the reason to drop it. A group not hosted here is created
// (Config.NewReplica) as replica m.To when a leader talks to it and the
// group's tombstone allows that replica id.
func (h *Host) groupForMessage(from NodeID, id GroupID, m *raftpb.Message) (*group, string, error) {
	to, sender := ReplicaID(m.GetTo()), ReplicaID(m.GetFrom())
	h.mu.RLock()
	g := h.mu.groups[id]
	h.mu.RUnlock()
	if g != nil {
		gr, reason, err := admit(g, from, to, sender)
		if reason == dropUnknownSender && g.storage.appliedState().Index == 0 && isLeaderMessage(m) {
			// A replica still waiting for its first snapshot knows only
			// the leader that created it; leadership may have moved on
			// since. Learn the new leader's replica (the node is the one
			// the stream authenticated) so the snapshot can come from it.
			h.learnPeer(g, sender, from)
			return admit(g, from, to, sender)
		}
		return gr, reason, err
	}
	if h.closed.Load() {
		return nil, dropNoGroup, nil
	}
	h.mu.Lock()
	ts, err := h.tombstoneLocked(id)
	h.mu.Unlock()
	if err != nil {
		return nil, dropNoGroup, err
	}
	if to < ts {
		return nil, dropTombstoned, nil
	}
	if h.cfg.NewReplica == nil || to == 0 || sender == 0 {
		return nil, dropNoGroup, nil
	}
	if !isLeaderMessage(m) {
		return nil, dropNoGroup, nil
	}
	sm, ok := h.cfg.NewReplica(id, to)
	if !ok {
		return nil, dropNoGroup, nil
	}
	// The new replica knows itself and the leader that talks to it; the
	// rest of the map comes with the descriptor (SetPeers).
	peers := []Peer{{Replica: to, Node: h.cfg.NodeID}, {Replica: sender, Node: from}}
	if err := h.CreateGroup(id, to, peers, sm); err != nil && !errors.Is(err, ErrGroupExists) {
		return nil, dropNoGroup, err
	}
	g, err = h.group(id)
	if err != nil {
		return nil, dropNoGroup, err
	}
	return admit(g, from, to, sender)
}

// isLeaderMessage: only a leader sends these.
func isLeaderMessage(m *raftpb.Message) bool {
	switch m.GetType() {
	case raftpb.MsgApp, raftpb.MsgHeartbeat, raftpb.MsgSnap:
		return true
	}
	return false
}

// learnPeer adds replica r on node n to an uninitialized group's peer map
// (the descriptor its snapshot brings replaces the map).
func (h *Host) learnPeer(g *group, r ReplicaID, n NodeID) {
	old := g.peers.Load()
	peers := make([]Peer, 0, len(old.nodes)+1)
	for rid, nid := range old.nodes {
		if nid != n {
			peers = append(peers, Peer{Replica: rid, Node: nid})
		}
	}
	g.peers.Store(newPeerMap(append(peers, Peer{Replica: r, Node: n})))
}

func admit(g *group, from NodeID, to, sender ReplicaID) (*group, string, error) {
	if reason := checkPeers(g, from, to, sender); reason != "" {
		return nil, reason, nil
	}
	return g, "", nil
}

// checkPeers returns why a message from node from, from replica sender to
// replica to, must not reach g ("" when it may).
func checkPeers(g *group, from NodeID, to, sender ReplicaID) string {
	if to != g.self {
		return dropStaleReplica
	}
	switch n := g.nodeOf(uint64(sender)); {
	case n == 0:
		return dropUnknownSender
	case n != from:
		return dropWrongSender
	}
	return ""
}

// HandleUnreachable implements MessageHandler.
func (h *Host) HandleUnreachable(to NodeID, groups []GroupID) {
	for _, id := range groups {
		_ = h.withRaft(id, func(g *group) error {
			if r := g.replicaOn(to); r != 0 {
				g.rn.ReportUnreachable(uint64(r))
			}
			return nil
		})
	}
}

// storageFailed stops the process: raft state that cannot be persisted must
// not be acted upon (STYLE.md: storage failure stops the process).
func (h *Host) storageFailed(err error) {
	if h.cfg.Knobs != nil && h.cfg.Knobs.OnStorageFailure != nil {
		h.cfg.Knobs.OnStorageFailure(err)
		return
	}
	h.log.Error("raft storage failure; stopping", "err", err)
	os.Exit(2)
}
