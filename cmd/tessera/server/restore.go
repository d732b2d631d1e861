package server

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"go.etcd.io/etcd/api/v3/mvccpb"

	"github.com/tesseradb/tessera/engine"
	"github.com/tesseradb/tessera/placement"
	"github.com/tesseradb/tessera/proto/tesserapb"
	"github.com/tesseradb/tessera/raftgroup"
	"github.com/tesseradb/tessera/router"
	"github.com/tesseradb/tessera/shard"
)

// RestoreConfig is what `tessctl snapshot restore` takes; the flags are
// etcdutl snapshot restore's.
type RestoreConfig struct {
	// SnapshotPath is the backup file (etcdctl/tessctl snapshot save).
	SnapshotPath string
	// Name, InitialCluster and InitialAdvertisePeerURLs describe the new
	// member and cluster exactly as the members will be started with.
	Name                     string
	InitialCluster           string
	InitialAdvertisePeerURLs []string
	// DataDir is the member's new data dir (default NAME.tessera); it must
	// not exist.
	DataDir string
	// SkipHashCheck skips the SHA-256 check (etcdutl --skip-hash-check);
	// the file's structure is still checked.
	SkipHashCheck bool
	Logger        *slog.Logger
}

// RestoreResult describes what a restore wrote.
type RestoreResult struct {
	Info *router.BackupInfo
	// NodeID is the member's id in the new cluster; Ranges the data ranges
	// it holds a replica of, Keys the keys written.
	NodeID raftgroup.NodeID
	Ranges int
	Keys   int
}

// Restore builds a member's data dir for a new cluster from a backup. It
// reads the whole file once to check it (checksum, structure, counts)
// before writing anything, then writes the member's ranges into a
// temporary directory next to DataDir and renames it into place, so an
// interrupted or failed restore leaves no data dir behind. The new
// cluster has the backup's range layout (its split keys) on the nodes of
// InitialCluster, every key as at the backup's revision with its revisions
// and version, the backup's revision as compaction revision, and a TSO
// that starts above it.
func Restore(cfg RestoreConfig) (*RestoreResult, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.DataDir == "" {
		cfg.DataDir = cfg.Name + ".tessera"
	}
	if cfg.Name == "" {
		return nil, errors.New("server: restore: --name is empty")
	}
	nodeCfg := Config{Name: cfg.Name, InitialCluster: cfg.InitialCluster, InitialAdvertisePeerURLs: cfg.InitialAdvertisePeerURLs}
	nodes, self, err := nodeCfg.initialCluster()
	if err != nil {
		return nil, fmt.Errorf("server: restore: %w", err)
	}
	if _, err := os.Stat(cfg.DataDir); err == nil {
		return nil, fmt.Errorf("server: restore: data-dir %q exists", cfg.DataDir)
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("server: restore: %w", err)
	}

	// Pass 1: check the whole file; nothing is written before it passed.
	info, err := readBackupFile(cfg.SnapshotPath, cfg.SkipHashCheck, nil)
	if err != nil {
		return nil, err
	}
	h := info.Header
	var split [][]byte
	for _, d := range h.GetRanges()[1:] {
		split = append(split, d.GetStartKey())
	}
	layout, err := placement.InitialLayout(nodes, split)
	if err != nil {
		return nil, fmt.Errorf("server: restore: layout: %w", err)
	}
	if len(layout.GetRanges()) != len(h.GetRanges()) {
		return nil, fmt.Errorf("server: restore: the backup's %d ranges give a layout of %d", len(h.GetRanges()), len(layout.GetRanges()))
	}
	// Backup range id -> the new cluster's descriptor of the same span.
	newDesc := map[uint64]*tesserapb.RangeDescriptor{}
	for i, d := range h.GetRanges() {
		nd := layout.GetRanges()[i]
		if !bytes.Equal(nd.GetStartKey(), d.GetStartKey()) || !bytes.Equal(nd.GetEndKey(), d.GetEndKey()) {
			return nil, fmt.Errorf("server: restore: range %d [%q, %q) has no equal range in the new layout", d.GetRangeId(), d.GetStartKey(), d.GetEndKey())
		}
		newDesc[d.GetRangeId()] = nd
	}

	// Pass 2: write into a temporary dir, then rename it into place.
	parent := filepath.Dir(filepath.Clean(cfg.DataDir))
	if err := os.MkdirAll(parent, 0o700); err != nil {
		return nil, fmt.Errorf("server: restore: %w", err)
	}
	tmp, err := os.MkdirTemp(parent, filepath.Base(cfg.DataDir)+".restoring-")
	if err != nil {
		return nil, fmt.Errorf("server: restore: %w", err)
	}
	done := false
	defer func() {
		if !done {
			_ = os.RemoveAll(tmp)
		}
	}()
	res := &RestoreResult{Info: info, NodeID: raftgroup.NodeID(self)}
	if err := writeRestoredStore(cfg, tmp, layout, newDesc, res); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, cfg.DataDir); err != nil {
		return nil, fmt.Errorf("server: restore: %w", err)
	}
	done = true
	if d, err := os.Open(parent); err == nil {
		_ = d.Sync()
		d.Close()
	}
	cfg.Logger.Info("restored", "data_dir", cfg.DataDir, "revision", h.GetRevision(), "ranges", res.Ranges, "keys", res.Keys)
	return res, nil
}

// writeRestoredStore writes the member's engine in dir.
func writeRestoredStore(cfg RestoreConfig, dir string, layout *tesserapb.ClusterBootstrap, newDesc map[uint64]*tesserapb.RangeDescriptor, res *RestoreResult) (err error) {
	ecfg := engine.DefaultConfig(filepath.Join(dir, "engine"))
	ecfg.Logger = cfg.Logger
	eng, err := engine.Open(ecfg)
	if err != nil {
		return fmt.Errorf("server: restore: %w", err)
	}
	defer func() {
		if cerr := eng.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("server: restore: close engine: %w", cerr)
		}
	}()
	rev := engine.Revision(res.Info.Header.GetRevision())
	writers := map[uint64]*shard.RestoreWriter{}
	for _, d := range layout.GetRanges() {
		if hasReplica(d, res.NodeID) {
			writers[d.GetRangeId()] = shard.NewRestoreWriter(eng, d)
		}
	}
	defer func() {
		for _, w := range writers {
			w.Close()
		}
	}()
	// The file is read again; its checksum is compared again at the end,
	// so a file changed since the first pass fails the restore.
	if _, err := readBackupFile(cfg.SnapshotPath, cfg.SkipHashCheck, func(rangeID uint64, kv *mvccpb.KeyValue) error {
		if w := writers[newDesc[rangeID].GetRangeId()]; w != nil {
			return w.Add(kv)
		}
		return nil
	}); err != nil {
		return err
	}
	for _, w := range writers {
		if err := w.Finish(rev); err != nil {
			return err
		}
		res.Keys += w.Keys()
	}
	res.Ranges = len(writers)
	if err := bootstrapStore(eng, layout, res.NodeID); err != nil {
		return fmt.Errorf("server: restore: %w", err)
	}
	if hasReplica(layout.GetMeta(), res.NodeID) {
		if err := placement.SetTSOFloor(eng, rev); err != nil {
			return fmt.Errorf("server: restore: %w", err)
		}
	}
	return nil
}

// readBackupFile reads and checks a backup file (router.ReadBackup).
func readBackupFile(path string, skipHash bool, fn func(uint64, *mvccpb.KeyValue) error) (*router.BackupInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("server: backup: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("server: backup: %w", err)
	}
	info, err := router.ReadBackup(io.Reader(f), st.Size(), skipHash, fn)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return info, nil
}
