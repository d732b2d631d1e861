package raftgroup

import (
	"testing"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/tesseradb/tessera/proto/raftrpc"
)

// FuzzDecodeRaftBatch feeds arbitrary bytes to the receive path of the
// RaftMessages stream: the gRPC codec's proto.Unmarshal of a RaftBatch, then
// decodeRaftBatch (the raftpb.Message unmarshal of every message and the
// address checks). Whatever the input, it must not panic, and what it
// delivers must be consistent with the batch.
//
// Run longer with: go test -run '^$' -fuzz FuzzDecodeRaftBatch ./raftgroup/
func FuzzDecodeRaftBatch(f *testing.F) {
	const self = NodeID(2)
	marshal := func(m proto.Message) []byte {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		return b
	}
	valid := marshal(testMsg(1, self, 7))
	withEntries := testMsg(1, self, 8)
	withEntries.Entries = []*raftpb.Entry{
		{Term: proto.Uint64(1), Index: proto.Uint64(9), Data: []byte("put k v")},
		{Term: proto.Uint64(1), Index: proto.Uint64(10), Type: raftpb.EntryConfChangeV2.Enum()},
	}
	snap := testSnapHeader(1, self, 3)

	f.Add([]byte{})
	f.Add([]byte{0xff, 0xff, 0xff})
	f.Add(marshal(&raftrpc.RaftBatch{FromNode: 1, ToNode: uint64(self), Messages: []*raftrpc.RaftMessage{
		{GroupId: 1, Message: valid},
		{GroupId: 2, Message: marshal(withEntries)},
		{GroupId: 3, Message: marshal(snap.Message)},
	}}))
	f.Add(marshal(&raftrpc.RaftBatch{FromNode: 1, ToNode: uint64(self), Messages: []*raftrpc.RaftMessage{
		{GroupId: 1, Message: []byte{0x0a, 0x80}},
		{GroupId: 1, Message: valid[:len(valid)-1]},
		{GroupId: 1, Message: valid},
	}}))
	f.Add(marshal(&raftrpc.RaftBatch{FromNode: 1, ToNode: 9, Messages: []*raftrpc.RaftMessage{{GroupId: 1, Message: valid}}}))
	f.Add(marshal(&raftrpc.RaftBatch{FromNode: 0, ToNode: uint64(self)}))

	f.Fuzz(func(t *testing.T, data []byte) {
		var b raftrpc.RaftBatch
		if err := proto.Unmarshal(data, &b); err != nil {
			return
		}
		// Drop every other message through the knob path as well.
		calls := 0
		drop := func(from, to NodeID, m GroupMessage) bool {
			calls++
			return calls%2 == 0
		}
		d, err := decodeRaftBatch(self, &b, drop)
		if err != nil {
			if NodeID(b.GetToNode()) == self && b.GetFromNode() != 0 && NodeID(b.GetFromNode()) != self {
				t.Fatalf("well-addressed batch rejected: %v", err)
			}
			return
		}
		if d.invalid+calls != len(b.GetMessages()) || len(d.msgs) != calls-calls/2 {
			t.Fatalf("%d messages: %d invalid, %d knob calls, %d delivered", len(b.GetMessages()), d.invalid, calls, len(d.msgs))
		}
		if (d.invalid > 0) != (d.invalidErr != nil) {
			t.Fatalf("invalid %d with error %v", d.invalid, d.invalidErr)
		}
		for _, m := range d.msgs {
			// To and From are replica ids: the Host ties them to nodes.
			if m.Message == nil || m.Message.GetTo() == 0 || m.Message.GetFrom() == 0 {
				t.Fatalf("delivered a misaddressed message: %v", m.Message)
			}
			// What was delivered re-encodes (raft may re-send or persist it).
			if _, err := proto.Marshal(m.Message); err != nil {
				t.Fatalf("delivered message does not re-encode: %v", err)
			}
		}
	})
}
