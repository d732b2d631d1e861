package server

import (
	"os"
	"path/filepath"
	"testing"
)

func TestDiskFull(t *testing.T) {
	for _, tc := range []struct {
		name                    string
		u                       diskUsage
		quotaFree, quotaBackend int64
		want                    bool
	}{
		{"plenty of room", diskUsage{free: 1 << 30, size: 1 << 20}, 256 << 20, 0, false},
		{"free space below the margin", diskUsage{free: 100 << 20}, 256 << 20, 0, true},
		{"margin off", diskUsage{free: 0}, 0, 0, false},
		{"data beyond the backend quota", diskUsage{free: 1 << 30, size: 3 << 30}, 256 << 20, 2 << 30, true},
		{"data within the backend quota", diskUsage{free: 1 << 30, size: 1 << 30}, 256 << 20, 2 << 30, false},
	} {
		if got, why := diskFull(tc.u, tc.quotaFree, tc.quotaBackend); got != tc.want || (got && why == "") {
			t.Errorf("%s: diskFull = %v (%q), want %v", tc.name, got, why, tc.want)
		}
	}
}

func TestMeasure(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "f"), make([]byte, 1000), 0o600); err != nil {
		t.Fatal(err)
	}
	u, err := measure(dir, true)
	if err != nil || u.size != 1000 || u.free <= 0 {
		t.Fatalf("measure = %+v, %v", u, err)
	}
}
