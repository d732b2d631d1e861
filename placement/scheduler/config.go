package scheduler

import (
	"errors"
	"fmt"
)

// Limits bound how fast operations run; Schedule respects them when it
// plans and the Executor when it runs.
type Limits struct {
	// MaxMovesPerNode bounds the operations that send a snapshot (add-voter,
	// move) touching one node at once, as sender of the replica or receiver.
	// 4: one snapshot streams while the next ones do their conf changes, and
	// a node never carries more than four moves of foreground cost.
	MaxMovesPerNode int
	// SnapshotRate is the snapshot bandwidth of one node in bytes/s, sending
	// and receiving each (--snapshot-rate). 32 MiB/s, as the issue sets it:
	// a tenth of a modest SSD, so foreground writes keep their p99.
	SnapshotRate int64
}

// DefaultLimits returns the limits described on the fields.
func DefaultLimits() Limits {
	return Limits{MaxMovesPerNode: 4, SnapshotRate: 32 << 20}
}

// Validate reports a limit that cannot work.
func (l Limits) Validate() error {
	if l.MaxMovesPerNode < 1 {
		return fmt.Errorf("scheduler: max moves per node %d: must be at least 1", l.MaxMovesPerNode)
	}
	if l.SnapshotRate < 1 {
		return fmt.Errorf("scheduler: snapshot rate %d bytes/s: must be positive", l.SnapshotRate)
	}
	return nil
}

// Config tunes Schedule.
type Config struct {
	// Replicas is the number of voters of a data range: 3, survives one
	// node's loss (DESIGN.md).
	Replicas int
	// MetaReplicas is the number of voters of the meta range once that many
	// nodes are live (5: survives two losses, as DESIGN.md asks); below it
	// the meta range has Replicas voters.
	MetaReplicas int
	// Tolerance is how far from the mean (as a fraction of it) a node's
	// replica count, bytes and leaders may be before balancing acts: 0.10,
	// the issue's ±10%.
	Tolerance float64
	// MinSlack is the least distance from the mean, in replicas or leaders,
	// that counts as balanced (bytes: that many mean range sizes). 1: with
	// few ranges ±10% is less than one, and no integer count satisfies it.
	MinSlack float64
	// MaxOpsPerRound bounds the operations one call returns. 128: enough to
	// keep 30 nodes' move limits busy, small enough that a round's plan is
	// still right when it runs.
	MaxOpsPerRound int
	// HotQPSRatio makes a range hot when its QPS is at least this multiple
	// of the mean range QPS (4: clearly above the crowd).
	HotQPSRatio float64
	// HotMinQPS is the least QPS of a hot range (100: a range doing less is
	// not worth a leader transfer).
	HotMinQPS float64
	// MaxHotRanges bounds the hot ranges considered, hottest first (1000).
	MaxHotRanges int
	// MaxPlannedPerNode bounds the snapshot-sending operations touching one
	// node that Schedule keeps in flight (running or queued in the
	// executor): 16, four times the executor's default MaxMovesPerNode, so
	// that the executor has the node's next moves at hand when running ones
	// end between two rounds, and a plan is never more than a few rounds
	// ahead of the cluster.
	MaxPlannedPerNode int
	// Limits are the executor's limits.
	Limits Limits
}

// DefaultConfig returns the configuration described on the fields.
func DefaultConfig() Config {
	return Config{
		Replicas:          3,
		MetaReplicas:      5,
		Tolerance:         0.10,
		MinSlack:          1,
		MaxOpsPerRound:    128,
		HotQPSRatio:       4,
		HotMinQPS:         100,
		MaxHotRanges:      1000,
		MaxPlannedPerNode: 16,
		Limits:            DefaultLimits(),
	}
}

// Validate reports a configuration that cannot work.
func (c Config) Validate() error {
	var errs []error
	if c.Replicas < 1 {
		errs = append(errs, fmt.Errorf("scheduler: replicas %d: must be at least 1", c.Replicas))
	}
	if c.MetaReplicas < c.Replicas {
		errs = append(errs, fmt.Errorf("scheduler: meta replicas %d: must be at least replicas (%d)", c.MetaReplicas, c.Replicas))
	}
	if c.Tolerance <= 0 || c.Tolerance >= 1 {
		errs = append(errs, fmt.Errorf("scheduler: tolerance %v: must be in (0, 1)", c.Tolerance))
	}
	if c.MinSlack < 0 {
		errs = append(errs, fmt.Errorf("scheduler: min slack %v: must not be negative", c.MinSlack))
	}
	if c.MaxOpsPerRound < 1 {
		errs = append(errs, fmt.Errorf("scheduler: max operations per round %d: must be at least 1", c.MaxOpsPerRound))
	}
	if c.HotQPSRatio < 1 {
		errs = append(errs, fmt.Errorf("scheduler: hot QPS ratio %v: must be at least 1", c.HotQPSRatio))
	}
	if c.HotMinQPS < 0 {
		errs = append(errs, fmt.Errorf("scheduler: hot min QPS %v: must not be negative", c.HotMinQPS))
	}
	if c.MaxHotRanges < 0 {
		errs = append(errs, fmt.Errorf("scheduler: max hot ranges %d: must not be negative", c.MaxHotRanges))
	}
	if c.MaxPlannedPerNode < c.Limits.MaxMovesPerNode {
		errs = append(errs, fmt.Errorf("scheduler: max planned per node %d: must be at least the executor's max moves per node (%d)", c.MaxPlannedPerNode, c.Limits.MaxMovesPerNode))
	}
	errs = append(errs, c.Limits.Validate())
	return errors.Join(errs...)
}
