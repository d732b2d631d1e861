package main

import (
	"fmt"
	"strconv"
	"time"
)

// logicalBits is the width of a revision's logical counter: a revision is
// a TSO timestamp, unix milliseconds << logicalBits | counter
// (placement.LogicalBits; a test checks they agree).
const logicalBits = 18

// formatRevision shows a revision as the instant it encodes, in UTC to the
// millisecond, with the counter when it is not 0:
// 470620909530775552 is "2026-11-21T15:51:36.733Z" and the revision 5
// above it "2026-11-21T15:51:36.733Z+5". 0 (none yet) stays "0".
func formatRevision(rev int64) string {
	if rev <= 0 {
		return strconv.FormatInt(rev, 10)
	}
	s := time.UnixMilli(rev >> logicalBits).UTC().Format("2006-01-02T15:04:05.000Z")
	if logical := rev & (1<<logicalBits - 1); logical != 0 {
		s += fmt.Sprintf("+%d", logical)
	}
	return s
}

// revisionLegend follows a table with revisions in it.
const revisionLegend = "Revisions are TSO timestamps, shown as the instant they encode (unix ms << 18 | a counter, shown as +n when not 0); -w json gives the raw numbers.\n"
