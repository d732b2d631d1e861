package engine

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// Comparer orders encoded keys: by prefix bytes, then the unversioned key,
// then versions newest first. Pebble stores its Name on disk; changing the
// order means a new name.
var Comparer = &pebble.Comparer{
	Compare:              compareKeys,
	Equal:                func(a, b []byte) bool { return compareKeys(a, b) == 0 },
	AbbreviatedKey:       abbreviatedKey,
	FormatKey:            formatKey,
	Separator:            func(dst, a, _ []byte) []byte { return append(dst, a...) },
	Successor:            func(dst, a []byte) []byte { return append(dst, a...) },
	ImmediateSuccessor:   immediateSuccessor,
	Split:                split,
	ComparePointSuffixes: compareSuffixes,
	CompareRangeSuffixes: compareSuffixes,
	Name:                 "tessera.mvcc.v1",
}

func compareKeys(a, b []byte) int {
	an, bn := split(a), split(b)
	if c := bytes.Compare(a[:an], b[:bn]); c != 0 {
		return c
	}
	return compareSuffixes(a[an:], b[bn:])
}

// compareSuffixes orders an empty suffix first, then bytewise: revisions are
// stored inverted, so bytewise ascending is revision descending.
func compareSuffixes(a, b []byte) int {
	return bytes.Compare(a, b)
}

// abbreviatedKey returns the first 8 bytes of the prefix, which orders keys
// consistently with compareKeys.
func abbreviatedKey(k []byte) uint64 {
	p := k[:split(k)]
	var buf [8]byte
	copy(buf[:], p)
	return binary.BigEndian.Uint64(buf[:])
}

// immediateSuccessor of a prefix p (which ends in the sentinel) is p+0x00: no
// prefix sorts between them, and every version of p sorts before it.
func immediateSuccessor(dst, a []byte) []byte {
	return append(append(dst, a...), sentinel)
}

func formatKey(k []byte) fmt.Formatter {
	return keyFormatter(k)
}

type keyFormatter []byte

func (k keyFormatter) Format(s fmt.State, _ rune) {
	prefix, rev, err := DecodeKey(k)
	if err != nil {
		fmt.Fprintf(s, "%q", []byte(k))
		return
	}
	if rev == 0 {
		fmt.Fprintf(s, "%q", prefix)
		return
	}
	fmt.Fprintf(s, "%q@%d", prefix, rev)
}

// pebbleLogger routes Pebble's messages to slog: Pebble's informational chatter
// is dropped (logs are quiet by default), errors are kept.
type pebbleLogger struct{ log func(msg string, args ...any) }

func (l pebbleLogger) Infof(string, ...any) {}
func (l pebbleLogger) Errorf(format string, args ...any) {
	l.log("pebble", "msg", fmt.Sprintf(format, args...))
}
func (l pebbleLogger) Fatalf(format string, args ...any) {
	// Pebble calls Fatalf on unrecoverable storage errors; continuing on a
	// broken disk is worse than stopping (see STYLE.md: raft order is law).
	panic(fmt.Sprintf("pebble: "+format, args...))
}
