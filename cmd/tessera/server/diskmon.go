package server

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/tesseradb/tessera/router"
)

// Defaults of the disk monitor.
const (
	// DefaultQuotaFreeBytes: below 256 MiB free in the data directory's
	// file system the node raises NOSPACE, leaving room for the raft log,
	// Pebble's flushes and compactions and the deletions that free space.
	DefaultQuotaFreeBytes = 256 << 20
	// diskCheckInterval: statfs is cheap; once a second catches a disk
	// filling at hundreds of MiB/s before the margin is gone.
	diskCheckInterval = time.Second
)

// diskUsage is what the monitor measures.
type diskUsage struct {
	free int64 // bytes available to the process in the data dir's file system
	size int64 // bytes used by the data dir
}

// diskFull decides whether a node must raise NOSPACE: free space below the
// margin (quotaFree > 0), or the data beyond etcd's --quota-backend-bytes
// (quotaBackend > 0).
func diskFull(u diskUsage, quotaFree, quotaBackend int64) (bool, string) {
	switch {
	case quotaFree > 0 && u.free < quotaFree:
		return true, fmt.Sprintf("%d bytes free, below --quota-free-bytes %d", u.free, quotaFree)
	case quotaBackend > 0 && u.size > quotaBackend:
		return true, fmt.Sprintf("data dir of %d bytes, above --quota-backend-bytes %d", u.size, quotaBackend)
	}
	return false, ""
}

// diskMonitor measures the data directory every interval and raises this
// member's NOSPACE alarm (through the meta group) when the disk is full.
// It never disarms: as in etcd, an operator does (etcdctl alarm disarm),
// and the monitor raises the alarm again if the disk is still full.
type diskMonitor struct {
	dir          string
	member       uint64
	quotaFree    int64
	quotaBackend int64
	interval     time.Duration
	maint        *router.Maintenance
	log          *slog.Logger

	freeBytes prometheus.Gauge
	sizeBytes prometheus.Gauge
	alarms    prometheus.Gauge

	ctx    context.Context // cancelled by close
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func newDiskMonitor(dir string, member uint64, quotaFree, quotaBackend int64, maint *router.Maintenance, reg prometheus.Registerer, log *slog.Logger) *diskMonitor {
	m := &diskMonitor{
		dir: dir, member: member, quotaFree: quotaFree, quotaBackend: quotaBackend,
		interval: diskCheckInterval, maint: maint, log: log,
		freeBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tessera_disk_free_bytes", Help: "Bytes available to the node in the file system of its data directory (statfs), measured every second.",
		}),
		sizeBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tessera_disk_data_dir_bytes", Help: "Bytes of the regular files under the node's data directory (Pebble engine, raft snapshots), measured every second.",
		}),
		alarms: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tessera_alarms", Help: "Active alarms in the cluster (etcdctl alarm list), as this node enforces them.",
		}),
	}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	reg.MustRegister(m.freeBytes, m.sizeBytes, m.alarms)
	return m
}

func (m *diskMonitor) start() {
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		t := time.NewTicker(m.interval)
		defer t.Stop()
		for {
			m.check()
			select {
			case <-m.ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
}

func (m *diskMonitor) close() {
	m.cancel()
	m.wg.Wait()
}

// check measures once and raises the alarm if needed.
func (m *diskMonitor) check() {
	ctx, cancel := context.WithTimeout(m.ctx, 5*m.interval)
	defer cancel()
	if err := m.maint.RefreshAlarms(ctx); err != nil {
		m.log.Debug("refresh alarms", "err", err)
	}
	u, err := measure(m.dir, true)
	if err != nil {
		m.log.Error("disk monitor", "dir", m.dir, "err", err)
		return
	}
	m.freeBytes.Set(float64(u.free))
	m.sizeBytes.Set(float64(u.size))
	resp, err := m.maint.Alarm(ctx, &pb.AlarmRequest{Action: pb.AlarmRequest_GET})
	if err == nil {
		m.alarms.Set(float64(len(resp.GetAlarms())))
	}
	full, why := diskFull(u, m.quotaFree, m.quotaBackend)
	if !full {
		return
	}
	if err == nil {
		for _, a := range resp.GetAlarms() {
			if a.GetMemberID() == m.member && a.GetAlarm() == pb.AlarmType_NOSPACE {
				return
			}
		}
	}
	m.log.Warn("disk full: raising NOSPACE", "dir", m.dir, "why", why)
	if _, err := m.maint.Alarm(ctx, &pb.AlarmRequest{Action: pb.AlarmRequest_ACTIVATE, MemberID: m.member, Alarm: pb.AlarmType_NOSPACE}); err != nil {
		m.log.Error("raise NOSPACE alarm", "err", err)
	}
}

// measure statfs's the data dir, and walks it for its size when asked
// (the walk reads only directory entries: a data dir holds a few hundred
// files).
func measure(dir string, withSize bool) (diskUsage, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return diskUsage{}, fmt.Errorf("server: statfs %s: %w", dir, err)
	}
	u := diskUsage{free: int64(st.Bavail) * int64(st.Bsize)}
	if withSize {
		size, err := dirSize(dir)
		if err != nil {
			return u, err
		}
		u.size = size
	}
	return u, nil
}

// dirSize sums the sizes of the regular files under dir. Files that vanish
// during the walk (Pebble deletes obsolete ones) are skipped.
func dirSize(dir string) (int64, error) {
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.Type().IsRegular() {
			if info, err := d.Info(); err == nil {
				n += info.Size()
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("server: size of %s: %w", dir, err)
	}
	return n, nil
}

// startDiskMonitor starts the node's disk monitor (after serve). It runs
// even with both quotas off: it also refreshes the alarms a node without a
// meta replica enforces.
func (s *Server) startDiskMonitor() {
	s.diskMon = newDiskMonitor(s.cfg.DataDir, uint64(s.self), s.cfg.QuotaFreeBytes, s.cfg.QuotaBackendBytes, s.maint, s.reg, s.log)
	s.diskMon.start()
}

// dataDirSize is the storage size etcdctl endpoint status shows.
func (s *Server) dataDirSize() int64 {
	n, err := dirSize(s.cfg.DataDir)
	if err != nil {
		s.log.Debug("data dir size", "err", err)
	}
	return n
}
