package router

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/version"

	"github.com/tesseradb/tessera/engine"
	"github.com/tesseradb/tessera/proto/tesserapb"
)

// SnapshotConfig tunes Maintenance.Snapshot.
type SnapshotConfig struct {
	// PageBytes is the size a backup aims at for one read of a range
	// (4 MiB: large enough that round trips do not dominate, small enough
	// to stay far below the peer port's 64 MiB message limit).
	PageBytes int
	// FirstPage is the number of keys of the first read of each range,
	// before the average key-value size is known (256).
	FirstPage int64
	// MaxPage bounds the keys of one read (8192).
	MaxPage int64
	// ChunkBytes is the size of one SnapshotResponse blob (32 KiB, etcd's).
	ChunkBytes int
	// Parallel is how many ranges are read at once, ahead of the one
	// being written (4); each keeps up to ReadAhead pages buffered (2), so
	// a backup holds about Parallel*ReadAhead*PageBytes in memory. The
	// file still lists the ranges one after the other, in key order.
	Parallel  int
	ReadAhead int
	// NodeName is written into the header.
	NodeName string
}

// DefaultSnapshotConfig returns the defaults.
func DefaultSnapshotConfig() SnapshotConfig {
	return SnapshotConfig{PageBytes: 4 << 20, FirstPage: 256, MaxPage: 8192, ChunkBytes: 32 << 10, Parallel: 4, ReadAhead: 2}
}

// Validate checks the configuration.
func (c SnapshotConfig) Validate() error {
	if c.PageBytes <= 0 || c.FirstPage <= 0 || c.MaxPage < c.FirstPage || c.ChunkBytes <= 0 || c.Parallel <= 0 || c.ReadAhead <= 0 {
		return fmt.Errorf("router: snapshot config %+v: sizes, Parallel and ReadAhead must be positive and MaxPage >= FirstPage", c)
	}
	return nil
}

// Snapshot implements etcd's Maintenance.Snapshot (etcdctl snapshot save):
// a backup of the whole cluster, every range, at one fresh revision, in
// Tessera's backup format (router/backup.go, docs/snapshot.md) ending with
// the SHA-256 trailer etcdctl checks for. It reads the ranges page by page
// at that revision, as any historical read, so writes go on meanwhile;
// compactions above the revision, asked of any node, wait until it ends.
func (m *Maintenance) Snapshot(_ *pb.SnapshotRequest, stream pb.Maintenance_SnapshotServer) error {
	cfg := m.snapshot
	if cfg.PageBytes == 0 {
		name := cfg.NodeName
		cfg = DefaultSnapshotConfig()
		cfg.NodeName = name
	}
	// A backup goes on under a CORRUPT alarm, as etcd's.
	ctx := context.WithValue(stream.Context(), noCorruptCheckKey{}, true)
	// At etcd's current revision (the latest write): the state a read
	// reports now (current_revision.go).
	// Compactions anywhere wait from before the revision is chosen
	// (compaction_hold.go) until the backup ends.
	setHold, release := m.r.holdCompaction(0)
	defer release()
	rev, _, err := m.r.currentNow(ctx)
	if err != nil {
		return toGRPCError(fmt.Errorf("router: snapshot: revision: %w", err))
	}
	setHold(rev)
	start := time.Now()
	out := &snapshotStream{stream: stream, header: m.r.header(rev), chunk: cfg.ChunkBytes, sent: m.r.metrics.backupBytes}
	bw := NewBackupWriter(out)
	// Every range, with no gap (a split's right half this node has not
	// seen comes from the range directory); a range that splits during
	// the backup is read through its halves (each page is a Range).
	ranges, err := m.r.cache.CoverAll(ctx)
	if err != nil {
		return toGRPCError(fmt.Errorf("router: snapshot: ranges: %w", err))
	}
	err = bw.Header(&tesserapb.SnapshotHeader{
		FormatVersion:   BackupFormatVersion,
		Revision:        int64(rev),
		ClusterId:       m.r.cfg.ClusterID,
		Ranges:          ranges,
		CreatedUnixNano: time.Now().UnixNano(),
		ServerVersion:   version.Version,
		NodeName:        cfg.NodeName,
	})
	if err != nil {
		return toGRPCError(err)
	}
	var keys int
	pm := m.r.metrics
	pm.backupInProgress.Inc()
	defer pm.backupInProgress.Dec()
	pm.backupRanges.WithLabelValues("total").Set(float64(len(ranges)))
	pm.backupRanges.WithLabelValues("done").Set(0)
	err = m.snapshotRanges(ctx, cfg, bw, ranges, rev, func(i, n int) {
		keys += n
		pm.backupRanges.WithLabelValues("done").Set(float64(i + 1))
	})
	if err != nil {
		return toGRPCError(err)
	}
	if err := bw.Close(); err != nil {
		return toGRPCError(err)
	}
	if err := out.flush(); err != nil {
		return err
	}
	m.r.log.Info("snapshot sent", "revision", int64(rev), "ranges", len(ranges), "keys", keys, "bytes", bw.Size(), "took", time.Since(start))
	return nil
}

// readRange reads one range's keys at rev in pages sized to about
// cfg.PageBytes and hands each page to emit, in key order.
func (m *Maintenance) readRange(ctx context.Context, cfg SnapshotConfig, d *tesserapb.RangeDescriptor, rev engine.Revision, emit func([]*mvccpb.KeyValue) error) error {
	key := d.GetStartKey()
	if len(key) == 0 {
		key = []byte{0} // the smallest key etcd accepts
	}
	end := d.GetEndKey()
	if len(end) == 0 {
		end = []byte{0} // from key on
	}
	limit := cfg.FirstPage
	for {
		resp, err := m.r.rangeReq(ctx, &pb.RangeRequest{Key: key, RangeEnd: end, Revision: int64(rev), Limit: limit})
		if err != nil {
			return err
		}
		kvs := resp.GetKvs()
		if len(kvs) > 0 {
			if err := emit(kvs); err != nil {
				return err
			}
			limit = nextPage(cfg, kvs)
		}
		if !resp.GetMore() || len(kvs) == 0 {
			return nil
		}
		last := kvs[len(kvs)-1].GetKey()
		key = append(append(make([]byte, 0, len(last)+1), last...), 0)
	}
}

// nextPage sizes the next read from the average size of the last page.
func nextPage(cfg SnapshotConfig, kvs []*mvccpb.KeyValue) int64 {
	var size int
	for _, kv := range kvs {
		size += len(kv.GetKey()) + len(kv.GetValue()) + 32
	}
	avg := max(size/len(kvs), 1)
	return min(max(int64(cfg.PageBytes/avg), 16), cfg.MaxPage)
}

// snapshotStream cuts the backup into SnapshotResponse blobs.
type snapshotStream struct {
	stream pb.Maintenance_SnapshotServer
	header *pb.ResponseHeader
	chunk  int
	buf    []byte
	// sent counts the bytes streamed (tessera_backup_sent_bytes_total).
	sent prometheus.Counter
}

func (s *snapshotStream) Write(p []byte) (int, error) {
	s.buf = append(s.buf, p...)
	for len(s.buf) >= s.chunk {
		if err := s.send(s.buf[:s.chunk]); err != nil {
			return 0, err
		}
		s.buf = s.buf[s.chunk:]
	}
	return len(p), nil
}

func (s *snapshotStream) flush() error {
	if len(s.buf) == 0 {
		return nil
	}
	err := s.send(s.buf)
	s.buf = nil
	return err
}

func (s *snapshotStream) send(b []byte) error {
	// RemainingBytes is unknown until the end (the backup is streamed as
	// it is read); clients ignore it, etcdctl included.
	resp := &pb.SnapshotResponse{Header: s.header, Blob: append([]byte(nil), b...), Version: version.Version}
	s.header = nil
	if err := s.stream.Send(resp); err != nil {
		return err
	}
	if s.sent != nil {
		s.sent.Add(float64(len(b)))
	}
	return nil
}
