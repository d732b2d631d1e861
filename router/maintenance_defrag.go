package router

import (
	"context"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Defragment implements etcd's Maintenance.Defragment (etcdctl defrag):
// this node compacts its storage engine (Pebble manual compactions, one
// span at a time), which frees the space of deleted and overwritten data
// as etcd's defragmentation does. Unlike etcd's, which rewrites the whole
// database with writes blocked, requests go on meanwhile; the call returns
// when the node's compaction is done. As in etcd it acts on the node it
// is sent to only (etcdctl defrag --cluster sends it to every member).
func (m *Maintenance) Defragment(ctx context.Context, _ *pb.DefragmentRequest) (*pb.DefragmentResponse, error) {
	if m.defrag == nil {
		return nil, status.Error(codes.Unimplemented, "router: defragment is not wired on this node")
	}
	start := time.Now()
	if err := m.defrag(ctx); err != nil {
		return nil, toGRPCError(err)
	}
	m.r.log.Info("defragmented", "took", time.Since(start))
	return &pb.DefragmentResponse{Header: m.r.header(0)}, nil
}
