package router

import (
	"context"
	"fmt"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/tesseradb/tessera/proto/tesserapb"
	"github.com/tesseradb/tessera/raftgroup"
)

// Cluster serves etcd's Cluster service: members are Tessera's nodes, their
// member id is the node id (cluster_members.go has the changes).
type Cluster struct {
	pb.UnimplementedClusterServer
	r         *Router
	clusterID uint64
	internal  *Internal
	// Membership, when set, serves the node table (cluster_members.go);
	// without it MemberList lists the peer registry.
	Membership *Membership
}

// NewCluster returns the Cluster service.
func NewCluster(r *Router, clusterID uint64, internal *Internal) *Cluster {
	return &Cluster{r: r, clusterID: clusterID, internal: internal}
}

// MemberList lists every node of the node table (the peer registry when
// the table cannot be read) with the URLs it advertises; a node that has
// not published its client URLs yet is asked for them.
func (c *Cluster) MemberList(ctx context.Context, _ *pb.MemberListRequest) (*pb.MemberListResponse, error) {
	resp := &pb.MemberListResponse{Header: c.header()}
	if c.Membership != nil {
		if t, err := c.Membership.NodeTable(ctx, &tesserapb.NodeTableRequest{}); err == nil {
			resp.Members = c.members(ctx, t.GetNodes())
			return resp, nil
		}
	}
	for _, n := range c.r.nodes.List() {
		m := &pb.Member{ID: n.GetNodeId(), Name: n.GetName(), PeerURLs: []string{n.GetPeerUrl()}}
		m.ClientURLs = c.askClientURLs(ctx, raftgroup.NodeID(n.GetNodeId()))
		resp.Members = append(resp.Members, m)
	}
	if len(resp.Members) == 0 {
		return nil, fmt.Errorf("router: no members")
	}
	return resp, nil
}

func (c *Cluster) header() *pb.ResponseHeader {
	h := c.r.header(0)
	h.ClusterId = c.clusterID
	return h
}

// askClientURLs asks a node for the client URLs it advertises.
func (c *Cluster) askClientURLs(ctx context.Context, id raftgroup.NodeID) []string {
	var info *tesserapb.RangesResponse
	if id == c.r.nodes.Self() {
		info, _ = c.internal.Ranges(ctx, nil)
	} else if conn, err := c.r.nodes.Conn(id); err == nil {
		info, _ = tesserapb.NewInternalClient(conn).Ranges(ctx, &tesserapb.RangesRequest{})
	}
	return info.GetClientUrls()
}
