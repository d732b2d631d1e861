package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/tesseradb/tessera/engine"
)

func decodeCheck(t *testing.T, out string) []rangeCheck {
	t.Helper()
	var v struct {
		Ranges []rangeCheck `json:"ranges"`
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("check -w json: %v in %q", err, out)
	}
	return v.Ranges
}

// TestCheck runs tessctl check on a 3-node cluster after writes, deletes and
// a compaction (it passes), then after a bogus version was written straight
// into one node's engine (it fails and names that range).
func TestCheck(t *testing.T) {
	tc := startCluster(t, 3, []string{"g"})
	cli, err := clientv3.New(clientv3.Config{Endpoints: tc.endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	var compactAt int64
	for i, k := range []string{"apple", "banana", "hello", "zebra", "apple", "hello"} {
		eventually(t, 30*time.Second, func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			resp, err := cli.Put(ctx, k, fmt.Sprint(i))
			if err == nil && i == 3 {
				compactAt = resp.Header.Revision
			}
			return err
		})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := cli.Delete(ctx, "banana"); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Compact(ctx, compactAt); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, "hello", "after"); err != nil {
		t.Fatal(err)
	}

	out, stderr, code := tc.tessctl(t, "check", "-w", "json")
	if code != 0 {
		t.Fatalf("check: exit status %d, stderr %q, stdout:\n%s", code, stderr, out)
	}
	ranges := decodeCheck(t, out)
	if len(ranges) != 3 || !ranges[0].Meta {
		t.Fatalf("check: %d ranges: %s", len(ranges), out)
	}
	for _, r := range ranges {
		if r.Status != checkOK || len(r.Replicas) != 3 || r.Replicas[0].AppliedIndex == 0 {
			t.Errorf("range %d: %s", r.ID, mustJSON(t, r))
		}
		if !r.Meta && r.Replicas[0].CompactRevision != compactAt {
			t.Errorf("range %d: compact revision %d, want %d", r.ID, r.Replicas[0].CompactRevision, compactAt)
		}
	}
	out, _, code = tc.tessctl(t, "check")
	table, legend, _ := strings.Cut(out, "\n\n")
	if lines := strings.Split(table, "\n"); code != 0 || len(lines) != 4 || !strings.HasPrefix(lines[0], "RANGE") || !strings.Contains(legend, "-w json gives the raw numbers") {
		t.Errorf("check table: exit status %d:\n%s", code, out)
	}

	// Tamper with node 2's copy of range 2 (keys < "g"): one extra version
	// of "apple" that no write made.
	b := tc.Node(1).Engine().NewWriteBatch()
	if err := engine.MVCCPut(b, []byte("apple"), engine.Revision(compactAt+1), engine.Value{CreateRev: engine.Revision(compactAt + 1), Version: 1, Data: []byte("bogus")}); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(true); err != nil {
		t.Fatal(err)
	}
	b.Close()
	out, stderr, code = tc.tessctl(t, "check", "-w", "json")
	if code != 1 {
		t.Fatalf("check after tampering: exit status %d, stderr %q, stdout:\n%s", code, stderr, out)
	}
	for _, r := range decodeCheck(t, out) {
		want := checkOK
		if r.ID == 2 {
			want = checkMismatch
		}
		if r.Status != want {
			t.Errorf("after tampering, range %d: status %s, want %s", r.ID, r.Status, want)
		}
	}
	out, _, code = tc.tessctl(t, "check")
	if code != 1 || !strings.Contains(out, "MISMATCH") || !strings.Contains(out, "  node 2") {
		t.Errorf("check table after tampering: exit status %d:\n%s", code, out)
	}
	t.Logf("check after tampering:\n%s", out)
}
