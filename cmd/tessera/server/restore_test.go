package server

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.etcd.io/etcd/api/v3/mvccpb"

	"github.com/tesseradb/tessera/engine"
	"github.com/tesseradb/tessera/proto/tesserapb"
	"github.com/tesseradb/tessera/router"
)

// writeTestBackup writes a two-range backup at revision 1000 holding keys
// "a" (range [, m)) and "x" (range [m, )).
func writeTestBackup(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := router.NewBackupWriter(f)
	ranges := []*tesserapb.RangeDescriptor{{RangeId: 2, EndKey: []byte("m")}, {RangeId: 3, StartKey: []byte("m")}}
	if err := w.Header(&tesserapb.SnapshotHeader{FormatVersion: router.BackupFormatVersion, Revision: 1000, Ranges: ranges}); err != nil {
		t.Fatal(err)
	}
	if err := w.KVs(2, []*mvccpb.KeyValue{{Key: []byte("a"), Value: []byte("va"), CreateRevision: 10, ModRevision: 20, Version: 2}}); err != nil {
		t.Fatal(err)
	}
	if err := w.KVs(3, []*mvccpb.KeyValue{{Key: []byte("x"), Value: []byte("vx"), CreateRevision: 30, ModRevision: 30, Version: 1}}); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestRestore: a restore writes the member's data dir (every key at its
// revisions) and refuses an existing data dir and a damaged file, leaving
// nothing behind.
func TestRestore(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "backup.db")
	writeTestBackup(t, file)
	cfg := RestoreConfig{
		SnapshotPath: file, Name: "n1", DataDir: filepath.Join(dir, "n1"),
		InitialCluster: "n1=http://127.0.0.1:1", InitialAdvertisePeerURLs: []string{"http://127.0.0.1:1"},
	}
	res, err := Restore(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.Keys != 2 || res.Ranges != 2 || res.NodeID != 1 {
		t.Fatalf("restore: %+v", res)
	}
	eng, err := engine.Open(engine.DefaultConfig(filepath.Join(cfg.DataDir, "engine")))
	if err != nil {
		t.Fatal(err)
	}
	kv, ok, err := engine.MVCCGet(eng, []byte("a"), 1000)
	if err != nil || !ok || string(kv.Data) != "va" || kv.ModRev != 20 || kv.CreateRev != 10 || kv.Version != 2 {
		t.Errorf("restored a: %+v %v %v", kv, ok, err)
	}
	if _, err := eng.Get(bootstrapKey); err != nil {
		t.Errorf("no bootstrap record: %v", err)
	}
	eng.Close()

	if _, err := Restore(cfg); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Errorf("restore into an existing data dir: %v", err)
	}
	raw, _ := os.ReadFile(file)
	raw[40] ^= 1
	bad := filepath.Join(dir, "bad.db")
	if err := os.WriteFile(bad, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.SnapshotPath, cfg.DataDir = bad, filepath.Join(dir, "n1-bad")
	if _, err := Restore(cfg); err == nil || !strings.Contains(err.Error(), "corrupt") {
		t.Errorf("restore of a damaged file: %v", err)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "n1-bad") {
			t.Errorf("a refused restore left %s", e.Name())
		}
	}
}
