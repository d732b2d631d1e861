package bench

import (
	"fmt"
	"strconv"
)

// KeyGen names the keys of a workload: key i is the prefix followed by i in
// decimal, zero-padded so that every key is exactly KeySize bytes. Padding
// keeps byte order equal to numeric order, so a prefix of N keys can be cut
// into ranges at known keys (see SplitKeys).
type KeyGen struct {
	prefix string
	digits int
	space  int
}

// NewKeyGen returns the key names for space keys of size bytes under prefix.
// It fails when size leaves too few bytes after the prefix to number them.
func NewKeyGen(prefix string, size, space int) (KeyGen, error) {
	if space < 1 {
		return KeyGen{}, fmt.Errorf("bench: key space must be at least 1, got %d", space)
	}
	need := len(strconv.Itoa(space - 1))
	digits := size - len(prefix)
	if digits < need {
		return KeyGen{}, fmt.Errorf("bench: key size %d is too small for prefix %q and %d keys (need at least %d)",
			size, prefix, space, len(prefix)+need)
	}
	return KeyGen{prefix: prefix, digits: digits, space: space}, nil
}

// Key returns key i (taken modulo the key space).
func (g KeyGen) Key(i int) string {
	i %= g.space
	if i < 0 {
		i += g.space
	}
	return fmt.Sprintf("%s%0*d", g.prefix, g.digits, i)
}

// Space is the number of distinct keys.
func (g KeyGen) Space() int { return g.space }

// Prefix is the common prefix of all keys.
func (g KeyGen) Prefix() string { return g.prefix }

// SplitKeys returns the parts-1 keys that cut the key space into parts ranges
// of (nearly) equal size: the first key of each range but the first. It
// returns nil when parts < 2.
func (g KeyGen) SplitKeys(parts int) []string {
	if parts < 2 {
		return nil
	}
	parts = min(parts, g.space)
	var out []string
	for p := 1; p < parts; p++ {
		out = append(out, g.Key(p*g.space/parts))
	}
	return out
}

// value returns a value of n bytes; its content does not matter to any
// server, but it is not all zeros so compression cannot hide its size.
func value(n int) []byte {
	v := make([]byte, n)
	for i := range v {
		v[i] = 'a' + byte(i%26)
	}
	return v
}
