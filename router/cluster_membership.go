package router

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/tesseradb/tessera/placement"
	"github.com/tesseradb/tessera/proto/tesserapb"
	"github.com/tesseradb/tessera/raftgroup"
	"github.com/tesseradb/tessera/shard"
)

// MembershipConfig wires the Membership service.
type MembershipConfig struct {
	// Meta is this node's meta replica (nil on a node without one).
	Meta *placement.Meta
	// Nodes is the peer registry (forwarding to the meta group).
	Nodes *placement.Nodes
	// MetaNodes are the nodes holding meta replicas (where to forward).
	MetaNodes func() []raftgroup.NodeID
	// Bootstrap is the cluster's bootstrap record (given to joining nodes).
	Bootstrap func() *tesserapb.ClusterBootstrap
	// Directory lists the range descriptors this node knows (the meta
	// group's included): where replicas are, for removals and snapshots.
	Directory func() []*tesserapb.RangeDescriptor
	// Liveness: heartbeats and liveness on the meta leader.
	Liveness *placement.Liveness
}

// Membership serves tesserapb.Membership on the peer port: the node table
// lives in the meta group, so changes, table reads, heartbeats and node
// listings run on its leader; any other node forwards them (one hop, or two
// from a node without a meta replica: to a meta replica, which forwards to
// its leader).
type Membership struct {
	tesserapb.UnimplementedMembershipServer
	cfg MembershipConfig
}

// NewMembership returns the service.
func NewMembership(cfg MembershipConfig) *Membership { return &Membership{cfg: cfg} }

// forwardedKey marks a forwarded call, so that it is forwarded at most
// twice (a meta replica forwards to its leader only).
const forwardedKey = "tessera-membership-hops"

func (m *Membership) leads() bool { return m.cfg.Meta != nil && m.cfg.Meta.IsLeader() }

// forward runs call on the meta leader (or a meta replica that knows it).
func (m *Membership) forward(ctx context.Context, call func(context.Context, tesserapb.MembershipClient) error) error {
	hops := 0
	if md, ok := metadata.FromIncomingContext(ctx); ok && len(md.Get(forwardedKey)) > 0 {
		hops = len(md.Get(forwardedKey)[0])
	}
	var targets []raftgroup.NodeID
	self := m.cfg.Nodes.Self()
	if m.cfg.Meta != nil {
		if l := m.cfg.Meta.Leader(); l != 0 && l != self {
			targets = append(targets, l)
		}
	} else if hops == 0 {
		for _, id := range m.cfg.MetaNodes() {
			if id != self {
				targets = append(targets, id)
			}
		}
	}
	if len(targets) == 0 || hops >= 2 {
		return rpctypes.ErrGRPCNoLeader
	}
	out := metadata.AppendToOutgoingContext(ctx, forwardedKey, strings.Repeat("x", hops+1))
	var last error
	for _, id := range targets {
		conn, err := m.cfg.Nodes.Conn(id)
		if err != nil {
			last = err
			continue
		}
		err = call(out, tesserapb.NewMembershipClient(conn))
		if err == nil {
			return nil
		}
		last = err
		if c := status.Code(err); c != codes.Unavailable && !errors.Is(err, rpctypes.ErrGRPCNoLeader) && !errors.Is(err, rpctypes.ErrGRPCNotLeader) {
			return err
		}
	}
	return last
}

// ChangeNode implements tesserapb.MembershipServer.
func (m *Membership) ChangeNode(ctx context.Context, req *tesserapb.NodeChangeRequest) (*tesserapb.NodeChangeResponse, error) {
	if !m.leads() {
		var resp *tesserapb.NodeChangeResponse
		err := m.forward(ctx, func(ctx context.Context, c tesserapb.MembershipClient) (err error) {
			resp, err = c.ChangeNode(ctx, req)
			return err
		})
		return resp, err
	}
	c := req.GetChange()
	if c.GetOp() == tesserapb.NodeChange_REMOVE {
		if ranges := m.holdings(raftgroup.NodeID(c.GetNodeId())); len(ranges) > 0 {
			return nil, status.Errorf(codes.FailedPrecondition, "tessera: node %d still holds replicas of ranges %s; drain it first (replica moves are not built yet)", c.GetNodeId(), rangeList(ranges))
		}
	}
	if c.GetOp() == tesserapb.NodeChange_PROMOTE {
		if err := m.learnerReady(raftgroup.NodeID(c.GetNodeId())); err != nil {
			return nil, err
		}
	}
	node, nodes, err := m.cfg.Meta.ChangeNode(ctx, c)
	if err != nil {
		return nil, toGRPC(err)
	}
	return &tesserapb.NodeChangeResponse{Node: node, Nodes: nodes}, nil
}

// learnerReady refuses, as etcd does, to promote a learner that is not "in
// sync with the leader": here, one that has not started (joined and
// published its name) or is not live. Unknown nodes and voters are left to
// the node table's own answers.
func (m *Membership) learnerReady(id raftgroup.NodeID) error {
	for _, r := range m.cfg.Meta.NodeTable() {
		if raftgroup.NodeID(r.GetNodeId()) != id || r.GetState() == tesserapb.NodeRecord_REMOVED || !r.GetIsLearner() {
			continue
		}
		if r.GetName() == "" {
			return rpctypes.ErrGRPCLearnerNotReady
		}
		if m.cfg.Liveness != nil {
			for _, n := range m.Snapshot().Nodes {
				if raftgroup.NodeID(n.Record.GetNodeId()) == id && n.Liveness != placement.Live {
					return rpctypes.ErrGRPCLearnerNotReady
				}
			}
		}
	}
	return nil
}

func toGRPC(err error) error {
	if _, ok := status.FromError(err); ok {
		return err
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return rpctypes.ErrGRPCTimeout
	}
	return status.Error(codes.Unavailable, err.Error())
}

func rangeList(ids []uint64) string {
	const show = 10
	var b strings.Builder
	for i, id := range ids {
		if i == show {
			fmt.Fprintf(&b, " and %d more", len(ids)-show)
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprint(&b, id)
	}
	return b.String()
}

// holdings lists the ranges with a replica on node id: from the range
// directory and from the node's own last heartbeat.
func (m *Membership) holdings(id raftgroup.NodeID) []uint64 {
	var out []uint64
	for _, d := range m.cfg.Directory() {
		if shard.HasReplicaOn(d, id) {
			out = append(out, d.GetRangeId())
		}
	}
	if m.cfg.Liveness != nil {
		for _, r := range m.cfg.Liveness.Snapshot(nil, nil).Ranges {
			if shard.HasReplicaOn(r.Descriptor, id) {
				out = append(out, r.Descriptor.GetRangeId())
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// NodeTable implements tesserapb.MembershipServer: the meta leader's table
// and the bootstrap record.
func (m *Membership) NodeTable(ctx context.Context, req *tesserapb.NodeTableRequest) (*tesserapb.NodeTableResponse, error) {
	if !m.leads() {
		var resp *tesserapb.NodeTableResponse
		err := m.forward(ctx, func(ctx context.Context, c tesserapb.MembershipClient) (err error) {
			resp, err = c.NodeTable(ctx, req)
			return err
		})
		return resp, err
	}
	return &tesserapb.NodeTableResponse{Nodes: m.cfg.Meta.NodeTable(), Bootstrap: m.cfg.Bootstrap()}, nil
}

// Heartbeat implements tesserapb.MembershipServer.
func (m *Membership) Heartbeat(ctx context.Context, req *tesserapb.NodeHeartbeat) (*tesserapb.NodeHeartbeatResponse, error) {
	if !m.leads() || m.cfg.Liveness == nil {
		var resp *tesserapb.NodeHeartbeatResponse
		err := m.forward(ctx, func(ctx context.Context, c tesserapb.MembershipClient) (err error) {
			resp, err = c.Heartbeat(ctx, req)
			return err
		})
		return resp, err
	}
	if req.GetNodeId() == 0 {
		return nil, status.Error(codes.InvalidArgument, "tessera: heartbeat without a node id")
	}
	m.cfg.Liveness.Heartbeat(req)
	return &tesserapb.NodeHeartbeatResponse{}, nil
}

// Nodes implements tesserapb.MembershipServer: every node with its
// liveness, replicas, leaders and bytes, as the placement driver sees them.
func (m *Membership) Nodes(ctx context.Context, req *tesserapb.NodesRequest) (*tesserapb.NodesResponse, error) {
	if !m.leads() || m.cfg.Liveness == nil {
		var resp *tesserapb.NodesResponse
		err := m.forward(ctx, func(ctx context.Context, c tesserapb.MembershipClient) (err error) {
			resp, err = c.Nodes(ctx, req)
			return err
		})
		return resp, err
	}
	snap := m.Snapshot()
	resp := &tesserapb.NodesResponse{LeaderNode: uint64(m.cfg.Nodes.Self())}
	for _, n := range snap.Nodes {
		age := int64(-1)
		if n.HeartbeatAge >= 0 {
			age = n.HeartbeatAge.Milliseconds()
		}
		resp.Nodes = append(resp.Nodes, &tesserapb.NodeInfo{
			Node: n.Record, Liveness: n.Liveness, Gossip: n.Gossip, HeartbeatAgeMs: age,
			Replicas: uint32(n.Replicas), Leaders: uint32(n.Leaders), Bytes: n.Bytes,
		})
	}
	return resp, nil
}

// Snapshot is the cluster snapshot the scheduler decides from (valid on
// the meta leader: nodes with liveness, ranges with replicas, leader, size
// and load).
func (m *Membership) Snapshot() placement.ClusterSnapshot {
	var table []*tesserapb.NodeRecord
	if m.cfg.Meta != nil {
		table = m.cfg.Meta.NodeTable()
	}
	return m.cfg.Liveness.Snapshot(table, m.cfg.Directory())
}

// errNoMembership: the Cluster service was built without the node table.
var errNoMembership = status.Error(codes.Unimplemented, "tessera: membership changes are not served by this node")
