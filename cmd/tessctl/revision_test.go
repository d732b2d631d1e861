package main

import (
	"testing"

	"github.com/tesseradb/tessera/placement"
)

func TestFormatRevision(t *testing.T) {
	if logicalBits != placement.LogicalBits {
		t.Fatalf("tessctl's logicalBits %d, the TSO's %d", logicalBits, placement.LogicalBits)
	}
	for _, tc := range []struct {
		rev  int64
		want string
	}{
		{0, "0"},
		{470620909530775552, "2026-11-21T15:51:36.733Z"},
		{470620909530775552 + 5, "2026-11-21T15:51:36.733Z+5"},
		{470620909530775552 + 1<<18, "2026-11-21T15:51:36.734Z"},
	} {
		if got := formatRevision(tc.rev); got != tc.want {
			t.Errorf("formatRevision(%d) = %q, want %q", tc.rev, got, tc.want)
		}
	}
}
