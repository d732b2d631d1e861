package placement

import (
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/tesseradb/tessera/proto/tesserapb"
	"github.com/tesseradb/tessera/raftgroup"
)

// TestNodesSync: the peer registry follows the node table (new nodes
// resolvable, removed ones dropped, changed URLs taken, self kept).
func TestNodesSync(t *testing.T) {
	n := NewNodes(1, []*tesserapb.NodeDescriptor{
		{NodeId: 1, Name: "a", PeerUrl: "http://127.0.0.1:1"},
		{NodeId: 2, Name: "b", PeerUrl: "http://127.0.0.1:2"},
		{NodeId: 3, Name: "c", PeerUrl: "http://127.0.0.1:3"},
	}, grpc.WithTransportCredentials(insecure.NewCredentials()))
	defer n.Close()
	if _, err := n.Conn(2); err != nil {
		t.Fatal(err)
	}
	table := []*tesserapb.NodeRecord{
		{NodeId: 1, Name: "a", PeerUrls: []string{"http://127.0.0.1:1"}, State: tesserapb.NodeRecord_REMOVED},
		{NodeId: 2, Name: "b", PeerUrls: []string{"http://127.0.0.1:22"}},
		{NodeId: 3, Name: "c", PeerUrls: []string{"http://127.0.0.1:3"}, State: tesserapb.NodeRecord_REMOVED},
		{NodeId: 4, PeerUrls: []string{"http://127.0.0.1:4"}},
	}
	if !n.Sync(table) {
		t.Fatal("Sync reported no change")
	}
	var ids []raftgroup.NodeID
	for _, d := range n.List() {
		ids = append(ids, raftgroup.NodeID(d.GetNodeId()))
	}
	if len(ids) != 3 || ids[0] != 1 || ids[1] != 2 || ids[2] != 4 {
		t.Fatalf("nodes after sync: %v, want 1 (self), 2, 4", ids)
	}
	if a, err := n.PeerAddr(2); err != nil || a != "127.0.0.1:22" {
		t.Fatalf("node 2 at %q %v, want its new URL", a, err)
	}
	if _, err := n.PeerAddr(3); err == nil {
		t.Fatal("removed node 3 still resolves")
	}
	if a, err := n.PeerAddr(4); err != nil || a != "127.0.0.1:4" {
		t.Fatalf("new node 4 at %q %v", a, err)
	}
	n.mu.Lock()
	_, stale := n.mu.conns[2]
	n.mu.Unlock()
	if stale {
		t.Fatal("connection to node 2's old URL kept")
	}
	if n.Sync(table) {
		t.Fatal("a second Sync of the same table reported a change")
	}
}
