package placement

import (
	"cmp"
	"fmt"
	"net/url"
	"slices"
	"sync"

	"google.golang.org/grpc"

	"github.com/tesseradb/tessera/proto/tesserapb"
	"github.com/tesseradb/tessera/raftgroup"
)

// Nodes knows the cluster's nodes and keeps one gRPC connection per peer
// (its peer URL serves the raft transport and the Internal service).
type Nodes struct {
	self raftgroup.NodeID
	opts []grpc.DialOption

	mu struct {
		sync.Mutex
		nodes map[raftgroup.NodeID]*tesserapb.NodeDescriptor
		conns map[raftgroup.NodeID]*grpc.ClientConn
	}
}

// NewNodes returns a registry of the given nodes.
func NewNodes(self raftgroup.NodeID, nodes []*tesserapb.NodeDescriptor, opts ...grpc.DialOption) *Nodes {
	n := &Nodes{self: self, opts: opts}
	n.mu.nodes = make(map[raftgroup.NodeID]*tesserapb.NodeDescriptor)
	n.mu.conns = make(map[raftgroup.NodeID]*grpc.ClientConn)
	for _, d := range nodes {
		n.mu.nodes[raftgroup.NodeID(d.GetNodeId())] = d
	}
	return n
}

// Self returns this node's id.
func (n *Nodes) Self() raftgroup.NodeID { return n.self }

// List returns every node.
func (n *Nodes) List() []*tesserapb.NodeDescriptor {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make([]*tesserapb.NodeDescriptor, 0, len(n.mu.nodes))
	for _, d := range n.mu.nodes {
		out = append(out, d)
	}
	// By id; ids have gaps once nodes are removed (nodes_sync.go).
	slices.SortFunc(out, func(a, b *tesserapb.NodeDescriptor) int { return cmp.Compare(a.GetNodeId(), b.GetNodeId()) })
	return out
}

// PeerAddr returns the host:port of a node's peer URL.
func (n *Nodes) PeerAddr(id raftgroup.NodeID) (string, error) {
	n.mu.Lock()
	d, ok := n.mu.nodes[id]
	n.mu.Unlock()
	if !ok {
		return "", fmt.Errorf("placement: unknown node %s", id)
	}
	u, err := url.Parse(d.GetPeerUrl())
	if err != nil {
		return "", fmt.Errorf("placement: node %s peer URL %q: %w", id, d.GetPeerUrl(), err)
	}
	return u.Host, nil
}

// Conn returns the connection to a node's peer port.
func (n *Nodes) Conn(id raftgroup.NodeID) (*grpc.ClientConn, error) {
	n.mu.Lock()
	c := n.mu.conns[id]
	n.mu.Unlock()
	if c != nil {
		return c, nil
	}
	addr, err := n.PeerAddr(id)
	if err != nil {
		return nil, err
	}
	c, err = grpc.NewClient(addr, n.opts...)
	if err != nil {
		return nil, fmt.Errorf("placement: dial %s at %s: %w", id, addr, err)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if old := n.mu.conns[id]; old != nil {
		_ = c.Close()
		return old, nil
	}
	n.mu.conns[id] = c
	return c, nil
}

// Close closes every connection.
func (n *Nodes) Close() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for id, c := range n.mu.conns {
		_ = c.Close()
		delete(n.mu.conns, id)
	}
}
