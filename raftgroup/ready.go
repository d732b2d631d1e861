package raftgroup

import (
	"fmt"
	"time"

	"github.com/tesseradb/tessera/engine"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// readyWork is one group's Ready within a round.
type readyWork struct {
	g  *group
	rd raft.Ready
	// status is captured with the Ready when the soft state changed.
	status raft.BasicStatus
	// isLeader: this replica led the group when the Ready was taken.
	isLeader bool
	// sentEarly: the leader's appends went out before the persist.
	sentEarly bool
	// applied and trunc are what this round's apply batch records.
	applied             appliedState
	appliedAny          bool
	truncIdx, truncTerm uint64
}

func (h *Host) worker() {
	var held []scheduled
	for {
		held = h.sched.next(held[:0])
		if held == nil {
			return
		}
		h.processRound(held)
		h.sched.done(held)
	}
}

// processRound is the Ready loop for a set of groups (raft's doc.go order):
//
//  1. tick and take each group's Ready;
//  2. ingest received snapshots;
//  3. persist every group's entries and HardState in ONE batch, with ONE
//     fsync if any group needs it;
//  4. send all messages, batched per peer node;
//  5. apply committed entries of every group in one batch (the log is
//     durable, so this batch needs no fsync);
//  6. Advance each group and queue it again if it has more to do.
func (h *Host) processRound(held []scheduled) {
	works := make([]*readyWork, 0, len(held))
	for _, s := range held {
		h.mu.RLock()
		g := h.mu.groups[s.id]
		h.mu.RUnlock()
		if g == nil {
			continue
		}
		g.raftMu.Lock()
		if s.flags&flagTick != 0 {
			g.rn.Tick()
		}
		if g.rn.HasReady() {
			w := &readyWork{g: g, rd: g.rn.Ready()}
			w.isLeader = g.isLeader.Load()
			if w.rd.SoftState != nil {
				w.status = g.rn.BasicStatus()
				w.isLeader = w.rd.SoftState.RaftState == raft.StateLeader
				g.isLeader.Store(w.isLeader)
			}
			works = append(works, w)
		}
		g.raftMu.Unlock()
	}
	if len(works) == 0 {
		return
	}

	for _, w := range works {
		if !raft.IsEmptySnap(w.rd.Snapshot) {
			if err := h.applySnapshot(w); err != nil {
				h.storageFailed(err)
				return
			}
		}
	}

	h.sendLeaderAppends(works)

	if err := h.persist(works); err != nil {
		h.storageFailed(err)
		return
	}

	h.send(works)

	for _, w := range works {
		h.observeSoftState(w)
		h.deliverReadStates(w)
	}

	if err := h.apply(works); err != nil {
		h.storageFailed(err)
		return
	}

	var again []GroupID
	for _, w := range works {
		w.g.raftMu.Lock()
		w.g.rn.Advance(w.rd)
		more := w.g.rn.HasReady()
		w.g.raftMu.Unlock()
		if more {
			again = append(again, w.g.id)
		}
	}
	if len(again) > 0 {
		h.sched.enqueueMany(again, flagReady)
	}
}

// persist writes all groups' entries and hard states in one batch.
func (h *Host) persist(works []*readyWork) error {
	b := h.eng.NewWriteBatch()
	defer b.Close()
	sync := false
	entries, groups := 0, 0
	for _, w := range works {
		hs := w.rd.HardState
		if len(w.rd.Entries) == 0 && (hs == nil || raft.IsEmptyHardState(hs)) {
			continue
		}
		groups++
		if err := w.g.storage.stageAppend(b, w.rd.Entries); err != nil {
			return err
		}
		entries += len(w.rd.Entries)
		if hs != nil && !raft.IsEmptyHardState(hs) {
			if err := w.g.storage.stageHardState(b, hs); err != nil {
				return err
			}
		}
		sync = sync || w.rd.MustSync
	}
	if b.Empty() {
		return nil
	}
	start := time.Now()
	if err := b.Commit(sync); err != nil {
		return fmt.Errorf("raftgroup: persist raft state of %d groups: %w", groups, err)
	}
	if sync {
		h.metrics.syncLatency.Observe(time.Since(start).Seconds())
		h.metrics.syncedBatches.Inc()
	}
	h.metrics.entriesPerBatch.Observe(float64(entries))
	h.metrics.groupsPerBatch.Observe(float64(groups))
	for _, w := range works {
		hs := w.rd.HardState
		if hs != nil && raft.IsEmptyHardState(hs) {
			hs = nil
		}
		w.g.storage.appended(w.rd.Entries, hs)
	}
	return nil
}

// sendLeaderAppends sends a leader's appends and heartbeats before its own
// log write, in parallel with it (Raft thesis §10.2.1; etcd does the same):
// a follower acknowledges only what it persisted, so the leader's own write
// is one of the quorum only once it is durable. Only when the Ready changes
// neither term nor vote: those must be durable before any peer hears of them.
func (h *Host) sendLeaderAppends(works []*readyWork) {
	byPeer := make(map[NodeID][]GroupMessage)
	for _, w := range works {
		if !w.isLeader || !raft.IsEmptySnap(w.rd.Snapshot) {
			continue
		}
		if hs := w.rd.HardState; hs != nil && !raft.IsEmptyHardState(hs) {
			prev, _, _ := w.g.storage.InitialState()
			if hs.GetTerm() != prev.GetTerm() || hs.GetVote() != prev.GetVote() {
				continue
			}
		}
		early := true
		for _, m := range w.rd.Messages {
			if t := m.GetType(); t != raftpb.MsgApp && t != raftpb.MsgHeartbeat {
				early = false
				break
			}
		}
		if !early {
			continue
		}
		w.sentEarly = true
		for _, m := range w.rd.Messages {
			h.addressed(byPeer, w.g, m)
		}
	}
	for to, msgs := range byPeer {
		h.transport.Send(to, msgs...)
	}
}

// send hands every message of the round to the transport, one call per peer
// node; snapshots go out on their own streams.
func (h *Host) send(works []*readyWork) {
	byPeer := make(map[NodeID][]GroupMessage)
	for _, w := range works {
		if w.sentEarly {
			continue
		}
		for _, m := range w.rd.Messages {
			if m.GetType() == raftpb.MsgSnap {
				h.sendSnapshotAsync(w.g, m)
				continue
			}
			h.addressed(byPeer, w.g, m)
		}
	}
	for to, msgs := range byPeer {
		h.transport.Send(to, msgs...)
	}
}

// addressed files m under the node holding its To replica; a message for a
// replica the group's peer map does not know is dropped and counted (raft
// resends: heartbeats and appends repeat until the map learns the replica).
func (h *Host) addressed(byPeer map[NodeID][]GroupMessage, g *group, m *raftpb.Message) {
	to := g.nodeOf(m.GetTo())
	if to == 0 {
		h.metrics.dropped(dropUnknownReplica)
		return
	}
	byPeer[to] = append(byPeer[to], GroupMessage{Group: g.id, Message: m})
}

func (h *Host) observeSoftState(w *readyWork) {
	if w.rd.SoftState == nil {
		return
	}
	g := w.g
	lead := w.rd.SoftState.Lead
	isLeader := w.rd.SoftState.RaftState == raft.StateLeader
	g.leader.Store(uint64(g.nodeOf(lead)))
	g.mu.Lock()
	changed := g.mu.lastLead != lead || g.mu.lastTerm != w.status.GetTerm() || g.mu.wasLeader != isLeader
	if g.mu.lastLead != lead && lead != 0 {
		h.metrics.leaderChanges.Inc()
		g.leaderChanges.Add(1)
	}
	g.mu.lastLead, g.mu.lastTerm, g.mu.wasLeader = lead, w.status.GetTerm(), isLeader
	g.mu.Unlock()
	if changed {
		g.sm.LeaderChanged(g.nodeOf(lead), w.status.GetTerm(), isLeader)
	}
}

func (h *Host) deliverReadStates(w *readyWork) {
	if len(w.rd.ReadStates) == 0 {
		return
	}
	w.g.mu.Lock()
	defer w.g.mu.Unlock()
	for _, rs := range w.rd.ReadStates {
		if ch, ok := w.g.mu.readWaiters[string(rs.RequestCtx)]; ok {
			delete(w.g.mu.readWaiters, string(rs.RequestCtx))
			ch <- rs.Index
		}
	}
}

// apply applies the committed entries of every group in one batch.
func (h *Host) apply(works []*readyWork) error {
	var b *engine.Batch
	for _, w := range works {
		ents := w.rd.CommittedEntries
		if len(ents) == 0 {
			continue
		}
		if b == nil {
			b = h.eng.NewBatch()
			defer b.Close()
		}
		as := w.g.storage.appliedState()
		for _, e := range ents {
			switch e.GetType() {
			case raftpb.EntryConfChange, raftpb.EntryConfChangeV2:
				cs, err := h.applyConfChange(w.g, e)
				if err != nil {
					return err
				}
				as.ConfState = cs
			}
		}
		if err := w.g.sm.Apply(b, ents); err != nil {
			return fmt.Errorf("raftgroup: %s: apply entries [%d,%d]: %w", w.g.id, ents[0].GetIndex(), ents[len(ents)-1].GetIndex(), err)
		}
		last := ents[len(ents)-1]
		as.Index, as.Term = last.GetIndex(), last.GetTerm()
		if err := w.g.storage.stageApplied(b, as); err != nil {
			return err
		}
		ti, tt, err := w.g.storage.stageTruncate(b, as.Index, h.cfg.LogTruncateThreshold, h.cfg.LogKeepEntries)
		if err != nil {
			return err
		}
		w.applied, w.appliedAny, w.truncIdx, w.truncTerm = as, true, ti, tt
	}
	if b == nil {
		return nil
	}
	if err := b.Commit(false); err != nil {
		return fmt.Errorf("raftgroup: commit applied entries: %w", err)
	}
	for _, w := range works {
		if !w.appliedAny {
			continue
		}
		w.g.storage.setApplied(w.applied)
		if w.truncIdx > 0 {
			w.g.storage.truncated(w.truncIdx, w.truncTerm)
			h.metrics.logTruncations.Inc()
		}
		w.g.sm.Applied(w.applied.Index)
	}
	return nil
}

func (h *Host) applyConfChange(g *group, e *raftpb.Entry) (*raftpb.ConfState, error) {
	var cc raftpb.ConfChangeI
	if e.GetType() == raftpb.EntryConfChange {
		var c raftpb.ConfChange
		if err := proto.Unmarshal(e.GetData(), &c); err != nil {
			return nil, fmt.Errorf("raftgroup: %s: decode conf change at %d: %w", g.id, e.GetIndex(), err)
		}
		cc = &c
	} else {
		var c raftpb.ConfChangeV2
		if err := proto.Unmarshal(e.GetData(), &c); err != nil {
			return nil, fmt.Errorf("raftgroup: %s: decode conf change at %d: %w", g.id, e.GetIndex(), err)
		}
		cc = &c
	}
	g.raftMu.Lock()
	cs := g.rn.ApplyConfChange(cc)
	g.raftMu.Unlock()
	h.metrics.confChanges.Inc()
	return proto.Clone(cs).(*raftpb.ConfState), nil
}
