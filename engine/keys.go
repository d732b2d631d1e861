package engine

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// Revision is a point in the cluster-wide MVCC history (see DESIGN.md: TSO
// timestamps). Zero means "no version".
type Revision int64

// Key space bytes: the first byte of every prefix.
const (
	spaceLocalGroup byte = 0x01
	spaceStore      byte = 0x02
	spaceData       byte = 0x03
	spaceDataEnd    byte = 0x04
	spaceSystem     byte = 0x05
)

// Kinds of local per-group keys. They are listed here, with the layout, so the
// whole key space is documented in one place; their meaning belongs to the
// packages that write them.
//
// Replicated kinds are identical on every replica at the same applied index
// and travel in replica snapshots; unreplicated kinds belong to one replica.
const (
	// Replicated (section 'r').
	KindAppliedState byte = 'a' // applied index, term and ConfState
	KindDescriptor   byte = 'd' // range descriptor
	KindRangeState   byte = 's' // other replicated per-range state
	KindChangeLog    byte = 'c' // the user keys one revision wrote; followed by revision(8)
	KindRevokedLease byte = 'v' // a lease revoked on the range; followed by lease id(8)
	KindLeaseKey     byte = 'k' // a live key attached to a lease; followed by lease id(8), user key
	KindRevokedGC    byte = 'g' // when a revoked lease may be forgotten; followed by revision(8), lease id(8)
	KindAuthRevision byte = 'p' // highest auth revision the range has applied (shard/auth_revision.go)
	KindMovedWrite   byte = 'm' // a revision whose writes a split moved wholly to the right half; followed by revision(8)

	// Unreplicated (section 'u').
	KindHardState byte = 'h' // raft HardState
	KindLogEntry  byte = 'l' // raft log entry; followed by index(8)
	KindTruncated byte = 't' // raft log truncated state (index, term)
)

const (
	sectionReplicated   byte = 'r'
	sectionUnreplicated byte = 'u'
)

func sectionOf(kind byte) byte {
	switch kind {
	case KindAppliedState, KindDescriptor, KindRangeState, KindChangeLog, KindRevokedLease, KindLeaseKey, KindRevokedGC, KindAuthRevision, KindMovedWrite:
		return sectionReplicated
	}
	return sectionUnreplicated
}

const (
	sentinel   = 0x00
	suffixLen  = 9             // ^rev(8) + length byte
	localKeyLn = 1 + 8 + 1 + 1 // space, group, section, kind
)

// EncodeKey appends the engine encoding of (prefix, rev) to dst. rev 0 makes
// an unversioned key.
func EncodeKey(dst, prefix []byte, rev Revision) []byte {
	dst = append(dst, prefix...)
	dst = append(dst, sentinel)
	if rev == 0 {
		return dst
	}
	dst = binary.BigEndian.AppendUint64(dst, ^uint64(rev))
	return append(dst, suffixLen)
}

// DecodeKey splits an engine key into its prefix (without the sentinel) and
// revision (0 for an unversioned key). The prefix aliases k.
func DecodeKey(k []byte) (prefix []byte, rev Revision, err error) {
	n := split(k)
	if n == 0 || k[n-1] != sentinel {
		return nil, 0, fmt.Errorf("engine: malformed key %q", k)
	}
	if n < len(k) {
		rev = Revision(^binary.BigEndian.Uint64(k[n : n+8]))
		if rev <= 0 {
			return nil, 0, fmt.Errorf("engine: malformed revision in key %q", k)
		}
	}
	return k[:n-1], rev, nil
}

// split returns the length of the prefix of an encoded key, sentinel included.
// Malformed keys are treated as having no suffix.
func split(k []byte) int {
	n := len(k)
	if n == 0 {
		return 0
	}
	if k[n-1] == suffixLen && n >= suffixLen+1 && k[n-suffixLen-1] == sentinel {
		return n - suffixLen
	}
	return n
}

// LocalGroupKey returns the unversioned engine key of a local per-group key.
func LocalGroupKey(group uint64, kind byte) []byte {
	b := make([]byte, 0, localKeyLn+1)
	b = append(b, spaceLocalGroup)
	b = binary.BigEndian.AppendUint64(b, group)
	b = append(b, sectionOf(kind), kind)
	return EncodeKey(b[:0:0], b, 0)
}

// LocalGroupIndexKey returns the engine key of an indexed per-group key (a
// raft log entry).
func LocalGroupIndexKey(group uint64, kind byte, index uint64) []byte {
	b := make([]byte, 0, localKeyLn+8+1)
	b = append(b, spaceLocalGroup)
	b = binary.BigEndian.AppendUint64(b, group)
	b = append(b, sectionOf(kind), kind)
	b = binary.BigEndian.AppendUint64(b, index)
	return append(b, sentinel)
}

// DecodeLocalGroupIndexKey returns the index of a key made by
// LocalGroupIndexKey.
func DecodeLocalGroupIndexKey(k []byte) (uint64, error) {
	if len(k) != localKeyLn+8+1 || k[0] != spaceLocalGroup || k[len(k)-1] != sentinel {
		return 0, fmt.Errorf("engine: not an indexed local key: %q", k)
	}
	return binary.BigEndian.Uint64(k[localKeyLn : localKeyLn+8]), nil
}

// LocalGroupPairKey returns the engine key of a per-group key indexed by
// two numbers (a KindRevokedGC key: revision, lease id); they sort by a,
// then b.
func LocalGroupPairKey(group uint64, kind byte, a, b uint64) []byte {
	k := make([]byte, 0, localKeyLn+16+1)
	k = append(k, spaceLocalGroup)
	k = binary.BigEndian.AppendUint64(k, group)
	k = append(k, sectionOf(kind), kind)
	k = binary.BigEndian.AppendUint64(k, a)
	k = binary.BigEndian.AppendUint64(k, b)
	return append(k, sentinel)
}

// DecodeLocalGroupPairKey returns the numbers of a key made by
// LocalGroupPairKey.
func DecodeLocalGroupPairKey(k []byte) (a, b uint64, err error) {
	if len(k) != localKeyLn+16+1 || k[0] != spaceLocalGroup || k[len(k)-1] != sentinel {
		return 0, 0, fmt.Errorf("engine: not a pair-indexed local key: %q", k)
	}
	return binary.BigEndian.Uint64(k[localKeyLn : localKeyLn+8]), binary.BigEndian.Uint64(k[localKeyLn+8 : localKeyLn+16]), nil
}

// LeaseKeyKey returns the engine key of the lease index entry (lease,
// userKey) of a group: a KindLeaseKey local key, unversioned (it ends with
// the sentinel, so no user key can make it look versioned).
func LeaseKeyKey(group uint64, lease int64, userKey []byte) []byte {
	b := make([]byte, 0, localKeyLn+8+len(userKey)+1)
	b = append(b, spaceLocalGroup)
	b = binary.BigEndian.AppendUint64(b, group)
	b = append(b, sectionReplicated, KindLeaseKey)
	b = binary.BigEndian.AppendUint64(b, uint64(lease))
	b = append(b, userKey...)
	return append(b, sentinel)
}

// LeaseKeySpan is the span of the lease index entries of one lease of a
// group.
func LeaseKeySpan(group uint64, lease int64) Span {
	start := LeaseKeyKey(group, lease, nil)
	start = start[:len(start)-1]
	end := make([]byte, 0, len(start))
	end = append(end, start[:localKeyLn]...)
	end = binary.BigEndian.AppendUint64(end, uint64(lease)+1)
	if uint64(lease) == ^uint64(0) {
		end = append(end[:localKeyLn-1:localKeyLn-1], KindLeaseKey+1)
	}
	return Span{Start: start, End: end}
}

// UserKeyOfLeaseKey returns the user key of a key made by LeaseKeyKey
// (aliasing k).
func UserKeyOfLeaseKey(k []byte) ([]byte, error) {
	if len(k) < localKeyLn+8+1 || k[0] != spaceLocalGroup || k[localKeyLn-1] != KindLeaseKey || k[len(k)-1] != sentinel {
		return nil, fmt.Errorf("engine: not a lease index key: %q", k)
	}
	return k[localKeyLn+8 : len(k)-1], nil
}

// LocalGroupSpan is the span holding every local key of a group.
func LocalGroupSpan(group uint64) Span {
	start := make([]byte, 0, 9)
	start = append(start, spaceLocalGroup)
	start = binary.BigEndian.AppendUint64(start, group)
	end := make([]byte, 0, 10)
	end = append(end, start...)
	end = append(end, 0xff)
	return Span{Start: start, End: end}
}

// LocalGroupKindSpan is the span of all keys of one kind of a group (for
// example every raft log entry).
func LocalGroupKindSpan(group uint64, kind byte) Span {
	s := LocalGroupSpan(group)
	sec := sectionOf(kind)
	return Span{Start: append(s.Start[:9:9], sec, kind), End: append(s.Start[:9:9], sec, kind+1)}
}

// LocalGroupReplicatedSpan is the span of a group's replicated local keys.
func LocalGroupReplicatedSpan(group uint64) Span {
	s := LocalGroupSpan(group)
	return Span{Start: append(s.Start[:9:9], sectionReplicated), End: append(s.Start[:9:9], sectionReplicated+1)}
}

// LocalGroupUnreplicatedSpan is the span of a group's unreplicated local keys.
func LocalGroupUnreplicatedSpan(group uint64) Span {
	s := LocalGroupSpan(group)
	return Span{Start: append(s.Start[:9:9], sectionUnreplicated), End: append(s.Start[:9:9], sectionUnreplicated+1)}
}

// UserKeyOfDataKey returns the user key of an encoded data key (a version
// written by MVCCPut), or false when k is not one.
func UserKeyOfDataKey(k []byte) ([]byte, bool) {
	if len(k) == 0 || k[0] != spaceData {
		return nil, false
	}
	prefix, _, err := DecodeKey(k)
	if err != nil {
		return nil, false
	}
	return userKeyOf(prefix)
}

// StoreKey returns the engine key of a store-local (per node) key.
func StoreKey(name string) []byte {
	b := append([]byte{spaceStore}, name...)
	return EncodeKey(nil, b, 0)
}

// SystemKey returns the unversioned engine key of a replicated system key
// (cluster metadata kept by the meta group), outside the user keyspace.
func SystemKey(name string) []byte {
	return EncodeKey(nil, append([]byte{spaceSystem}, name...), 0)
}

// SystemSpan is the span of the system keys that start with prefix.
func SystemSpan(prefix string) Span {
	start := append([]byte{spaceSystem}, prefix...)
	end := append(append([]byte(nil), start...), 0xff)
	return Span{Start: start, End: end}
}

// dataPrefix returns the prefix of a user key in the data space.
func dataPrefix(dst, userKey []byte) []byte {
	dst = append(dst, spaceData)
	return append(dst, userKey...)
}

// DataKey returns the engine key of version rev of a user key.
func DataKey(userKey []byte, rev Revision) []byte {
	return EncodeKey(nil, dataPrefix(nil, userKey), rev)
}

// DataSpan returns the engine span of the user keys in [start, end). An empty
// end means "to the end of the keyspace".
func DataSpan(start, end []byte) Span {
	s := Span{Start: EncodeKey(nil, dataPrefix(nil, start), 0)}
	if len(end) == 0 {
		s.End = EncodeKey(nil, []byte{spaceDataEnd}, 0)
	} else {
		s.End = EncodeKey(nil, dataPrefix(nil, end), 0)
	}
	return s
}

// userKeyOf returns the user key of a data prefix (aliasing it).
func userKeyOf(prefix []byte) ([]byte, bool) {
	if len(prefix) == 0 || prefix[0] != spaceData {
		return nil, false
	}
	return prefix[1:], true
}

// Span is a half-open span [Start, End) of engine keys. Raw spans made by
// LocalGroupSpan are compared bytewise to encoded keys; every prefix made by
// this package is a valid bound.
type Span struct {
	Start, End []byte
}

// Contains reports whether the encoded key k is in the span.
func (s Span) Contains(k []byte) bool {
	return bytes.Compare(k, s.Start) >= 0 && (len(s.End) == 0 || bytes.Compare(k, s.End) < 0)
}
