package router

import (
	"context"

	"github.com/coreos/go-semver/semver"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.etcd.io/etcd/api/v3/version"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Downgrade implements etcd's Maintenance.Downgrade (etcdctl downgrade
// validate|enable|cancel) for a cluster that cannot downgrade: Tessera's
// data is not etcd's, and no earlier Tessera release serves an earlier
// etcd API, so no target version is valid. The answers are etcd 3.7's for
// a target it refuses:
//
//   - validate, enable: a malformed version gets "wrong downgrade target
//     version format", any other "invalid downgrade target version"
//     (InvalidArgument both);
//   - cancel: with no downgrade in progress etcd logs and answers success
//     with the cluster version ("Downgrade cancel success, cluster version
//     3.7"), and so does Tessera.
func (m *Maintenance) Downgrade(_ context.Context, req *pb.DowngradeRequest) (*pb.DowngradeResponse, error) {
	switch req.GetAction() {
	case pb.DowngradeRequest_VALIDATE, pb.DowngradeRequest_ENABLE:
		if !validDowngradeVersion(req.GetVersion()) {
			return nil, rpctypes.ErrGRPCWrongDowngradeVersionFormat
		}
		m.r.log.Debug("refused downgrade: Tessera cannot downgrade", "action", req.GetAction(), "target", req.GetVersion())
		return nil, rpctypes.ErrGRPCInvalidDowngradeTargetVersion
	case pb.DowngradeRequest_CANCEL:
		return &pb.DowngradeResponse{Header: m.r.header(0), Version: version.Cluster(version.Version)}, nil
	default:
		// etcd's errors.ErrUnknownMethod, which its gRPC layer leaves unmapped.
		return nil, status.Error(codes.Unknown, "etcdserver: unknown method")
	}
}

// validDowngradeVersion accepts what etcd does: a semantic version, or
// major.minor.
func validDowngradeVersion(v string) bool {
	if _, err := semver.NewVersion(v); err == nil {
		return true
	}
	_, err := semver.NewVersion(v + ".0")
	return err == nil
}
