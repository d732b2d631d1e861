package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/tesseradb/tessera/proto/tesserapb"
)

// checkPoll is the pause between two rounds of hash requests while the
// replicas of a range are at different applied indexes.
const checkPoll = 100 * time.Millisecond

func checkCmd(g *globalFlags) *cobra.Command {
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Check that every range's replicas hold the same data",
		Long: `check asks every replica of every range (the meta group included) for a hash
of its replicated state (descriptor, range state and the MVCC history it
serves), as etcd's HashKV. Replicas are compared at the same raft applied
index: check asks again until they all report the same one, up to --timeout
(a cluster under steady writes may not get there). It prints one line per
range and exits with status 1 when replicas differ, cannot be reached or
never agree on an applied index; the replicas of a failing range are listed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			view, err := collect(cmd.Context(), g)
			if err != nil {
				return err
			}
			warnUnreachable(cmd.ErrOrStderr(), view.reports)
			if reachable(view.reports) == 0 {
				return errors.New("tessctl: no member answered")
			}
			ranges := mergeRanges(view.reports)
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			results := make([]rangeCheck, len(ranges))
			var wg sync.WaitGroup
			for i, ri := range ranges {
				wg.Add(1)
				go func() {
					defer wg.Done()
					results[i] = checkRange(ctx, view, ri)
				}()
			}
			wg.Wait()
			format, _ := parseFormat(g.writeOut)
			if err := writeCheck(cmd.OutOrStdout(), format, results); err != nil {
				return err
			}
			for _, r := range results {
				if r.Status != checkOK {
					return errReported
				}
			}
			return nil
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", 30*time.Second, "how long to wait for the replicas of every range to reach the same applied index")
	return cmd
}

// Outcomes of a range's check.
const (
	checkOK          = "ok"
	checkMismatch    = "MISMATCH"
	checkUnreachable = "UNREACHABLE"
	checkLagging     = "LAGGING"
)

// rangeCheck is the outcome of checking one range. Its JSON form is
// tessctl's stable output.
type rangeCheck struct {
	ID   uint64 `json:"range_id"`
	Meta bool   `json:"meta"`
	Span string `json:"span"`
	// Status is ok, MISMATCH (hashes differ at one applied index),
	// UNREACHABLE (a replica did not answer) or LAGGING (the replicas never
	// reported one applied index before the timeout).
	Status   string          `json:"status"`
	Replicas []replicaHashes `json:"replicas"`
}

// replicaHashes is one replica's answer (the last one asked).
type replicaHashes struct {
	Node            uint64 `json:"node_id"`
	AppliedIndex    uint64 `json:"applied_index"`
	Hash            uint32 `json:"hash"`
	Revision        int64  `json:"revision"`
	CompactRevision int64  `json:"compact_revision"`
	Error           string `json:"error,omitempty"`
}

// checkRange asks every replica of the range for its hash until they all
// report the same applied index (or ctx ends), then compares the hashes.
func checkRange(ctx context.Context, view *clusterView, ri rangeInfo) rangeCheck {
	rc := rangeCheck{ID: ri.ID, Meta: ri.Meta, Span: ri.Span}
	for {
		rc.Replicas = askHashes(ctx, view, ri)
		same, failed := true, false
		for _, r := range rc.Replicas {
			failed = failed || r.Error != ""
			same = same && r.AppliedIndex == rc.Replicas[0].AppliedIndex
		}
		switch {
		case failed && ctx.Err() != nil:
			rc.Status = checkUnreachable
			return rc
		case !failed && same:
			rc.Status = checkOK
			for _, r := range rc.Replicas {
				if r.Hash != rc.Replicas[0].Hash {
					rc.Status = checkMismatch
				}
			}
			return rc
		}
		select {
		case <-ctx.Done():
			rc.Status = checkLagging
			if failed {
				rc.Status = checkUnreachable
			}
			return rc
		case <-time.After(checkPoll):
		}
	}
}

// askHashes asks every replica of the range at once.
func askHashes(ctx context.Context, view *clusterView, ri rangeInfo) []replicaHashes {
	out := make([]replicaHashes, len(ri.Replicas))
	var wg sync.WaitGroup
	for i, node := range ri.nodes() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i] = replicaHashes{Node: node}
			resp, err := callInternal(ctx, view, node, func(c tesserapb.InternalClient) (*tesserapb.HashResponse, error) {
				return c.Hash(ctx, &tesserapb.HashRequest{RangeId: ri.ID})
			})
			switch {
			case err != nil:
				out[i].Error = err.Error()
			case resp.GetRoutingError() != nil:
				out[i].Error = fmt.Sprintf("%s: %s", resp.GetRoutingError().GetCode(), resp.GetRoutingError().GetMessage())
			default:
				out[i].AppliedIndex, out[i].Hash = resp.GetAppliedIndex(), resp.GetHash()
				out[i].Revision, out[i].CompactRevision = resp.GetRevision(), resp.GetCompactRevision()
			}
		}()
	}
	wg.Wait()
	return out
}

// writeCheck writes one line per range, and each replica of a range that
// failed; or JSON ({"ranges": [...]}).
func writeCheck(w io.Writer, f format, ranges []rangeCheck) error {
	if ranges == nil {
		ranges = []rangeCheck{}
	}
	if f == formatJSON {
		return writeJSON(w, struct {
			Ranges []rangeCheck `json:"ranges"`
		}{ranges})
	}
	tw := newTable(w)
	fmt.Fprintln(tw, "RANGE\tSPAN\tAPPLIED\tREVISION\tCOMPACT\tHASH\tSTATUS")
	for _, r := range ranges {
		id, span := strconv.FormatUint(r.ID, 10), r.Span
		if r.Meta {
			id, span = "meta", "-"
		}
		if r.Status == checkOK && len(r.Replicas) > 0 {
			first := r.Replicas[0]
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%08x\t%s\n", id, span, first.AppliedIndex, revOrDash(r.Meta, first.Revision), revOrDash(r.Meta, first.CompactRevision), first.Hash, r.Status)
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t-\t-\t-\t-\t%s\n", id, span, r.Status)
		for _, rep := range r.Replicas {
			if rep.Error != "" {
				fmt.Fprintf(tw, "  node %d\t\t-\t-\t-\t-\t%s\n", rep.Node, rep.Error)
				continue
			}
			fmt.Fprintf(tw, "  node %d\t\t%d\t%s\t%s\t%08x\t\n", rep.Node, rep.AppliedIndex, formatRevision(rep.Revision), formatRevision(rep.CompactRevision), rep.Hash)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprint(w, "\nREVISION: the revision the replicas were hashed at; COMPACT: their compaction revision (0: none).\n"+revisionLegend)
	return err
}

// revOrDash formats a revision; the meta group has none.
func revOrDash(meta bool, rev int64) string {
	if meta {
		return "-"
	}
	return formatRevision(rev)
}
