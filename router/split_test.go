package router

import (
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tesseradb/tessera/proto/tesserapb"
)

func TestValidateSplitRequest(t *testing.T) {
	big := make([]byte, maxSplitKeyBytes+1)
	for i, req := range []*tesserapb.SplitRangeRequest{
		{SplitKey: []byte("m")},
		{RangeId: 2, Key: []byte("a"), SplitKey: []byte("m")},
		{RangeId: 1, SplitKey: []byte("m")},
		{RangeId: 2},
		{RangeId: 2, SplitKey: big},
		{Key: big, SplitKey: []byte("m")},
	} {
		if err := validateSplitRequest(req); status.Code(err) != codes.InvalidArgument {
			t.Fatalf("request %d: %v, want InvalidArgument", i, err)
		}
	}
	if err := validateSplitRequest(&tesserapb.SplitRangeRequest{Key: []byte("a"), SplitKey: []byte("m")}); err != nil {
		t.Fatal(err)
	}
}
