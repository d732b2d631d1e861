package bench

import (
	"context"
	"errors"
	"strings"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// maxErrorKeyLen bounds an error key, so a server that puts unique data in
// its messages cannot grow the error table without limit.
const maxErrorKeyLen = 120

// Classify names the kind of a failed request as "<gRPC code>: <etcd error
// string>", for example "Unavailable: etcdserver: leader changed" or
// "DeadlineExceeded: context deadline exceeded". Requests are grouped by
// this name in reports.
func Classify(err error) string {
	if err == nil {
		return ""
	}
	var key string
	var ee rpctypes.EtcdError
	switch {
	case errors.As(err, &ee):
		key = ee.Code().String() + ": " + ee.Error()
	case errors.Is(err, context.DeadlineExceeded):
		key = codes.DeadlineExceeded.String() + ": " + context.DeadlineExceeded.Error()
	case errors.Is(err, context.Canceled):
		key = codes.Canceled.String() + ": " + context.Canceled.Error()
	default:
		if s, ok := status.FromError(err); ok {
			key = s.Code().String() + ": " + rpctypes.ErrorDesc(err)
		} else {
			key = "Client: " + err.Error()
		}
	}
	key = strings.Join(strings.Fields(key), " ")
	if len(key) > maxErrorKeyLen {
		key = key[:maxErrorKeyLen] + "…"
	}
	return key
}
