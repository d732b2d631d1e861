package placement

import (
	"github.com/tesseradb/tessera/proto/tesserapb"
	"github.com/tesseradb/tessera/raftgroup"
)

// Descriptor returns the registry's view of a node-table record: its first
// peer and client URLs.
func Descriptor(r *tesserapb.NodeRecord) *tesserapb.NodeDescriptor {
	d := &tesserapb.NodeDescriptor{NodeId: r.GetNodeId(), Name: r.GetName()}
	if u := r.GetPeerUrls(); len(u) > 0 {
		d.PeerUrl = u[0]
	}
	if u := r.GetClientUrls(); len(u) > 0 {
		d.ClientUrl = u[0]
	}
	return d
}

// Sync makes the registry follow the node table: nodes added since are
// resolvable, removed ones are dropped (their connection closed), and a
// node whose peer URL changed is dialed anew. This node itself is never
// dropped (it may learn of its own removal later than the others). It
// reports whether anything changed.
func (n *Nodes) Sync(table []*tesserapb.NodeRecord) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	changed := false
	keep := make(map[raftgroup.NodeID]bool, len(table))
	for _, r := range table {
		id := raftgroup.NodeID(r.GetNodeId())
		if r.GetState() == tesserapb.NodeRecord_REMOVED || len(r.GetPeerUrls()) == 0 {
			continue
		}
		keep[id] = true
		d := Descriptor(r)
		old, ok := n.mu.nodes[id]
		if ok && old.GetPeerUrl() == d.GetPeerUrl() && old.GetName() == d.GetName() && old.GetClientUrl() == d.GetClientUrl() {
			continue
		}
		if ok && old.GetPeerUrl() != d.GetPeerUrl() {
			n.dropConnLocked(id)
		}
		if d.GetName() == "" && ok {
			d.Name = old.GetName()
		}
		n.mu.nodes[id] = d
		changed = true
	}
	for id := range n.mu.nodes {
		if !keep[id] && id != n.self {
			delete(n.mu.nodes, id)
			n.dropConnLocked(id)
			changed = true
		}
	}
	return changed
}

func (n *Nodes) dropConnLocked(id raftgroup.NodeID) {
	if c := n.mu.conns[id]; c != nil {
		_ = c.Close()
		delete(n.mu.conns, id)
	}
}
