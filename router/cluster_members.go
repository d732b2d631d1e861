package router

import (
	"context"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/tesseradb/tessera/proto/tesserapb"
	"github.com/tesseradb/tessera/raftgroup"
)

// members turns node-table records into etcd members, removed nodes left
// out. An unstarted node (added, not yet joined) has no name and no client
// URLs, as in etcd; a started one that has not published its client URLs
// yet is asked for them.
func (c *Cluster) members(ctx context.Context, table []*tesserapb.NodeRecord) []*pb.Member {
	var out []*pb.Member
	for _, r := range table {
		if r.GetState() == tesserapb.NodeRecord_REMOVED {
			continue
		}
		m := memberOf(r)
		if len(m.ClientURLs) == 0 && m.Name != "" {
			m.ClientURLs = c.askClientURLs(ctx, raftgroup.NodeID(r.GetNodeId()))
		}
		out = append(out, m)
	}
	return out
}

func memberOf(r *tesserapb.NodeRecord) *pb.Member {
	return &pb.Member{ID: r.GetNodeId(), Name: r.GetName(), PeerURLs: r.GetPeerUrls(), ClientURLs: r.GetClientUrls(), IsLearner: r.GetIsLearner()}
}

func (c *Cluster) change(ctx context.Context, ch *tesserapb.NodeChange) (*tesserapb.NodeChangeResponse, error) {
	if c.Membership == nil {
		return nil, errNoMembership
	}
	return c.Membership.ChangeNode(ctx, &tesserapb.NodeChangeRequest{Change: ch})
}

// MemberAdd adds a node to the node table (etcd's member add): it gets a
// new id, and starts with --initial-cluster-state existing.
func (c *Cluster) MemberAdd(ctx context.Context, req *pb.MemberAddRequest) (*pb.MemberAddResponse, error) {
	resp, err := c.change(ctx, &tesserapb.NodeChange{Op: tesserapb.NodeChange_ADD, PeerUrls: req.GetPeerURLs(), IsLearner: req.GetIsLearner()})
	if err != nil {
		return nil, err
	}
	return &pb.MemberAddResponse{Header: c.header(), Member: memberOf(resp.GetNode()), Members: c.members(ctx, resp.GetNodes())}, nil
}

// MemberRemove removes a node (refused while it holds replicas).
func (c *Cluster) MemberRemove(ctx context.Context, req *pb.MemberRemoveRequest) (*pb.MemberRemoveResponse, error) {
	resp, err := c.change(ctx, &tesserapb.NodeChange{Op: tesserapb.NodeChange_REMOVE, NodeId: req.GetID()})
	if err != nil {
		return nil, err
	}
	return &pb.MemberRemoveResponse{Header: c.header(), Members: c.members(ctx, resp.GetNodes())}, nil
}

// MemberUpdate changes a node's peer URLs.
func (c *Cluster) MemberUpdate(ctx context.Context, req *pb.MemberUpdateRequest) (*pb.MemberUpdateResponse, error) {
	resp, err := c.change(ctx, &tesserapb.NodeChange{Op: tesserapb.NodeChange_UPDATE, NodeId: req.GetID(), PeerUrls: req.GetPeerURLs()})
	if err != nil {
		return nil, err
	}
	return &pb.MemberUpdateResponse{Header: c.header(), Members: c.members(ctx, resp.GetNodes())}, nil
}

// MemberPromote makes a learner a voter.
func (c *Cluster) MemberPromote(ctx context.Context, req *pb.MemberPromoteRequest) (*pb.MemberPromoteResponse, error) {
	resp, err := c.change(ctx, &tesserapb.NodeChange{Op: tesserapb.NodeChange_PROMOTE, NodeId: req.GetID()})
	if err != nil {
		return nil, err
	}
	return &pb.MemberPromoteResponse{Header: c.header(), Members: c.members(ctx, resp.GetNodes())}, nil
}
