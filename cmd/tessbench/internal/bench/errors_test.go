package bench

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"nil", nil, ""},
		{"etcd client error", rpctypes.ErrLeaderChanged, "Unavailable: etcdserver: leader changed"},
		{"etcd client error wrapped", fmt.Errorf("put: %w", rpctypes.ErrNoSpace), "ResourceExhausted: etcdserver: mvcc: database space exceeded"},
		{"etcd server-side status", rpctypes.ErrGRPCRequestTooLarge, "InvalidArgument: etcdserver: request is too large"},
		{"converted server error", rpctypes.Error(rpctypes.ErrGRPCLeaseNotFound), "NotFound: etcdserver: requested lease not found"},
		{"deadline", context.DeadlineExceeded, "DeadlineExceeded: context deadline exceeded"},
		{"deadline wrapped", fmt.Errorf("get: %w", context.DeadlineExceeded), "DeadlineExceeded: context deadline exceeded"},
		{"canceled", context.Canceled, "Canceled: context canceled"},
		{"plain grpc status", status.Error(codes.Unavailable, "connection refused"), "Unavailable: connection refused"},
		{"not grpc", errors.New("range over prefix returned 3 keys"), "Client: range over prefix returned 3 keys"},
		{"whitespace folded", errors.New("a\n  b"), "Client: a b"},
	} {
		if got := Classify(tc.err); got != tc.want {
			t.Errorf("%s: Classify = %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestClassifyBoundsLength(t *testing.T) {
	got := Classify(errors.New(strings.Repeat("x", 1000)))
	if len(got) > maxErrorKeyLen+len("…") {
		t.Errorf("key of %d bytes, want at most %d", len(got), maxErrorKeyLen+len("…"))
	}
}
