package server

import (
	"context"
	"time"

	"github.com/tesseradb/tessera/internal/backoff"
	"github.com/tesseradb/tessera/proto/tesserapb"
	"github.com/tesseradb/tessera/router"
)

// startDirectory fills the router's range cache from the range directory
// (the bootstrap layout serves until the meta group answers) and runs the
// directory reconciliation: this node reports the descriptors of the
// ranges it leads (router/directory_reconcile.go). Both stop with ctx.
func (s *Server) startDirectory(ctx context.Context, l *maintenanceLoops) {
	cfg := s.cfg.DirectoryReconcile
	if cfg == (router.ReconcileConfig{}) {
		cfg = router.DefaultReconcileConfig()
	}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		bo := backoff.New(backoff.Config{Min: 50 * time.Millisecond, Max: 2 * time.Second})
		for {
			rctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
			err := s.router.Cache().Refresh(rctx)
			cancel()
			if err == nil {
				break
			}
			s.log.Debug("fill range cache from the directory", "err", err)
			if bo.Wait(ctx) != nil {
				return
			}
		}
		s.router.RunReconcile(ctx, cfg, s.ledDescriptors)
	}()
}

// ledDescriptors lists the descriptors of the ranges this node leads.
func (s *Server) ledDescriptors() []*tesserapb.RangeDescriptor {
	var out []*tesserapb.RangeDescriptor
	for _, rep := range s.replicaList() {
		if st := rep.Status(); st.IsLeader {
			out = append(out, st.Descriptor)
		}
	}
	return out
}

// Router returns the node's router (its range cache and directory client).
func (s *Server) Router() *router.Router { return s.router }
