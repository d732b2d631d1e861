package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/status"

	"github.com/tesseradb/tessera/internal/backoff"
	"github.com/tesseradb/tessera/proto/tesserapb"
)

// rangeCmd groups the commands that change the layout of ranges.
func rangeCmd(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "range",
		Short: "Split or merge ranges",
	}
	cmd.AddCommand(rangeSplitCmd(g), rangeMergeCmd(g), rangeMoveCmd(g)) // move.go
	return cmd
}

func rangeSplitCmd(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "split KEY",
		Short: "Split the range holding KEY so that a new range starts at KEY",
		Long: `split cuts the range that holds KEY in two: the left half keeps its id and
the keys below KEY, a new range gets KEY and the keys above, on the same
replicas, without moving data. It asks the range's leader, prints the new
layout, and exits non-zero with the server's reason when the split is
refused (KEY already starts a range, for example).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			key := []byte(args[0])
			if len(key) == 0 {
				return errors.New("tessctl: range split: empty key")
			}
			view, err := collect(cmd.Context(), g)
			if err != nil {
				return err
			}
			warnUnreachable(cmd.ErrOrStderr(), view.reports)
			var ri *rangeInfo
			for _, r := range mergeRanges(view.reports) {
				if !r.Meta && containsKey(r.StartKey, r.EndKey, key) {
					ri = &r
					break
				}
			}
			if ri == nil {
				return fmt.Errorf("tessctl: no member reports a range holding %q", key)
			}
			resp, err := splitRange(cmd.Context(), g, view, ri, key)
			if err != nil {
				return err
			}
			format, _ := parseFormat(g.writeOut)
			if format == formatJSON {
				return writeJSON(cmd.OutOrStdout(), struct {
					Left  rangeInfo `json:"left"`
					Right rangeInfo `json:"right"`
				}{descInfo(resp.GetLeft()), descInfo(resp.GetRight())})
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "split range %d at %q\n", ri.ID, key)
			tw := newTable(out)
			fmt.Fprintln(tw, "RANGE\tSPAN\tGENERATION\tREPLICAS")
			for _, d := range []*tesserapb.RangeDescriptor{resp.GetLeft(), resp.GetRight()} {
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", strconv.FormatUint(d.GetRangeId(), 10), formatSpan(d.GetStartKey(), d.GetEndKey()), d.GetGeneration(), joinReplicas(replicaRefs(d)))
			}
			return tw.Flush()
		},
	}
}

func containsKey(start, end, key []byte) bool {
	return string(key) >= string(start) && (len(end) == 0 || string(key) < string(end))
}

// descInfo is a descriptor in tessctl's JSON form of a range.
func descInfo(d *tesserapb.RangeDescriptor) rangeInfo {
	ri := rangeInfo{ID: d.GetRangeId(), Generation: d.GetGeneration(), Replicas: replicaRefs(d)}
	ri.StartKey = append([]byte{}, d.GetStartKey()...)
	ri.EndKey = append([]byte{}, d.GetEndKey()...)
	ri.Span = formatSpan(ri.StartKey, ri.EndKey)
	ri.Reports = []replicaReport{}
	return ri
}

// splitRange asks the range's leader to split it.
func splitRange(ctx context.Context, g *globalFlags, view *clusterView, ri *rangeInfo, key []byte) (*tesserapb.SplitRangeResponse, error) {
	return leaderCall(ctx, g, view, ri, "split", func(ctx context.Context, c tesserapb.InternalClient) (*tesserapb.SplitRangeResponse, error) {
		return c.SplitRange(ctx, &tesserapb.SplitRangeRequest{RangeId: ri.ID, SplitKey: key})
	}, (*tesserapb.SplitRangeResponse).GetRoutingError)
}

func rangeMergeCmd(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "merge ID",
		Short: "Merge range ID with its right neighbour",
		Long: `merge merges range ID with the range that starts where it ends: the right
range is frozen, caught up on every replica and subsumed by range ID, which
then spans both. Only ranges with the same replica set merge. It asks the
leader of range ID, prints the merged range, and exits non-zero with the
server's reason when the merge is refused.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := strconv.ParseUint(args[0], 10, 64)
			if err != nil || id == 0 {
				return fmt.Errorf("tessctl: range merge: bad range id %q", args[0])
			}
			view, err := collect(cmd.Context(), g)
			if err != nil {
				return err
			}
			warnUnreachable(cmd.ErrOrStderr(), view.reports)
			var ri *rangeInfo
			for _, r := range mergeRanges(view.reports) {
				if r.ID == id {
					ri = &r
					break
				}
			}
			switch {
			case ri == nil:
				return fmt.Errorf("tessctl: no member reports range %d", id)
			case ri.Meta:
				return errors.New("tessctl: the meta group does not merge")
			}
			resp, err := leaderCall(cmd.Context(), g, view, ri, "merge", func(ctx context.Context, c tesserapb.InternalClient) (*tesserapb.MergeRangeResponse, error) {
				return c.MergeRange(ctx, &tesserapb.MergeRangeRequest{RangeId: id})
			}, (*tesserapb.MergeRangeResponse).GetRoutingError)
			if err != nil {
				return err
			}
			d := resp.GetMerged()
			format, _ := parseFormat(g.writeOut)
			if format == formatJSON {
				return writeJSON(cmd.OutOrStdout(), struct {
					Merged rangeInfo `json:"merged"`
				}{descInfo(d)})
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "merged into range %d\n", d.GetRangeId())
			tw := newTable(out)
			fmt.Fprintln(tw, "RANGE\tSPAN\tGENERATION\tREPLICAS")
			fmt.Fprintf(tw, "%d\t%s\t%d\t%s\n", d.GetRangeId(), formatSpan(d.GetStartKey(), d.GetEndKey()), d.GetGeneration(), joinReplicas(replicaRefs(d)))
			return tw.Flush()
		},
	}
}

// leaderCall calls fn on the range's leader, following NOT_LEADER hints and
// waiting out an election; a refusal (a gRPC status) ends it with the
// server's reason.
func leaderCall[T any](ctx context.Context, g *globalFlags, view *clusterView, ri *rangeInfo, what string,
	fn func(context.Context, tesserapb.InternalClient) (T, error), routing func(T) *tesserapb.RoutingError) (T, error) {
	var zero T
	ctx, cancel := context.WithTimeout(ctx, g.commandTimeout)
	defer cancel()
	call := func(n uint64) (T, error) {
		return callInternal(ctx, view, n, func(c tesserapb.InternalClient) (T, error) { return fn(ctx, c) })
	}
	leader := ri.Leader
	retry := backoff.New(noLeaderBackoff)
	var lastErr error
	for {
		if leader == 0 {
			if err := retry.Wait(ctx); err != nil {
				return zero, fmt.Errorf("tessctl: range %d has no leader: %w (last error: %v)", ri.ID, err, lastErr)
			}
			for _, rr := range ri.Replicas {
				resp, err := call(rr.Node)
				if err != nil {
					lastErr = err
					continue
				}
				if re := routing(resp); re == nil {
					return resp, nil
				} else if re.GetLeaderNode() != 0 {
					leader = re.GetLeaderNode()
					break
				}
			}
			continue
		}
		resp, err := call(leader)
		if err != nil {
			if s, ok := status.FromError(err); ok {
				return zero, fmt.Errorf("tessctl: %s of range %d refused by node %d: %s", what, ri.ID, leader, s.Message())
			}
			return zero, fmt.Errorf("tessctl: %s range %d via node %d: %w", what, ri.ID, leader, err)
		}
		re := routing(resp)
		if re == nil {
			return resp, nil
		}
		lastErr = fmt.Errorf("node %d: %s: %s", leader, re.GetCode(), re.GetMessage())
		if re.GetCode() != tesserapb.RoutingError_NOT_LEADER {
			return zero, fmt.Errorf("tessctl: %s range %d: %w", what, ri.ID, lastErr)
		}
		leader = re.GetLeaderNode()
	}
}
