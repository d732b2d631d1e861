package raftgroup

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/tesseradb/tessera/engine"
)

// Config configures a Host.
type Config struct {
	// NodeID is this node's id. Raft peer ids are ReplicaIDs; each group's
	// peer map says which node holds which replica.
	NodeID NodeID
	// Engine is the node's storage engine, shared by all groups.
	Engine *engine.Engine
	// SnapshotDir holds snapshots being received before they are ingested.
	SnapshotDir string
	// SnapshotRate bounds the bytes per second of all snapshots this host
	// sends together (32 MiB/s, --snapshot-rate): a replica move's
	// snapshot leaves disk and network to foreground writes.
	SnapshotRate int64

	// TickInterval is the period of the one ticker that drives all groups.
	// 100 ms as etcd's default heartbeat interval.
	TickInterval time.Duration
	// ElectionTicks is the election timeout in ticks (10: 1 s, etcd's).
	ElectionTicks int
	// HeartbeatTicks is the heartbeat period in ticks (1, as etcd).
	HeartbeatTicks int

	// Workers is the size of the pool that processes groups' Ready rounds.
	// Each round persists every group it holds in one batch with one fsync,
	// so a few workers keep the disk busy without multiplying fsyncs: 4.
	Workers int
	// MaxGroupsPerRound bounds the groups one round processes (1024: large
	// enough to batch everything pending on a busy node, small enough that
	// one round's batch stays well under Pebble's memtable size).
	MaxGroupsPerRound int

	// MaxSizePerMsg bounds the entries in one append message (1 MiB).
	MaxSizePerMsg uint64
	// MaxInflightMsgs bounds append messages in flight per follower (256,
	// etcd's default).
	MaxInflightMsgs int
	// MaxUncommittedEntriesBytes bounds a leader's uncommitted log; beyond
	// it proposals are dropped (64 MiB).
	MaxUncommittedEntriesBytes uint64
	// MaxCommittedBytesPerReady bounds the entries applied in one round per
	// group (16 MiB), so one busy group cannot stall a round.
	MaxCommittedBytesPerReady uint64

	// LogTruncateThreshold: a group truncates its log when it holds more
	// than this many applied entries (10,000, etcd's snapshot-count order).
	LogTruncateThreshold uint64
	// LogKeepEntries: entries kept below the applied index when truncating,
	// so that slightly slow followers catch up from the log (5,000, etcd's
	// default catch-up entries).
	LogKeepEntries uint64
	// EntryCacheSize is the number of recent entries kept in memory per
	// group (256): enough to build appends and apply without reading the
	// engine in the steady state, small enough for thousands of groups.
	EntryCacheSize int

	// DisableProposalForwarding makes followers refuse proposals instead of
	// forwarding them; Tessera's shards assign revisions on the leader and
	// must propose there (true).
	DisableProposalForwarding bool

	// NewReplica, if set, is called when a leader's message arrives for a
	// group this host does not have (a replica being added by a
	// configuration change), with the replica id the message is addressed
	// to (never below the group's tombstone); it returns the state machine
	// for the new, empty replica, or false to ignore the message.
	NewReplica func(GroupID, ReplicaID) (StateMachine, bool)

	// Transport configures the peer transport (its Handler is the Host).
	Transport TransportConfig

	// Registerer receives the metrics; nil registers nothing.
	Registerer prometheus.Registerer
	// Logger is the host's logger; nil discards.
	Logger *slog.Logger
	// Knobs are test hooks.
	Knobs *TestingKnobs
}

// TestingKnobs are hooks for tests; nil in production.
type TestingKnobs struct {
	// OnStorageFailure replaces the default reaction to a failed write of
	// raft state (which is to stop the process).
	OnStorageFailure func(error)
}

// DefaultConfig returns a Config with the defaults documented on each field.
func DefaultConfig() Config {
	return Config{
		TickInterval:               100 * time.Millisecond,
		ElectionTicks:              10,
		HeartbeatTicks:             1,
		Workers:                    4,
		MaxGroupsPerRound:          1024,
		MaxSizePerMsg:              1 << 20,
		MaxInflightMsgs:            256,
		MaxUncommittedEntriesBytes: 64 << 20,
		MaxCommittedBytesPerReady:  16 << 20,
		LogTruncateThreshold:       10000,
		LogKeepEntries:             5000,
		EntryCacheSize:             256,
		DisableProposalForwarding:  true,
		Transport:                  DefaultTransportConfig(),
		SnapshotRate:               32 << 20,
	}
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	switch {
	case c.NodeID == 0:
		return errors.New("raftgroup: Config.NodeID is 0")
	case c.Engine == nil:
		return errors.New("raftgroup: Config.Engine is nil")
	case c.SnapshotDir == "":
		return errors.New("raftgroup: Config.SnapshotDir is empty")
	case c.TickInterval <= 0:
		return fmt.Errorf("raftgroup: TickInterval %v must be positive", c.TickInterval)
	case c.HeartbeatTicks <= 0 || c.ElectionTicks <= c.HeartbeatTicks:
		return fmt.Errorf("raftgroup: ElectionTicks (%d) must exceed HeartbeatTicks (%d) > 0", c.ElectionTicks, c.HeartbeatTicks)
	case c.Workers <= 0 || c.MaxGroupsPerRound <= 0:
		return errors.New("raftgroup: Workers and MaxGroupsPerRound must be positive")
	case c.LogKeepEntries >= c.LogTruncateThreshold:
		return fmt.Errorf("raftgroup: LogKeepEntries (%d) must be below LogTruncateThreshold (%d)", c.LogKeepEntries, c.LogTruncateThreshold)
	case c.EntryCacheSize <= 0:
		return errors.New("raftgroup: EntryCacheSize must be positive")
	case c.SnapshotRate <= 0:
		return fmt.Errorf("raftgroup: SnapshotRate %d bytes/s must be positive", c.SnapshotRate)
	}
	return nil
}
