package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"

	"github.com/tesseradb/tessera/internal/backoff"
	"github.com/tesseradb/tessera/proto/tesserapb"
)

func transferLeaderCmd(g *globalFlags) *cobra.Command {
	var rangeID, to uint64
	cmd := &cobra.Command{
		Use:   "transfer-leader --range N --to NODE",
		Short: "Move a range's leadership to another of its replicas",
		Long: `transfer-leader asks the leader of range N (1 is the meta group) to hand its
leadership to node NODE, one of the range's voters, and returns once NODE
leads. It finds the leader through the members' replica lists and follows
the leader hint of a node that no longer leads.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if rangeID == 0 || to == 0 {
				return errors.New("tessctl: transfer-leader needs --range and --to")
			}
			view, err := collect(cmd.Context(), g)
			if err != nil {
				return err
			}
			warnUnreachable(cmd.ErrOrStderr(), view.reports)
			leader, err := transferLeader(cmd.Context(), g, view, rangeID, to)
			if err != nil {
				return err
			}
			format, _ := parseFormat(g.writeOut)
			if format == formatJSON {
				return writeJSON(cmd.OutOrStdout(), struct {
					RangeID uint64 `json:"range_id"`
					Leader  uint64 `json:"leader"`
				}{rangeID, leader})
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "range %d: leader is node %d\n", rangeID, leader)
			return err
		},
	}
	cmd.Flags().Uint64Var(&rangeID, "range", 0, "the range id (1: the meta group)")
	cmd.Flags().Uint64Var(&to, "to", 0, "the node id of the new leader")
	return cmd
}

// noLeaderBackoff paces the polls for a range's leader during an election:
// 100 ms, doubling up to 1 s.
var noLeaderBackoff = backoff.Config{Min: 100 * time.Millisecond, Max: time.Second}

// transferLeader calls TransferLeader on the range's leader, following
// NOT_LEADER hints, and returns the new leader.
func transferLeader(ctx context.Context, g *globalFlags, view *clusterView, rangeID, to uint64) (uint64, error) {
	var ri *rangeInfo
	for _, r := range mergeRanges(view.reports) {
		if r.ID == rangeID {
			ri = &r
			break
		}
	}
	switch {
	case ri == nil:
		return 0, fmt.Errorf("tessctl: no member reports range %d", rangeID)
	case !slices.Contains(ri.nodes(), to):
		return 0, fmt.Errorf("tessctl: node %d holds no replica of range %d (replicas on nodes %v)", to, rangeID, ri.nodes())
	}
	ctx, cancel := context.WithTimeout(ctx, g.commandTimeout)
	defer cancel()
	leader := ri.Leader
	var lastErr error
	retry := backoff.New(noLeaderBackoff)
	for {
		if leader == 0 {
			// No leader known: ask the replicas again after a pause.
			if err := retry.Wait(ctx); err != nil {
				return 0, fmt.Errorf("tessctl: range %d has no leader: %w (last error: %v)", rangeID, err, lastErr)
			}
			for _, n := range ri.nodes() {
				resp, err := callInternal(ctx, view, n, func(c tesserapb.InternalClient) (*tesserapb.TransferLeaderResponse, error) {
					return c.TransferLeader(ctx, &tesserapb.TransferLeaderRequest{RangeId: rangeID, TargetNode: to})
				})
				if err == nil && resp.GetRoutingError() == nil {
					return to, nil
				}
				if h := resp.GetRoutingError().GetLeaderNode(); h != 0 {
					leader = h
					break
				}
				if err != nil {
					lastErr = err
				}
			}
			continue
		}
		resp, err := callInternal(ctx, view, leader, func(c tesserapb.InternalClient) (*tesserapb.TransferLeaderResponse, error) {
			return c.TransferLeader(ctx, &tesserapb.TransferLeaderRequest{RangeId: rangeID, TargetNode: to})
		})
		if err != nil {
			return 0, fmt.Errorf("tessctl: transfer range %d to node %d via node %d: %w", rangeID, to, leader, err)
		}
		re := resp.GetRoutingError()
		if re == nil {
			return to, nil
		}
		lastErr = fmt.Errorf("node %d: %s: %s", leader, re.GetCode(), re.GetMessage())
		if re.GetCode() != tesserapb.RoutingError_NOT_LEADER {
			return 0, fmt.Errorf("tessctl: transfer range %d: %w", rangeID, lastErr)
		}
		leader = re.GetLeaderNode()
	}
}

// callInternal calls the Internal service of member id on its peer URL.
func callInternal[T any](ctx context.Context, view *clusterView, id uint64, fn func(tesserapb.InternalClient) (T, error)) (T, error) {
	var zero T
	var m *member
	for i := range view.reports {
		if view.reports[i].member.ID == id {
			m = &view.reports[i].member
		}
	}
	if m == nil {
		return zero, fmt.Errorf("member %d is not in the member list", id)
	}
	conn, err := dialMember(view.tls, *m)
	if err != nil {
		return zero, err
	}
	defer conn.Close()
	return fn(tesserapb.NewInternalClient(conn))
}

// dialMember connects to a member's first peer URL: Tessera serves its
// Internal service (replicas, hashes, leader transfers) on the peer port
// only, never to clients (docs/decisions.md, "Listeners").
func dialMember(tlsConf *tls.Config, m member) (*grpc.ClientConn, error) {
	if len(m.PeerURLs) == 0 {
		return nil, errNoPeerURL
	}
	u, err := url.Parse(m.PeerURLs[0])
	if err != nil {
		return nil, err
	}
	creds, err := grpcCreds(u.Scheme, tlsConf)
	if err != nil {
		return nil, fmt.Errorf("peer URL %s: %w", m.PeerURLs[0], err)
	}
	conn, err := grpc.NewClient(u.Host, creds)
	if err != nil {
		return nil, fmt.Errorf("dial member %d at %s: %w", m.ID, u.Host, err)
	}
	return conn, nil
}
