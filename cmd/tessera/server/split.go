package server

import (
	"errors"
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
}

// DefaultSplitConfig returns the defaults.
func DefaultSplitConfig() SplitConfig {
	return SplitConfig{RangeMaxBytes: 64 << 20, CheckInterval: 10 * time.Second}
}

// Validate checks the configuration (zero values take the defaults).
func (c SplitConfig) Validate() error {
	if c.RangeMaxBytes < 0 {
		return errors.New("server: --range-max-bytes must not be negative")
	}
	if c.RangeMaxBytes > 0 && c.RangeMaxBytes < 64<<10 {
		return errors.New("server: --range-max-bytes below 64 KiB would split ranges down to single keys")
	}
	if c.CheckInterval < 0 {
		return errors.New("server: split check interval must not be negative")
	}
	return nil
}

// addRangeSize adds a replica's size and load to its status.
func (s *Server) addRangeSize(rep *shard.Replica, rs *tesserapb.RangeStatus) {
	rs.Qps = rep.Load()
}
