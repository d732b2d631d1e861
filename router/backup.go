package router

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/protobuf/proto"

	"github.com/tesseradb/tessera/proto/tesserapb"
)

// The cluster backup file (docs/snapshot.md):
//
//	"TESSNAP1"                      8 bytes of magic
//	{uvarint length, SnapshotRecord} one header, kvs records, one footer
//	zero bytes                       padding to a multiple of 512 bytes
//	SHA-256 of all bytes before it   32 bytes
//
// The size of a complete file is therefore 512*k + 32, the test etcdctl
// snapshot save applies to what it received (hasChecksum), and the trailer
// is the SHA-256 etcd's own snapshots end with.
const (
	backupMagic = "TESSNAP1"
	// BackupFormatVersion is the version a header announces.
	BackupFormatVersion = 1
	// backupAlign is etcd's: a snapshot with a hash trailer has a size of
	// 512*k + sha256.Size.
	backupAlign = 512
	// maxBackupRecord bounds one record, so a corrupt length cannot make a
	// reader allocate without limit (a writer keeps records near
	// backupRecordTarget).
	maxBackupRecord = 256 << 20
)

// ErrBackupCorrupt is wrapped by every error about a backup file's content.
var ErrBackupCorrupt = errors.New("router: backup file is corrupt or truncated")

// BackupWriter writes a cluster backup file.
type BackupWriter struct {
	w       io.Writer
	sum     hash.Hash
	n       int64
	footer  tesserapb.SnapshotFooter
	scratch []byte
	err     error
}

// NewBackupWriter starts a backup on w.
func NewBackupWriter(w io.Writer) *BackupWriter {
	b := &BackupWriter{w: w, sum: sha256.New()}
	b.write([]byte(backupMagic))
	return b
}

func (b *BackupWriter) write(p []byte) {
	if b.err != nil {
		return
	}
	_, _ = b.sum.Write(p)
	n, err := b.w.Write(p)
	b.n += int64(n)
	if err != nil {
		b.err = fmt.Errorf("router: write backup: %w", err)
	}
}

func (b *BackupWriter) record(rec *tesserapb.SnapshotRecord) error {
	raw, err := proto.Marshal(rec)
	if err != nil {
		return fmt.Errorf("router: encode backup record: %w", err)
	}
	b.scratch = binary.AppendUvarint(b.scratch[:0], uint64(len(raw)))
	b.write(b.scratch)
	b.write(raw)
	b.footer.Records++
	return b.err
}

// Header writes the header; it must come first.
func (b *BackupWriter) Header(h *tesserapb.SnapshotHeader) error {
	return b.record(&tesserapb.SnapshotRecord{Record: &tesserapb.SnapshotRecord_Header{Header: h}})
}

// KVs writes consecutive key-values of a range.
func (b *BackupWriter) KVs(rangeID uint64, kvs []*mvccpb.KeyValue) error {
	rec := &tesserapb.SnapshotKVs{RangeId: rangeID}
	for _, kv := range kvs {
		raw, err := proto.Marshal(kv)
		if err != nil {
			return fmt.Errorf("router: encode backup key: %w", err)
		}
		rec.Kvs = append(rec.Kvs, raw)
		b.footer.Keys++
		b.footer.ValueBytes += uint64(len(kv.Value))
	}
	return b.record(&tesserapb.SnapshotRecord{Record: &tesserapb.SnapshotRecord_Kvs{Kvs: rec}})
}

// Close writes the footer, the padding and the SHA-256 trailer.
func (b *BackupWriter) Close() error {
	footer := &tesserapb.SnapshotFooter{Keys: b.footer.Keys, Records: b.footer.Records + 1, ValueBytes: b.footer.ValueBytes}
	if err := b.record(&tesserapb.SnapshotRecord{Record: &tesserapb.SnapshotRecord_Footer{Footer: footer}}); err != nil {
		return err
	}
	if pad := (backupAlign - b.n%backupAlign) % backupAlign; pad > 0 {
		b.write(make([]byte, pad))
	}
	sum := b.sum.Sum(nil)
	if b.err == nil {
		if _, err := b.w.Write(sum); err != nil {
			b.err = fmt.Errorf("router: write backup: %w", err)
		}
		b.n += int64(len(sum))
	}
	return b.err
}

// Size is the number of bytes written so far.
func (b *BackupWriter) Size() int64 { return b.n }

// BackupInfo describes a backup file that ReadBackup read to the end.
type BackupInfo struct {
	Header *tesserapb.SnapshotHeader
	Footer *tesserapb.SnapshotFooter
	// Size is the file's size; Hash its SHA-256 trailer.
	Size int64
	Hash []byte
	// KeysPerRange counts the keys of each range.
	KeysPerRange map[uint64]uint64
	// HashChecked is false when the caller skipped the checksum.
	HashChecked bool
}

// ReadBackup reads a backup of size bytes from r, checks it through and
// calls fn (if not nil) for every key-value in order. A file that is
// truncated, padded, altered or otherwise malformed gives an error
// wrapping ErrBackupCorrupt; with skipHash the SHA-256 is not compared
// (etcdutl's --skip-hash-check), the structure still is. fn is called
// before the checksum at the end is known: a caller that must not act on
// a corrupt file reads it twice, once with fn nil.
func ReadBackup(r io.Reader, size int64, skipHash bool, fn func(rangeID uint64, kv *mvccpb.KeyValue) error) (*BackupInfo, error) {
	corrupt := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrBackupCorrupt, fmt.Sprintf(format, args...))
	}
	if size < int64(len(backupMagic))+sha256.Size || size%backupAlign != sha256.Size {
		return nil, corrupt("size %d is not 512*k+32 (no SHA-256 trailer: truncated or not a backup)", size)
	}
	body := size - sha256.Size
	sum := sha256.New()
	br := bufio.NewReaderSize(io.TeeReader(io.LimitReader(r, body), sum), 1<<20)
	var pos int64
	readFull := func(p []byte) error {
		n, err := io.ReadFull(br, p)
		pos += int64(n)
		return err
	}
	magic := make([]byte, len(backupMagic))
	if err := readFull(magic); err != nil || string(magic) != backupMagic {
		return nil, corrupt("no %q magic at the start: not a Tessera backup", backupMagic)
	}
	info := &BackupInfo{Size: size, KeysPerRange: map[uint64]uint64{}, HashChecked: !skipHash}
	spans := map[uint64]*tesserapb.RangeDescriptor{}
	var records, keys, valueBytes uint64
	var lastKey []byte
	var buf []byte
	for info.Footer == nil {
		n, err := binary.ReadUvarint(byteCounter{br, &pos})
		if err != nil {
			return nil, corrupt("record %d at byte %d: length: %v", records, pos, err)
		}
		if n > maxBackupRecord || int64(n) > body-pos {
			return nil, corrupt("record %d at byte %d: length %d beyond the file or the %d-byte limit", records, pos, n, maxBackupRecord)
		}
		if cap(buf) < int(n) {
			buf = make([]byte, n)
		}
		buf = buf[:n]
		if err := readFull(buf); err != nil {
			return nil, corrupt("record %d at byte %d: %v", records, pos, err)
		}
		rec := &tesserapb.SnapshotRecord{}
		if err := proto.Unmarshal(buf, rec); err != nil {
			return nil, corrupt("record %d at byte %d: %v", records, pos, err)
		}
		records++
		switch x := rec.GetRecord().(type) {
		case *tesserapb.SnapshotRecord_Header:
			if info.Header != nil {
				return nil, corrupt("a second header (record %d)", records-1)
			}
			h := x.Header
			if h.GetFormatVersion() != BackupFormatVersion {
				return nil, corrupt("format version %d is not supported (this build reads %d): written by a newer Tessera, or damaged", h.GetFormatVersion(), BackupFormatVersion)
			}
			if err := checkLayout(h.GetRanges()); err != nil {
				return nil, corrupt("header: %v", err)
			}
			for _, d := range h.GetRanges() {
				spans[d.GetRangeId()] = d
			}
			info.Header = h
		case *tesserapb.SnapshotRecord_Kvs:
			if info.Header == nil {
				return nil, corrupt("key-values before the header")
			}
			d := spans[x.Kvs.GetRangeId()]
			if d == nil {
				return nil, corrupt("key-values of range %d, which the header does not list", x.Kvs.GetRangeId())
			}
			for _, raw := range x.Kvs.GetKvs() {
				kv := &mvccpb.KeyValue{}
				if err := proto.Unmarshal(raw, kv); err != nil {
					return nil, corrupt("key %d: %v", keys, err)
				}
				if err := checkBackupKV(kv, d, lastKey, info.Header.GetRevision()); err != nil {
					return nil, corrupt("key %d (%q): %v", keys, kv.Key, err)
				}
				lastKey = kv.Key
				keys++
				valueBytes += uint64(len(kv.Value))
				info.KeysPerRange[d.GetRangeId()]++
				if fn != nil {
					if err := fn(d.GetRangeId(), kv); err != nil {
						return nil, err
					}
				}
			}
		case *tesserapb.SnapshotRecord_Footer:
			if info.Header == nil {
				return nil, corrupt("footer before the header")
			}
			f := x.Footer
			if f.GetKeys() != keys || f.GetRecords() != records || f.GetValueBytes() != valueBytes {
				return nil, corrupt("footer counts %d keys, %d records, %d value bytes; the file holds %d, %d, %d",
					f.GetKeys(), f.GetRecords(), f.GetValueBytes(), keys, records, valueBytes)
			}
			info.Footer = f
		default:
			return nil, corrupt("record %d of unknown kind", records-1)
		}
	}
	// Padding: zeros up to the trailer, fewer than 512.
	if pad := body - pos; pad >= backupAlign {
		return nil, corrupt("%d bytes after the footer", pad)
	}
	rest, err := io.ReadAll(br)
	if err != nil {
		return nil, corrupt("padding: %v", err)
	}
	if int64(len(rest)) != body-pos || len(bytes.Trim(rest, "\x00")) > 0 {
		return nil, corrupt("the padding after the footer is not %d zero bytes", body-pos)
	}
	info.Hash = make([]byte, sha256.Size)
	if _, err := io.ReadFull(r, info.Hash); err != nil {
		return nil, corrupt("SHA-256 trailer: %v", err)
	}
	if !skipHash && !bytes.Equal(info.Hash, sum.Sum(nil)) {
		return nil, corrupt("SHA-256 mismatch: trailer %x, content %x", info.Hash, sum.Sum(nil))
	}
	return info, nil
}

// checkLayout checks that the ranges cover the keyspace in order, each
// once.
func checkLayout(ranges []*tesserapb.RangeDescriptor) error {
	if len(ranges) == 0 {
		return errors.New("no ranges")
	}
	seen := map[uint64]bool{}
	var prevEnd []byte
	for i, d := range ranges {
		if seen[d.GetRangeId()] || d.GetRangeId() == 0 {
			return fmt.Errorf("range id %d repeated or zero", d.GetRangeId())
		}
		seen[d.GetRangeId()] = true
		if !bytes.Equal(d.GetStartKey(), prevEnd) {
			return fmt.Errorf("range %d starts at %q, not where the previous one ends (%q)", d.GetRangeId(), d.GetStartKey(), prevEnd)
		}
		last := i == len(ranges)-1
		if last != (len(d.GetEndKey()) == 0) {
			return fmt.Errorf("range %d: only the last range may end at the end of the keyspace", d.GetRangeId())
		}
		if !last && bytes.Compare(d.GetEndKey(), d.GetStartKey()) <= 0 {
			return fmt.Errorf("range %d is empty", d.GetRangeId())
		}
		prevEnd = d.GetEndKey()
	}
	return nil
}

func checkBackupKV(kv *mvccpb.KeyValue, d *tesserapb.RangeDescriptor, lastKey []byte, rev int64) error {
	switch {
	case len(kv.Key) == 0:
		return errors.New("empty key")
	case lastKey != nil && bytes.Compare(kv.Key, lastKey) <= 0:
		return errors.New("keys out of order")
	case bytes.Compare(kv.Key, d.GetStartKey()) < 0 || (len(d.GetEndKey()) > 0 && bytes.Compare(kv.Key, d.GetEndKey()) >= 0):
		return fmt.Errorf("outside range %d", d.GetRangeId())
	case kv.ModRevision <= 0 || kv.ModRevision > rev || kv.CreateRevision <= 0 || kv.CreateRevision > kv.ModRevision:
		return fmt.Errorf("revisions create %d mod %d not within (0, %d]", kv.CreateRevision, kv.ModRevision, rev)
	case kv.Version <= 0:
		return fmt.Errorf("version %d", kv.Version)
	}
	return nil
}

// byteCounter reads single bytes for binary.ReadUvarint and counts them.
type byteCounter struct {
	r   *bufio.Reader
	pos *int64
}

func (c byteCounter) ReadByte() (byte, error) {
	b, err := c.r.ReadByte()
	if err == nil {
		*c.pos++
	}
	return b, err
}
