package router

import "context"

// maintenanceExtra holds the configuration of the Maintenance RPCs beyond
// Alarm and Status (snapshot, defragment, hash, move-leader).
type maintenanceExtra struct {
	snapshot SnapshotConfig
	// defrag compacts this node's storage (maintenance_defrag.go).
	defrag func(context.Context) error
}

// SetSnapshotConfig sets how Snapshot reads and sends a backup (zero
// value: DefaultSnapshotConfig).
func (m *Maintenance) SetSnapshotConfig(cfg SnapshotConfig) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	m.snapshot = cfg
	return nil
}

// SetDefragment sets what Defragment runs on this node (nil: Unimplemented).
func (m *Maintenance) SetDefragment(fn func(context.Context) error) { m.defrag = fn }
