package bench

import (
	"slices"
	"testing"
)

func TestKeyGen(t *testing.T) {
	g, err := NewKeyGen("p/", 8, 1000)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range map[int]string{0: "p/000000", 7: "p/000007", 999: "p/000999", 1000: "p/000000", -1: "p/000999"} {
		if got := g.Key(i); got != want {
			t.Errorf("Key(%d) = %q, want %q", i, got, want)
		}
	}
	// Byte order is numeric order, so ranges can be cut at known keys.
	var keys []string
	for i := range g.Space() {
		keys = append(keys, g.Key(i))
		if len(g.Key(i)) != 8 {
			t.Fatalf("key %q is not 8 bytes", g.Key(i))
		}
	}
	if !slices.IsSorted(keys) {
		t.Error("keys are not in byte order")
	}
}

func TestKeyGenTooSmall(t *testing.T) {
	if _, err := NewKeyGen("prefix/", 9, 1000); err == nil {
		t.Error("9-byte keys accepted for a 7-byte prefix and 1000 keys")
	}
	if _, err := NewKeyGen("prefix/", 10, 1000); err != nil {
		t.Errorf("10-byte keys refused: %v", err)
	}
	if _, err := NewKeyGen("p/", 10, 0); err == nil {
		t.Error("empty key space accepted")
	}
}

func TestSplitKeys(t *testing.T) {
	g, _ := NewKeyGen("r/", 10, 1000)
	got := g.SplitKeys(4)
	want := []string{"r/00000250", "r/00000500", "r/00000750"}
	if !slices.Equal(got, want) {
		t.Errorf("SplitKeys(4) = %v, want %v", got, want)
	}
	if g.SplitKeys(1) != nil || g.SplitKeys(0) != nil {
		t.Error("SplitKeys(<2) should be nil")
	}
	small, _ := NewKeyGen("r/", 10, 2)
	if got := small.SplitKeys(4); len(got) != 1 || got[0] != "r/00000001" {
		t.Errorf("SplitKeys(4) of 2 keys = %v, want [r/00000001]", got)
	}
	// Every key falls into exactly one range and each range gets a quarter.
	counts := make([]int, 4)
	for i := range g.Space() {
		k := g.Key(i)
		r, _ := slices.BinarySearch(want, k)
		if r < len(want) && want[r] == k {
			r++
		}
		counts[r]++
	}
	if !slices.Equal(counts, []int{250, 250, 250, 250}) {
		t.Errorf("keys per range = %v, want 250 each", counts)
	}
}
