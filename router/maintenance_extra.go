package router

// maintenanceExtra holds the configuration of the Maintenance RPCs beyond
// Alarm and Status (snapshot, defragment, hash, move-leader).
type maintenanceExtra struct {
	snapshot SnapshotConfig
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
