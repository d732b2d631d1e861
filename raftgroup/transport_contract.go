package raftgroup

import (
	"context"
	"io"

	"go.etcd.io/raft/v3/raftpb"
)

// GroupMessage is one raft message addressed to one group (raft v3.7 messages
// are protobuf-go structs: pass them by pointer, never copy). Message.To and
// Message.From are NodeIDs (see NodeID).
type GroupMessage struct {
	Group   GroupID
	Message *raftpb.Message
}

// SnapshotHeader precedes the data of a replica snapshot on the wire. Message
// is the MsgSnap raft produced (its Snapshot.Metadata says which index/term/
// ConfState the data is at); the data that follows is one SST file.
type SnapshotHeader struct {
	Group   GroupID
	Message *raftpb.Message
}

// MessageHandler is what the Transport delivers to: the Host implements it.
type MessageHandler interface {
	// HandleMessages is called with every batch received from a peer node, in
	// the order the peer sent them. It must not block for long.
	HandleMessages(from NodeID, msgs []GroupMessage)
	// HandleUnreachable is called when messages for these groups could not be
	// delivered to node `to` (stream broken, queue full, dial failure).
	HandleUnreachable(to NodeID, groups []GroupID)
	// HandleSnapshot receives one snapshot: the header, then the SST bytes from
	// r until io.EOF. It returns after the snapshot has been staged and stepped
	// into raft (or rejected); an error is reported to the sender.
	HandleSnapshot(ctx context.Context, from NodeID, h SnapshotHeader, r io.Reader) error
}
