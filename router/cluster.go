package router

import (
	"context"
	"fmt"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/tesseradb/tessera/proto/tesserapb"
	"github.com/tesseradb/tessera/raftgroup"
)

// Cluster serves etcd's Cluster.MemberList (membership changes come with
// the placement driver's node management, later).
type Cluster struct {
	pb.UnimplementedClusterServer
	r         *Router
	clusterID uint64
	internal  *Internal
}

// NewCluster returns the Cluster service.
func NewCluster(r *Router, clusterID uint64, internal *Internal) *Cluster {
	return &Cluster{r: r, clusterID: clusterID, internal: internal}
}

// MemberList lists every node with the URLs it advertises (asked of each
// node; a node that does not answer is listed without client URLs).
func (c *Cluster) MemberList(ctx context.Context, _ *pb.MemberListRequest) (*pb.MemberListResponse, error) {
	resp := &pb.MemberListResponse{Header: c.r.header(0)}
	resp.Header.ClusterId = c.clusterID
	for _, n := range c.r.nodes.List() {
		m := &pb.Member{ID: n.GetNodeId(), Name: n.GetName(), PeerURLs: []string{n.GetPeerUrl()}}
		var info *tesserapb.RangesResponse
		if raftgroup.NodeID(n.GetNodeId()) == c.r.nodes.Self() {
			info, _ = c.internal.Ranges(ctx, nil)
		} else if conn, err := c.r.nodes.Conn(raftgroup.NodeID(n.GetNodeId())); err == nil {
			info, _ = tesserapb.NewInternalClient(conn).Ranges(ctx, &tesserapb.RangesRequest{})
		}
		if info != nil {
			m.ClientURLs = info.GetClientUrls()
		}
		resp.Members = append(resp.Members, m)
	}
	if len(resp.Members) == 0 {
		return nil, fmt.Errorf("router: no members")
	}
	return resp, nil
}
