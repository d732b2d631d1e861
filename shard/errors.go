package shard

import (
	"errors"
	"fmt"

	"github.com/tesseradb/tessera/proto/tesserapb"
)

// RoutingError says why a replica did not serve a request and where to go.
type RoutingError struct {
	Code       tesserapb.RoutingError_Code
	LeaderNode uint64
	Descriptor *tesserapb.RangeDescriptor
	Msg        string
}

func (e *RoutingError) Error() string {
	return fmt.Sprintf("shard: %s: %s", e.Code, e.Msg)
}

// Proto converts the error for the wire.
func (e *RoutingError) Proto() *tesserapb.RoutingError {
	return &tesserapb.RoutingError{Code: e.Code, LeaderNode: e.LeaderNode, RangeDescriptor: e.Descriptor, Message: e.Msg}
}

// RoutingErrorFromProto converts a wire error back.
func RoutingErrorFromProto(p *tesserapb.RoutingError) *RoutingError {
	return &RoutingError{Code: p.GetCode(), LeaderNode: p.GetLeaderNode(), Descriptor: p.GetRangeDescriptor(), Msg: p.GetMessage()}
}

// ErrReplicaClosed is returned for requests that arrive after Close.
var ErrReplicaClosed = errors.New("shard: replica closed")
