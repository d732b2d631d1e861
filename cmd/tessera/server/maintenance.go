package server

import (
	"context"
	"sync"

	"github.com/tesseradb/tessera/router"
)

// maintenanceLoops are the node's periodic maintenance tasks: the
// corruption check (--corrupt-check-time) and auto-compaction
// (--auto-compaction-*). Both start after serve and stop with Close.
type maintenanceLoops struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func (s *Server) startMaintenanceLoops() {
	ctx, cancel := context.WithCancel(context.Background())
	l := &maintenanceLoops{cancel: cancel}
	s.loops = l
	if d := s.cfg.CorruptCheckTime; d > 0 {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			s.maint.RunCorruptionCheck(ctx, d)
		}()
	}
	if s.autoCompact != (router.AutoCompaction{}) {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			s.router.RunAutoCompaction(ctx, s.autoCompact)
		}()
	}
	s.startDirectory(ctx, l)
}

func (l *maintenanceLoops) stop() {
	if l == nil {
		return
	}
	l.cancel()
	l.wg.Wait()
}

// configureMaintenance wires the client port's Maintenance RPCs beyond
// alarms and status: snapshot, defragment.
func (s *Server) configureMaintenance() {
	scfg := router.DefaultSnapshotConfig()
	scfg.NodeName = s.cfg.Name
	if err := s.maint.SetSnapshotConfig(scfg); err != nil {
		s.log.Error("snapshot config", "err", err)
	}
	s.defragProgress = newDefragProgress(s.reg)
	s.maint.SetDefragment(s.defragment)
}
