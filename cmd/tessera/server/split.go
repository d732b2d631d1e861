package server

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/tesseradb/tessera/proto/tesserapb"
	"github.com/tesseradb/tessera/shard"
)

// SplitConfig configures size-based splits (docs/operations.md, "Splits
// and merges").
type SplitConfig struct {
	// RangeMaxBytes: a range whose data (live versions and history, the
	// engine's estimate of its span) passes it is split by its leader at
	// the key that halves it. 64 MiB (--range-max-bytes), CockroachDB's
	// old default: small enough that a snapshot moves in seconds. 0 turns
	// size-based splits off.
	RangeMaxBytes int64
	// CheckInterval is how often a node's range leaders compare their size
	// with RangeMaxBytes (10 s: a range grows a few MiB at most meanwhile).
	CheckInterval time.Duration
	// Timeout bounds one split: the id allocation, the command's commit
	// and apply (30 s: a few elections of the meta group and the range).
	Timeout time.Duration
	// FrozenRecoverAfter: a range its leader has seen frozen for a merge
	// this long lost its merge's initiator (a crash after the freeze); the
	// leader asks the left neighbour's leader to run the merge again,
	// which subsumes or thaws it (30 s: three times a merge's catch-up
	// wait, so a merge still running is not raced).
	// --range-merge-recover-after.
	FrozenRecoverAfter time.Duration
	// RangeSplitQPS: a range that serves at least this many requests in
	// every second of LoadSplitSustain is split by its leader at a key
	// with about half the load on each side (split_load.go). 2,500/s for
	// 10 s, CockroachDB's load-based splitting. 0 turns it off.
	// --range-split-qps.
	RangeSplitQPS    float64
	LoadSplitSustain time.Duration
}

// DefaultSplitConfig returns the defaults.
func DefaultSplitConfig() SplitConfig {
	return SplitConfig{RangeMaxBytes: 64 << 20, CheckInterval: 10 * time.Second, Timeout: 30 * time.Second, FrozenRecoverAfter: 30 * time.Second,
		RangeSplitQPS: 2500, LoadSplitSustain: 10 * time.Second}
}

// Validate checks the configuration (zero values take the defaults).
func (c SplitConfig) Validate() error {
	if c.RangeMaxBytes < 0 {
		return errors.New("server: --range-max-bytes must not be negative")
	}
	if c.RangeMaxBytes > 0 && c.RangeMaxBytes < 64<<10 {
		return errors.New("server: --range-max-bytes below 64 KiB would split ranges down to single keys")
	}
	if c.RangeSplitQPS < 0 || c.LoadSplitSustain < 0 || c.LoadSplitSustain > time.Minute {
		return errors.New("server: --range-split-qps must not be negative and the load-split window must be within a minute")
	}
	if c.FrozenRecoverAfter < 0 {
		return errors.New("server: --range-merge-recover-after must not be negative")
	}
	if c.CheckInterval < 0 || c.Timeout < 0 {
		return errors.New("server: --range-split-check-interval and the split timeout must not be negative")
	}
	return nil
}

// addRangeSize adds a replica's size and load to its status.
func (s *Server) addRangeSize(rep *shard.Replica, rs *tesserapb.RangeStatus) {
	rs.Qps = rep.Load()
	if st, ok := rep.LastSize(); ok {
		rs.SizeBytes, rs.Keys = uint64(st.Bytes), uint64(st.Keys)
	}
}

// splitLoop measures the ranges this node leads and splits those above
// RangeMaxBytes at their middle key.
type splitLoop struct {
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	metrics *rangeMetrics // nil if they could not be registered
}

func (s *Server) startSplitLoop() {
	cfg := s.cfg.Split
	if cfg.CheckInterval <= 0 {
		cfg.CheckInterval = DefaultSplitConfig().CheckInterval
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultSplitConfig().Timeout
	}
	if cfg.LoadSplitSustain <= 0 {
		cfg.LoadSplitSustain = DefaultSplitConfig().LoadSplitSustain
	}
	if cfg.FrozenRecoverAfter <= 0 {
		cfg.FrozenRecoverAfter = DefaultSplitConfig().FrozenRecoverAfter
	}
	ctx, cancel := context.WithCancel(context.Background())
	l := &splitLoop{cancel: cancel}
	if m, err := newRangeMetrics(s.reg); err != nil {
		s.log.Warn("range size and load metrics not registered", "err", err)
	} else {
		l.metrics = m
	}
	s.splits = l
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		t := time.NewTicker(cfg.CheckInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			s.checkSizes(ctx, cfg, l.metrics)
			s.recoverFrozen(ctx, cfg)
			s.checkLoad(ctx, cfg)
		}
	}()
}

func (l *splitLoop) stop() {
	if l == nil {
		return
	}
	l.cancel()
	l.wg.Wait()
}

// checkSizes measures every range this node leads (for tessctl ranges) and
// splits the ones above maxBytes (0: none) at the key that halves them.
func (s *Server) checkSizes(ctx context.Context, cfg SplitConfig, metrics *rangeMetrics) {
	maxBytes := cfg.RangeMaxBytes
	for _, rep := range s.store.Replicas() {
		if ctx.Err() != nil {
			return
		}
		if !rep.IsLeader() {
			continue
		}
		st, err := rep.MeasureSize(ctx)
		if err != nil {
			if ctx.Err() == nil {
				s.log.Warn("could not measure a range", "err", err)
			}
			continue
		}
		metrics.observe(st.Bytes, rep.Load())
		if maxBytes <= 0 || st.Bytes <= maxBytes || st.MidKey == nil {
			continue
		}
		id := rep.Descriptor().GetRangeId()
		sctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
		res, err := s.router.Split(sctx, id, st.MidKey, shard.TriggerSize)
		cancel()
		if err != nil {
			s.log.Warn("size-based split failed", "range", id, "bytes", st.Bytes, "err", err)
			continue
		}
		s.log.Info("split a range by size", "range", id, "bytes", st.Bytes, "keys", st.Keys, "right", res.Right.GetRangeId())
	}
}
