package router

import (
	"context"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tesseradb/tessera/proto/tesserapb"
)

// AuthState returns the auth state this node's meta replica has applied,
// for nodes without a meta replica to enforce (peer port only: it holds
// password hashes and the token key).
func (s *Internal) AuthState(context.Context, *tesserapb.AuthStateRequest) (*tesserapb.AuthRecord, error) {
	meta := s.r.cfg.Meta
	if meta == nil {
		return nil, errNoMetaReplica
	}
	rec, err := meta.Auth().Record()
	if err != nil {
		return nil, status.Errorf(codes.Internal, "router: auth state: %v", err)
	}
	return rec, nil
}
