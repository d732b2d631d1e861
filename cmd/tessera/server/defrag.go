package server

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tesseradb/tessera/engine"
)

// defragment compacts the node's engine in steps: each local range's data
// span in turn, then the key space around the data (raft logs, local and
// system keys). Smaller manual compactions rather than one over the whole
// store, with a pause after each (DefragIdleRatio times as long as the step
// took), so that foreground requests get the disk and CPU back between
// steps; a node with many ranges takes longer to defragment, never longer
// to answer.
func (s *Server) defragment(ctx context.Context) error {
	before := s.eng.DiskUsage()
	all := engine.DataSpan(nil, nil)
	var spans []engine.Span
	for _, rep := range s.store.Replicas() {
		d := rep.Descriptor()
		spans = append(spans, engine.DataSpan(d.GetStartKey(), d.GetEndKey()))
	}
	spans = append(spans,
		engine.Span{Start: engine.WholeSpan.Start, End: all.Start},
		engine.Span{Start: all.End, End: engine.WholeSpan.End})
	p := s.defragProgress
	p.inProgress.Inc()
	defer p.inProgress.Dec()
	p.steps.WithLabelValues("total").Set(float64(len(spans)))
	p.steps.WithLabelValues("done").Set(0)
	for i, sp := range spans {
		start := time.Now()
		if err := s.eng.Compact(ctx, sp); err != nil {
			return fmt.Errorf("server: defragment: %w", err)
		}
		p.steps.WithLabelValues("done").Set(float64(i + 1))
		if pause := time.Duration(float64(time.Since(start)) * s.cfg.DefragIdleRatio); pause > 0 {
			t := time.NewTimer(pause)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			}
		}
	}
	s.log.Info("defragmented", "disk_bytes_before", before, "disk_bytes_after", s.eng.DiskUsage())
	return nil
}

// defragProgress reports a defragmentation as it runs.
type defragProgress struct {
	inProgress prometheus.Gauge
	steps      *prometheus.GaugeVec // state: done, total (of the running or last one)
}

func newDefragProgress(reg prometheus.Registerer) *defragProgress {
	p := &defragProgress{
		inProgress: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tessera_defrag_in_progress",
			Help: "Defragmentations (etcdctl defrag) running on this node.",
		}),
		steps: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tessera_defrag_steps",
			Help: "Compaction steps (one range span each, then the keys around the data) of the running or last defragmentation: done and total.",
		}, []string{"state"}),
	}
	for _, st := range []string{"done", "total"} {
		p.steps.WithLabelValues(st)
	}
	if reg != nil {
		reg.MustRegister(p.inProgress, p.steps)
	}
	return p
}
