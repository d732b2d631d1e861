package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestRangeSplitMerge: tessctl range split KEY prints both halves and the
// layout shows them; a split at a key that already starts a range exits 1
// with the server's reason; tessctl range merge ID merges them back and
// prints the merged range; merging the last range exits 1 with why; check
// stays green.
func TestRangeSplitMerge(t *testing.T) {
	tc := startCluster(t, 3, []string{"m"})
	tc.WaitReady(t)
	out, errOut, code := tc.tessctl(t, "range", "split", "f")
	if code != 0 || !strings.Contains(out, `split range 2 at "f"`) || !strings.Contains(out, `["", "f")`) || !strings.Contains(out, `["f", "m")`) {
		t.Fatalf("range split f: exit %d\n%s%s", code, out, errOut)
	}
	eventually(t, 30*time.Second, func() error {
		out, _, _ := tc.tessctl(t, "ranges", "-w", "json")
		if n := len(decodeRanges(t, out)); n != 4 {
			return errorf("%d ranges (meta included) after the split", n)
		}
		return nil
	})
	_, errOut, code = tc.tessctl(t, "range", "split", "f")
	if code != 1 || !strings.Contains(errOut, "refused") || !strings.Contains(errOut, "not after the start") {
		t.Fatalf("split at a range's start: exit %d, stderr %q", code, errOut)
	}
	out, errOut, code = tc.tessctl(t, "-w", "json", "range", "merge", "2")
	if code != 0 {
		t.Fatalf("range merge 2: exit %d\n%s%s", code, out, errOut)
	}
	var merged struct {
		Merged rangeInfo `json:"merged"`
	}
	if err := json.Unmarshal([]byte(out), &merged); err != nil || merged.Merged.ID != 2 || string(merged.Merged.EndKey) != "m" || merged.Merged.Generation != 3 {
		t.Fatalf("range merge 2: %v %q", err, out)
	}
	_, errOut, code = tc.tessctl(t, "range", "merge", "3")
	if code != 1 || !strings.Contains(errOut, "no right neighbour") {
		t.Fatalf("merge of the last range: exit %d, stderr %q", code, errOut)
	}
	eventually(t, 30*time.Second, func() error {
		if out, errOut, code := tc.tessctl(t, "--command-timeout", "20s", "check"); code != 0 {
			return errorf("check: exit %d\n%s%s", code, out, errOut)
		}
		return nil
	})
}

func errorf(format string, args ...any) error { return fmt.Errorf(format, args...) }
