package raftgroup

import (
	"bytes"
	"context"
	"fmt"
	"testing"
)

// TestTransportAuthorizePeer: a stream or snapshot whose claimed sender the
// AuthorizePeer hook refuses delivers nothing; the hook sees the claimed
// sender; an authorized sender's messages arrive.
func TestTransportAuthorizePeer(t *testing.T) {
	tn := newTestNet()
	claims := make(chan NodeID, 16)
	n1 := startNode(t, tn, 1, func(c *TransportConfig) {
		c.AuthorizePeer = func(_ context.Context, from NodeID) error {
			claims <- from
			if from == 3 {
				return fmt.Errorf("node %s is not allowed", from)
			}
			return nil
		}
	})
	n2 := startNode(t, tn, 2, nil)
	n3 := startNode(t, tn, 3, nil)

	n3.tr.Send(1, GroupMessage{Group: 1, Message: testMsg(3, 1, 7)})
	n2.tr.Send(1, GroupMessage{Group: 1, Message: testMsg(2, 1, 8)})
	waitFor(t, n1.h, "node 2's message", func() bool { return len(n1.h.indexes(2)) == 1 })
	// Node 1 counts the refused stream as invalid input.
	waitFor(t, nil, "node 3's stream refused", func() bool {
		return counterValue(t, n1.reg, "tessera_raft_transport_invalid_received_total", nil) >= 1
	})
	if got := n1.h.indexes(3); len(got) != 0 {
		t.Fatalf("node 1 received %v from refused node 3", got)
	}
	err := n3.tr.SendSnapshot(context.Background(), 1, testSnapHeader(3, 1, 9), bytes.NewReader([]byte("data")))
	if err == nil {
		t.Fatal("a snapshot from refused node 3 was accepted")
	}
	seen := map[NodeID]bool{}
	for len(claims) > 0 {
		seen[<-claims] = true
	}
	if !seen[2] || !seen[3] {
		t.Errorf("AuthorizePeer saw claims %v, want nodes 2 and 3", seen)
	}
}
