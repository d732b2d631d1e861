package raftgroup

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/tesseradb/tessera/engine"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// A replica snapshot on the wire is two framed SST files, each preceded by
// its length (8 bytes, big endian): the group's replicated local keys (which
// include the applied state, so index, term and ConfState travel atomically
// with the data) and the group's data span. Each file starts with a deletion
// of its whole span. The receiver adds a third file it builds itself (its
// unreplicated raft state reset to the snapshot) and ingests the three in one
// atomic ingestion.
const snapshotFiles = 2

// stagedSnapshot is a received snapshot waiting for raft to accept it.
type stagedSnapshot struct {
	dir   string
	files []string
}

func (s stagedSnapshot) remove() { _ = os.RemoveAll(s.dir) }

func (h *Host) sendSnapshotAsync(g *group, m *raftpb.Message) {
	h.goTracked(func() {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() {
			select {
			case <-h.stopper:
				cancel()
			case <-ctx.Done():
			}
		}()
		to := m.GetTo()
		err := h.streamSnapshot(ctx, g, m)
		status := raft.SnapshotFinish
		if err != nil {
			status = raft.SnapshotFailure
			h.metrics.snapshotsFailed.Inc()
			g.log.Warn("snapshot send failed", "to", ReplicaID(to), "node", g.nodeOf(to), "err", err)
		} else {
			h.metrics.snapshotsSent.Inc()
		}
		_ = h.withRaft(g.id, func(g *group) error {
			g.rn.ReportSnapshot(uint64(to), status)
			return nil
		})
	})
}

// streamSnapshot exports the group's replicated state from one engine
// snapshot and streams it. The snapshot's index is the applied index found
// in that engine snapshot, at or above the one raft asked for.
func (h *Host) streamSnapshot(ctx context.Context, g *group, m *raftpb.Message) error {
	snap := h.eng.NewSnapshot()
	defer snap.Close()
	as, err := readAppliedState(snap, g.id)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp(h.cfg.SnapshotDir, fmt.Sprintf("send-%d-", g.id))
	if err != nil {
		return fmt.Errorf("raftgroup: snapshot dir: %w", err)
	}
	defer os.RemoveAll(dir)
	spans := [snapshotFiles]engine.Span{engine.LocalGroupReplicatedSpan(uint64(g.id)), g.sm.DataSpan()}
	readers := make([]io.Reader, 0, 2*snapshotFiles)
	for i, span := range spans {
		p := filepath.Join(dir, fmt.Sprintf("%d.sst", i))
		if _, err := h.eng.ExportSpan(snap, span, p); err != nil {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return fmt.Errorf("raftgroup: snapshot file: %w", err)
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil {
			return fmt.Errorf("raftgroup: snapshot file: %w", err)
		}
		readers = append(readers, bytesReader(binary.BigEndian.AppendUint64(nil, uint64(fi.Size()))), f)
	}
	msg := proto.Clone(m).(*raftpb.Message)
	msg.Snapshot = &raftpb.Snapshot{Metadata: &raftpb.SnapshotMetadata{
		Index:     proto.Uint64(as.Index),
		Term:      proto.Uint64(as.Term),
		ConfState: as.ConfState,
	}}
	node := g.nodeOf(m.GetTo())
	if node == 0 {
		h.metrics.dropped(dropUnknownReplica)
		return fmt.Errorf("raftgroup: %s: snapshot for unknown replica %s", g.id, ReplicaID(m.GetTo()))
	}
	return h.transport.SendSnapshot(ctx, node, SnapshotHeader{Group: g.id, Message: msg}, &limitedReader{ctx: ctx, l: h.snapshotRate, r: io.MultiReader(readers...)})
}

type bytesReaderT struct {
	b []byte
}

func bytesReader(b []byte) io.Reader { return &bytesReaderT{b: b} }

func (r *bytesReaderT) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.b)
	r.b = r.b[n:]
	return n, nil
}

// HandleSnapshot implements MessageHandler: it stages the received files and
// steps the MsgSnap into raft. The files are ingested in the Ready round in
// which raft hands the snapshot back (it may also refuse a stale one; the
// staged files are then dropped when the next snapshot arrives or the host
// restarts).
func (h *Host) HandleSnapshot(ctx context.Context, from NodeID, hd SnapshotHeader, r io.Reader) error {
	m := hd.Message
	if m.GetType() != raftpb.MsgSnap || m.GetSnapshot().GetMetadata().GetIndex() == 0 {
		return errors.New("raftgroup: snapshot header is not a MsgSnap with an index")
	}
	g, reason, err := h.groupForMessage(from, hd.Group, m)
	if err != nil {
		return err
	}
	if g == nil {
		h.metrics.dropped(reason)
		if reason == dropNoGroup {
			return fmt.Errorf("%w: %s", ErrGroupNotFound, hd.Group)
		}
		return fmt.Errorf("raftgroup: %s: snapshot from %s (%s) to %s dropped: %s", hd.Group, ReplicaID(m.GetFrom()), from, ReplicaID(m.GetTo()), reason)
	}
	dir, err := os.MkdirTemp(h.cfg.SnapshotDir, fmt.Sprintf("recv-%d-", hd.Group))
	if err != nil {
		return fmt.Errorf("raftgroup: snapshot dir: %w", err)
	}
	st := stagedSnapshot{dir: dir}
	for i := 0; i < snapshotFiles; i++ {
		p := filepath.Join(dir, fmt.Sprintf("%d.sst", i))
		if err := receiveFrame(r, p); err != nil {
			st.remove()
			return fmt.Errorf("raftgroup: %s: receive snapshot file %d: %w", hd.Group, i, err)
		}
		st.files = append(st.files, p)
	}
	index := m.GetSnapshot().GetMetadata().GetIndex()
	g.mu.Lock()
	for i, old := range g.mu.staged {
		old.remove()
		delete(g.mu.staged, i)
	}
	g.mu.staged[index] = st
	g.mu.Unlock()
	h.metrics.snapshotsReceived.Inc()
	return h.withRaft(hd.Group, func(g *group) error {
		if err := g.rn.Step(m); err != nil {
			return fmt.Errorf("raftgroup: %s: step snapshot: %w", hd.Group, err)
		}
		return nil
	})
}

// maxSnapshotFile bounds one received file (a range is split long before).
const maxSnapshotFile = 64 << 30

func receiveFrame(r io.Reader, path string) error {
	var lb [8]byte
	if _, err := io.ReadFull(r, lb[:]); err != nil {
		return err
	}
	n := binary.BigEndian.Uint64(lb[:])
	if n > maxSnapshotFile {
		return fmt.Errorf("file of %d bytes exceeds the limit", n)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.CopyN(f, r, int64(n)); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// applySnapshot ingests the staged snapshot raft accepted in this Ready,
// together with the replica's reset raft state, atomically.
func (h *Host) applySnapshot(w *readyWork) error {
	g := w.g
	meta := w.rd.Snapshot.GetMetadata()
	index := meta.GetIndex()
	g.mu.Lock()
	st, ok := g.mu.staged[index]
	delete(g.mu.staged, index)
	g.mu.Unlock()
	if !ok {
		return fmt.Errorf("raftgroup: %s: raft accepted snapshot at %d with no staged data", g.id, index)
	}
	defer st.remove()

	hs := w.rd.HardState
	if hs == nil || raft.IsEmptyHardState(hs) {
		hs, _, _ = g.storage.InitialState()
	}
	hs = proto.Clone(hs).(*raftpb.HardState)
	if hs.GetCommit() < index {
		hs.Commit = proto.Uint64(index)
	}
	hsb, err := proto.Marshal(hs)
	if err != nil {
		return err
	}
	unrepl := filepath.Join(st.dir, "unreplicated.sst")
	sw, err := h.eng.NewSSTWriter(unrepl)
	if err != nil {
		return err
	}
	if err := sw.ClearSpan(engine.LocalGroupUnreplicatedSpan(uint64(g.id))); err != nil {
		return err
	}
	// Comparer order within the section: hard state ('h') before the
	// truncated state ('t').
	if err := sw.Set(engine.LocalGroupKey(uint64(g.id), engine.KindHardState), hsb); err != nil {
		return err
	}
	if err := sw.Set(engine.LocalGroupKey(uint64(g.id), engine.KindTruncated), encodeIndexTerm(index, meta.GetTerm())); err != nil {
		return err
	}
	if err := sw.Finish(); err != nil {
		return err
	}
	if err := h.eng.Ingest(context.Background(), append([]string{unrepl}, st.files...)); err != nil {
		return fmt.Errorf("raftgroup: %s: ingest snapshot at %d: %w", g.id, index, err)
	}
	as, err := readAppliedState(h.eng, g.id)
	if err != nil {
		return err
	}
	if as.Index != index {
		return fmt.Errorf("raftgroup: %s: snapshot applied state at %d, raft expected %d", g.id, as.Index, index)
	}
	g.storage.restored(hs, as)
	h.metrics.snapshotsApplied.Inc()
	if err := g.sm.SnapshotApplied(index); err != nil {
		return fmt.Errorf("raftgroup: %s: state machine after snapshot: %w", g.id, err)
	}
	return nil
}
