package server

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/tesseradb/tessera/placement"
	"github.com/tesseradb/tessera/proto/tesserapb"
	"github.com/tesseradb/tessera/raftgroup"
)

// joinCluster is --initial-cluster-state existing on an empty data dir, the
// etcd way: the node was added with `etcdctl member add NAME
// --peer-urls=URL`; it asks the members of --initial-cluster (their peer
// URLs) for the node table and the cluster's bootstrap record, finds itself
// by its advertised peer URL, checks that --initial-cluster names the
// cluster's members, and returns the layout to record: the cluster's, with
// the node table as it is now. The node then starts with no replicas
// (replica moves give it some). Nothing is written before every check
// passed.
func (s *Server) joinCluster(nodes []*tesserapb.NodeDescriptor) (*tesserapb.ClusterBootstrap, error) {
	if len(s.cfg.InitialAdvertisePeerURLs) == 0 {
		return nil, errors.New("server: --initial-cluster-state existing needs --initial-advertise-peer-urls")
	}
	selfURL := s.cfg.InitialAdvertisePeerURLs[0]
	dial, err := s.peerDialOption()
	if err != nil {
		return nil, err
	}
	timeout := s.cfg.Members.JoinTimeout
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	resp, err := fetchNodeTable(ctx, nodes, s.cfg.Name, selfURL, dial)
	if err != nil {
		return nil, err
	}
	b, self, err := joinLayout(resp, nodes, s.cfg.Name, selfURL)
	if err != nil {
		return nil, err
	}
	s.log.Info("joining an existing cluster", "cluster-id", fmt.Sprintf("%x", b.GetClusterId()), "member-id", self, "members", len(b.GetNodes()))
	return b, nil
}

// fetchNodeTable asks the other members of --initial-cluster for the node
// table, until one answers or ctx ends.
func fetchNodeTable(ctx context.Context, nodes []*tesserapb.NodeDescriptor, name, selfURL string, dial grpc.DialOption) (*tesserapb.NodeTableResponse, error) {
	var errs []string
	for attempt := 0; ; attempt++ {
		for _, n := range nodes {
			if n.GetName() == name || n.GetPeerUrl() == selfURL {
				continue
			}
			u, err := url.Parse(n.GetPeerUrl())
			if err != nil {
				return nil, fmt.Errorf("server: --initial-cluster URL %q: %w", n.GetPeerUrl(), err)
			}
			conn, err := grpc.NewClient(u.Host, dial)
			if err != nil {
				return nil, fmt.Errorf("server: dial member %s at %s: %w", n.GetName(), u.Host, err)
			}
			cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			resp, err := tesserapb.NewMembershipClient(conn).NodeTable(cctx, &tesserapb.NodeTableRequest{})
			cancel()
			_ = conn.Close()
			if err == nil && resp.GetBootstrap() != nil {
				return resp, nil
			}
			if err != nil && attempt == 0 {
				errs = append(errs, fmt.Sprintf("%s (%s): %v", n.GetName(), n.GetPeerUrl(), err))
			}
		}
		if len(errs) == 0 && attempt == 0 {
			return nil, errors.New("server: --initial-cluster-state existing: --initial-cluster names no other member to join")
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("server: --initial-cluster-state existing: no member of --initial-cluster answered with the cluster's node table: %s", strings.Join(errs, "; "))
		case <-time.After(500 * time.Millisecond): // retry interval while members start
		}
	}
}

// joinLayout checks a joining node against the cluster's node table and
// returns the bootstrap record it will keep and its node id. Refused: no
// member has the node's peer URL (not added, or another cluster), the member
// with it already started under another name, another member already has
// the node's name, or --initial-cluster does not list the cluster's members.
func joinLayout(resp *tesserapb.NodeTableResponse, initial []*tesserapb.NodeDescriptor, name, selfURL string) (*tesserapb.ClusterBootstrap, raftgroup.NodeID, error) {
	var active []*tesserapb.NodeRecord
	for _, r := range resp.GetNodes() {
		if r.GetState() != tesserapb.NodeRecord_REMOVED {
			active = append(active, r)
		}
	}
	var self *tesserapb.NodeRecord
	for _, r := range active {
		if slices.Contains(r.GetPeerUrls(), selfURL) {
			self = r
		}
	}
	if self == nil {
		return nil, 0, fmt.Errorf("server: --initial-cluster-state existing: the cluster has no member with peer URL %s (add it first: etcdctl member add %s --peer-urls=%s; or --initial-cluster names another cluster)", selfURL, name, selfURL)
	}
	if self.GetName() != "" && self.GetName() != name {
		return nil, 0, fmt.Errorf("server: --initial-cluster-state existing: the member with peer URL %s is named %q, not %q", selfURL, self.GetName(), name)
	}
	for _, r := range active {
		if r != self && r.GetName() == name {
			return nil, 0, fmt.Errorf("server: --initial-cluster-state existing: member %d already has the name %q", r.GetNodeId(), name)
		}
	}
	// --initial-cluster must list the cluster's members (etcd's check).
	for _, n := range initial {
		found := false
		for _, r := range active {
			if slices.Contains(r.GetPeerUrls(), n.GetPeerUrl()) && (r.GetName() == "" || r.GetName() == n.GetName() || r == self) {
				found = true
			}
		}
		if !found {
			return nil, 0, fmt.Errorf("server: --initial-cluster-state existing: --initial-cluster has %s=%s, which is not a member of the cluster", n.GetName(), n.GetPeerUrl())
		}
	}
	if len(initial) != len(active) {
		return nil, 0, fmt.Errorf("server: --initial-cluster-state existing: --initial-cluster lists %d members, the cluster has %d", len(initial), len(active))
	}
	b := proto.Clone(resp.GetBootstrap()).(*tesserapb.ClusterBootstrap)
	b.Nodes = nil
	for _, r := range active {
		d := placement.Descriptor(r)
		d.ClientUrl = ""
		if r == self {
			d.Name = name
		}
		b.Nodes = append(b.Nodes, d)
	}
	return b, raftgroup.NodeID(self.GetNodeId()), nil
}

// selfInLayout is this node's id in its bootstrap record, by name: a joined
// node's id was allocated by the cluster, not its place in --initial-cluster.
func selfInLayout(b *tesserapb.ClusterBootstrap, name string, dflt raftgroup.NodeID) raftgroup.NodeID {
	for _, n := range b.GetNodes() {
		if n.GetName() == name {
			return raftgroup.NodeID(n.GetNodeId())
		}
	}
	return dflt
}
