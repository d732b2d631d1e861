package main

import (
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cheggaaa/pb/v3"

	"github.com/tesseradb/tessera/cmd/tessbench/internal/bench"
)

// progressBar shows a run's progress on a terminal: requests done out of
// --total, or seconds out of --duration. Time is counted in milliseconds. It starts with the first completed
// request, so a preload does not eat into the time shown. A nil bar does
// nothing.
type progressBar struct {
	bar      *pb.ProgressBar
	done     atomic.Int64
	byTime   bool
	duration time.Duration
	start    sync.Once
	stop     chan struct{}
	wg       sync.WaitGroup
}

const progressRefresh = 200 * time.Millisecond

func newProgressBar(w io.Writer, run bench.RunConfig) *progressBar {
	p := &progressBar{stop: make(chan struct{})}
	if run.Total > 0 && (run.Duration == 0 || (run.Rate > 0 && float64(run.Total)/run.Rate < run.Duration.Seconds())) {
		p.bar = pb.New64(run.Total)
		p.bar.SetTemplateString(`{{counters . }} {{bar . }} {{percent . }} {{etime . }}`)
	} else {
		p.byTime, p.duration = true, run.Duration
		p.bar = pb.New64(run.Duration.Milliseconds())
		p.bar.SetTemplateString(`{{bar . }} {{etime . }}/` + run.Duration.String() + ` {{string . "ops"}}`)
	}
	p.bar.SetWriter(w)
	p.bar.SetRefreshRate(progressRefresh)
	return p
}

// complete counts one finished request; it is RunConfig.OnComplete.
func (p *progressBar) complete() {
	p.start.Do(p.begin)
	n := p.done.Add(1)
	if !p.byTime {
		p.bar.SetCurrent(n)
	}
}

func (p *progressBar) begin() {
	p.bar.Start()
	if !p.byTime {
		return
	}
	t0 := time.Now()
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		tick := time.NewTicker(progressRefresh)
		defer tick.Stop()
		for {
			select {
			case <-p.stop:
				return
			case <-tick.C:
				p.bar.SetCurrent(min(time.Since(t0).Milliseconds(), p.bar.Total()))
				p.bar.Set("ops", fmt.Sprintf("%d requests", p.done.Load()))
			}
		}
	}()
}

// finish stops and removes the bar.
func (p *progressBar) finish() {
	if p == nil {
		return
	}
	close(p.stop)
	p.wg.Wait()
	if p.bar.IsStarted() {
		p.bar.Finish()
	}
}
