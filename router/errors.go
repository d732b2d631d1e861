package router

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tesseradb/tessera/placement"
	"github.com/tesseradb/tessera/proto/tesserapb"
	"github.com/tesseradb/tessera/shard"
)

// toGRPCError is the one table from internal errors to what etcd clients
// understand (etcd's toGRPCErrorMap): etcd's own errors pass through, and
// everything else becomes the rpctypes error an etcd server would return in
// the same situation.
func toGRPCError(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	var re *shard.RoutingError
	var tso *placement.ErrTSONotLeader
	switch {
	case errors.As(err, &re):
		// Retries ran out: the range has no reachable leader.
		return rpctypes.ErrGRPCNoLeader
	case errors.As(err, &tso):
		return rpctypes.ErrGRPCNoLeader
	case errors.Is(err, shard.ErrReplicaClosed):
		return rpctypes.ErrGRPCStopped
	case errors.Is(err, context.DeadlineExceeded):
		return rpctypes.ErrGRPCTimeout
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, context.Canceled.Error())
	}
	// Errors wrapped around an etcd error keep it.
	for e := err; e != nil; e = errors.Unwrap(e) {
		if _, ok := status.FromError(e); ok {
			return e
		}
	}
	return status.Error(codes.Unavailable, err.Error())
}

// crossRangeError is returned for a write whose keys span several ranges.
func crossRangeError(op string, ranges []*tesserapb.RangeDescriptor) error {
	var names []string
	for _, r := range ranges {
		names = append(names, fmt.Sprintf("%d [%q, %q)", r.GetRangeId(), r.GetStartKey(), r.GetEndKey()))
	}
	return status.Errorf(codes.FailedPrecondition,
		"tessera: %s spans %d ranges (%s); atomic writes across ranges are not supported yet",
		op, len(ranges), strings.Join(names, ", "))
}
