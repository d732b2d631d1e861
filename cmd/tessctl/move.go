package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tesseradb/tessera/internal/backoff"
	"github.com/tesseradb/tessera/proto/tesserapb"
)

func rangeMoveCmd(g *globalFlags) *cobra.Command {
	var from, to uint64
	cmd := &cobra.Command{
		Use:   "move ID --from N --to M",
		Short: "Move range ID's replica from node N to node M",
		Long: `move moves one replica of a range from node N to node M through the range's
raft log, one configuration change at a time: add a learner on M (raft sends
it a snapshot), transfer leadership off N if N leads, promote M and demote N
in one joint change, leave the joint configuration, remove N's learner, and
have N destroy its replica. Each step is asked of the range's leader. A move
that was interrupted is finished: run the same command again. It exits
non-zero with the server's reason when a step is refused.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var id uint64
			if _, err := fmt.Sscanf(args[0], "%d", &id); err != nil || id == 0 {
				return fmt.Errorf("tessctl: range move: bad range id %q", args[0])
			}
			if from == 0 || to == 0 || from == to {
				return errors.New("tessctl: range move needs --from and --to, two different nodes")
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
			if ri == nil {
				return fmt.Errorf("tessctl: no member reports range %d", id)
			}
			d, err := moveReplica(cmd.Context(), g, view, ri, from, to, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			format, _ := parseFormat(g.writeOut)
			if format == formatJSON {
				return writeJSON(cmd.OutOrStdout(), descInfo(d))
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "moved range %d from node %d to node %d\n", id, from, to)
			tw := newTable(out)
			fmt.Fprintln(tw, "RANGE\tSPAN\tGENERATION\tREPLICAS")
			fmt.Fprintf(tw, "%d\t%s\t%d\t%s\n", d.GetRangeId(), formatSpan(d.GetStartKey(), d.GetEndKey()), d.GetGeneration(), joinReplicas(replicaRefs(d)))
			return tw.Flush()
		},
	}
	cmd.Flags().Uint64Var(&from, "from", 0, "the node id the replica leaves")
	cmd.Flags().Uint64Var(&to, "to", 0, "the node id the replica goes to")
	return cmd
}

// moveReplica drives the steps of a move, each on the range's leader,
// deciding the next step from the descriptor the last one returned, so an
// interrupted move is resumed where it stopped.
func moveReplica(ctx context.Context, g *globalFlags, view *clusterView, ri *rangeInfo, from, to uint64, progress io.Writer) (*tesserapb.RangeDescriptor, error) {
	typeOf := func(d *tesserapb.RangeDescriptor, n uint64) (tesserapb.ReplicaType, bool) {
		for _, r := range d.GetReplicas() {
			if r.GetNodeId() == n {
				return r.GetType(), true
			}
		}
		return 0, false
	}
	// The descriptor as the members reported it; every step returns the
	// new one.
	d := &tesserapb.RangeDescriptor{RangeId: ri.ID, Generation: ri.Generation, StartKey: ri.StartKey, EndKey: ri.EndKey}
	for _, r := range ri.Replicas {
		typ := tesserapb.ReplicaType_VOTER
		if r.Type == "learner" {
			typ = tesserapb.ReplicaType_LEARNER
		}
		d.Replicas = append(d.Replicas, &tesserapb.ReplicaDescriptor{NodeId: r.Node, ReplicaId: r.Replica, Type: typ})
	}
	if _, ok := typeOf(d, from); !ok {
		return nil, fmt.Errorf("tessctl: node %d holds no replica of range %d", from, ri.ID)
	}
	step := func(what string, req *tesserapb.ChangeReplicasRequest) (*tesserapb.ChangeReplicasResponse, error) {
		fmt.Fprintf(progress, "range %d: %s\n", ri.ID, what)
		req.RangeId = ri.ID
		return adminLeaderCall(ctx, g, view, ri, what, req)
	}
	if _, ok := typeOf(d, to); !ok {
		resp, err := step(fmt.Sprintf("add learner on node %d", to), &tesserapb.ChangeReplicasRequest{AddLearner: to})
		if err != nil {
			return nil, err
		}
		d = resp.GetDescriptor_()
	}
	if t, _ := typeOf(d, from); t == tesserapb.ReplicaType_VOTER {
		if tt, _ := typeOf(d, to); tt == tesserapb.ReplicaType_LEARNER {
			// The leader must not demote itself: hand leadership to
			// another voter first.
			if ri.Leader == from {
				var target uint64
				for _, r := range d.GetReplicas() {
					if r.GetNodeId() != from && r.GetType() == tesserapb.ReplicaType_VOTER {
						target = r.GetNodeId()
						break
					}
				}
				if target == 0 {
					return nil, fmt.Errorf("tessctl: range %d has no other voter to lead while node %d is demoted", ri.ID, from)
				}
				fmt.Fprintf(progress, "range %d: transfer leadership from node %d to node %d\n", ri.ID, from, target)
				if _, err := transferLeader(ctx, g, view, ri.ID, target); err != nil {
					return nil, err
				}
				ri.Leader = target
			}
			resp, err := step(fmt.Sprintf("promote node %d, demote node %d (joint)", to, from), &tesserapb.ChangeReplicasRequest{Promote: to, Demote: from})
			if err != nil {
				return nil, err
			}
			d = resp.GetDescriptor_()
		}
	}
	// Leave the joint configuration (also one an interrupted move left).
	resp, err := step("leave joint configuration", &tesserapb.ChangeReplicasRequest{LeaveJoint: true})
	switch {
	case err == nil:
		d = resp.GetDescriptor_()
	case errors.Is(err, errNotJoint):
	default:
		return nil, err
	}
	if t, ok := typeOf(d, from); ok && t == tesserapb.ReplicaType_LEARNER {
		resp, err := step(fmt.Sprintf("remove node %d's learner", from), &tesserapb.ChangeReplicasRequest{RemoveLearner: from})
		if err != nil {
			return nil, err
		}
		d = resp.GetDescriptor_()
	}
	// The removed replica may have missed its own removal: tell it.
	if _, err := callAdmin(ctx, view, from, &tesserapb.ChangeReplicasRequest{RangeId: ri.ID, GcDescriptor: d}); err != nil {
		fmt.Fprintf(progress, "range %d: node %d could not be told to destroy its replica (it is told again by the next move or GC): %v\n", ri.ID, from, err)
	}
	return d, nil
}

// errNotJoint: a LeaveJoint step found no joint configuration to leave.
var errNotJoint = errors.New("tessctl: not in a joint configuration")

// adminLeaderCall asks the range's leader for one step, following
// NOT_LEADER hints and waiting out an election; a refusal ends it with the
// server's reason.
func adminLeaderCall(ctx context.Context, g *globalFlags, view *clusterView, ri *rangeInfo, what string, req *tesserapb.ChangeReplicasRequest) (*tesserapb.ChangeReplicasResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, g.commandTimeout)
	defer cancel()
	leader := ri.Leader
	retry := backoff.New(noLeaderBackoff)
	tried := map[uint64]bool{}
	for {
		if leader == 0 || tried[leader] && len(tried) > len(ri.Replicas) {
			if err := retry.Wait(ctx); err != nil {
				return nil, fmt.Errorf("tessctl: %s of range %d: no leader answered: %w", what, ri.ID, err)
			}
			clear(tried)
			if leader == 0 && len(ri.Replicas) > 0 {
				leader = ri.Replicas[0].Node
			}
		}
		tried[leader] = true
		resp, err := callAdmin(ctx, view, leader, req)
		if err != nil {
			if s, ok := status.FromError(err); ok && s.Code() != codes.Unavailable {
				if req.GetLeaveJoint() && s.Code() == codes.FailedPrecondition {
					return nil, fmt.Errorf("%w: %s", errNotJoint, s.Message())
				}
				return nil, fmt.Errorf("tessctl: %s of range %d refused by node %d: %s", what, ri.ID, leader, s.Message())
			}
			leader = nextNode(ri, leader)
			continue
		}
		re := resp.GetRoutingError()
		if re == nil {
			ri.Leader = leader
			return resp, nil
		}
		if re.GetCode() != tesserapb.RoutingError_NOT_LEADER && re.GetCode() != tesserapb.RoutingError_RANGE_NOT_FOUND {
			return nil, fmt.Errorf("tessctl: %s of range %d: node %d: %s: %s", what, ri.ID, leader, re.GetCode(), re.GetMessage())
		}
		if h := re.GetLeaderNode(); h != 0 && h != leader {
			leader = h
		} else {
			leader = nextNode(ri, leader)
		}
	}
}

// nextNode is the replica after n in the range's list (round robin).
func nextNode(ri *rangeInfo, n uint64) uint64 {
	for i, r := range ri.Replicas {
		if r.Node == n {
			return ri.Replicas[(i+1)%len(ri.Replicas)].Node
		}
	}
	if len(ri.Replicas) == 0 {
		return 0
	}
	return ri.Replicas[0].Node
}

// callAdmin calls the Admin service of member id on its peer URL.
func callAdmin(ctx context.Context, view *clusterView, id uint64, req *tesserapb.ChangeReplicasRequest) (*tesserapb.ChangeReplicasResponse, error) {
	var m *member
	for i := range view.reports {
		if view.reports[i].member.ID == id {
			m = &view.reports[i].member
		}
	}
	if m == nil {
		return nil, fmt.Errorf("member %d is not in the member list", id)
	}
	conn, err := dialMember(view.tls, *m)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return tesserapb.NewAdminClient(conn).ChangeReplicas(ctx, req)
}
