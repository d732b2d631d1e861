package router

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"go.etcd.io/etcd/api/v3/mvccpb"

	"github.com/tesseradb/tessera/proto/tesserapb"
)

func testBackup(t *testing.T) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := NewBackupWriter(&buf)
	ranges := []*tesserapb.RangeDescriptor{
		{RangeId: 2, EndKey: []byte("m")},
		{RangeId: 3, StartKey: []byte("m")},
	}
	if err := w.Header(&tesserapb.SnapshotHeader{FormatVersion: BackupFormatVersion, Revision: 100, Ranges: ranges}); err != nil {
		t.Fatal(err)
	}
	for _, r := range []struct {
		id   uint64
		keys []string
	}{{2, []string{"a", "b", "c"}}, {3, []string{"m", "x"}}} {
		var kvs []*mvccpb.KeyValue
		for i, k := range r.keys {
			kvs = append(kvs, &mvccpb.KeyValue{Key: []byte(k), Value: []byte("v" + k), CreateRevision: int64(10 + i), ModRevision: int64(20 + i), Version: 2})
		}
		if err := w.KVs(r.id, kvs); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if int64(buf.Len()) != w.Size() || buf.Len()%512 != 32 {
		t.Fatalf("size %d (writer says %d): not 512*k+32", buf.Len(), w.Size())
	}
	return buf.Bytes()
}

func TestBackupRoundTrip(t *testing.T) {
	b := testBackup(t)
	var got []string
	info, err := ReadBackup(bytes.NewReader(b), int64(len(b)), false, func(id uint64, kv *mvccpb.KeyValue) error {
		got = append(got, fmt.Sprintf("%d:%s=%s@%d", id, kv.Key, kv.Value, kv.ModRevision))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := "[2:a=va@20 2:b=vb@21 2:c=vc@22 3:m=vm@20 3:x=vx@21]"
	if fmt.Sprint(got) != want || info.Footer.GetKeys() != 5 || info.Header.GetRevision() != 100 || info.KeysPerRange[3] != 2 {
		t.Fatalf("read %v, footer %v, per range %v; want %s", got, info.Footer, info.KeysPerRange, want)
	}
}

// TestBackupRefusesDamage: every truncation and every single flipped byte
// is refused with ErrBackupCorrupt (the checksum, or the structure when the
// checksum is skipped and the damage is structural).
func TestBackupRefusesDamage(t *testing.T) {
	b := testBackup(t)
	for n := 0; n < len(b); n += 7 {
		if _, err := ReadBackup(bytes.NewReader(b[:n]), int64(n), false, nil); !errors.Is(err, ErrBackupCorrupt) {
			t.Fatalf("truncated to %d bytes: %v", n, err)
		}
	}
	for i := range b {
		c := append([]byte(nil), b...)
		c[i] ^= 0x01
		if _, err := ReadBackup(bytes.NewReader(c), int64(len(c)), false, nil); !errors.Is(err, ErrBackupCorrupt) {
			t.Fatalf("byte %d flipped: %v", i, err)
		}
	}
	// Skipping the hash still catches a wrong footer count.
	var buf bytes.Buffer
	w := NewBackupWriter(&buf)
	_ = w.Header(&tesserapb.SnapshotHeader{FormatVersion: BackupFormatVersion, Revision: 5, Ranges: []*tesserapb.RangeDescriptor{{RangeId: 2}}})
	w.footer.Keys = 3 // a footer that claims keys the file lacks
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadBackup(bytes.NewReader(buf.Bytes()), int64(buf.Len()), true, nil); !errors.Is(err, ErrBackupCorrupt) {
		t.Fatalf("wrong footer with the hash check skipped: %v", err)
	}
}
