package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tesseradb/tessera/proto/tesserapb"
)

// TestTransferLeader moves every range (the meta group included) to every
// node with tessctl transfer-leader and checks the new leader with ranges.
func TestTransferLeader(t *testing.T) {
	tc := startCluster(t, 3, []string{"g"})
	leaderOf := func(id uint64) (uint64, error) {
		out, stderr, code := tc.tessctl(t, "ranges", "-w", "json")
		if code != 0 {
			return 0, fmt.Errorf("ranges: exit status %d: %s", code, stderr)
		}
		for _, r := range decodeRanges(t, out) {
			// Every replica must agree, at the leader's term.
			if r.ID != id {
				continue
			}
			for _, rep := range r.Reports {
				if rep.Leader != r.Leader || rep.Term != r.Term {
					return 0, fmt.Errorf("range %d: node %d sees leader %d at term %d, merged view %d at %d", id, rep.Node, rep.Leader, rep.Term, r.Leader, r.Term)
				}
			}
			return r.Leader, nil
		}
		return 0, fmt.Errorf("range %d not listed", id)
	}
	for _, id := range []uint64{1, 2, 3} {
		eventually(t, 30*time.Second, func() error {
			l, err := leaderOf(id)
			if err == nil && l == 0 {
				err = fmt.Errorf("range %d: no leader", id)
			}
			return err
		})
		for _, to := range []uint64{1, 2, 3, 1} {
			out, stderr, code := tc.tessctl(t, "--command-timeout", "20s", "transfer-leader", "--range", fmt.Sprint(id), "--to", fmt.Sprint(to))
			if code != 0 || strings.TrimSpace(out) != fmt.Sprintf("range %d: leader is node %d", id, to) {
				t.Fatalf("transfer-leader --range %d --to %d: exit status %d, stdout %q, stderr %q", id, to, code, out, stderr)
			}
			eventually(t, 10*time.Second, func() error {
				l, err := leaderOf(id)
				if err == nil && l != uint64(to) {
					err = fmt.Errorf("range %d: leader %d, want %d", id, l, to)
				}
				return err
			})
		}
	}
	// A follower answers NOT_LEADER with the leader as a hint.
	view, err := collect(t.Context(), &globalFlags{endpoints: tc.endpoints, dialTimeout: 5 * time.Second, commandTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := callInternal(t.Context(), view, 2, func(c tesserapb.InternalClient) (*tesserapb.TransferLeaderResponse, error) {
		return c.TransferLeader(t.Context(), &tesserapb.TransferLeaderRequest{RangeId: 2, TargetNode: 3})
	})
	if re := resp.GetRoutingError(); err != nil || re.GetCode() != tesserapb.RoutingError_NOT_LEADER || re.GetLeaderNode() != 1 {
		t.Errorf("TransferLeader on a follower: %v, %v; want NOT_LEADER with leader 1", resp, err)
	}
	// Errors: an unknown range, a node that holds no replica.
	if _, stderr, code := tc.tessctl(t, "transfer-leader", "--range", "99", "--to", "1"); code == 0 || !strings.Contains(stderr, "no member reports range 99") {
		t.Errorf("unknown range: exit status %d, stderr %q", code, stderr)
	}
	if _, stderr, code := tc.tessctl(t, "transfer-leader", "--range", "2", "--to", "7"); code == 0 || !strings.Contains(stderr, "holds no replica") {
		t.Errorf("unknown node: exit status %d, stderr %q", code, stderr)
	}
}
