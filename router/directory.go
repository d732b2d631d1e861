package router

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/tesseradb/tessera/internal/backoff"
	"github.com/tesseradb/tessera/internal/descset"
	"github.com/tesseradb/tessera/placement"
	"github.com/tesseradb/tessera/proto/tesserapb"
	"github.com/tesseradb/tessera/raftgroup"
)

// Directory is the range directory (placement/directory.go) as a router
// uses it: every call is answered by the meta group's leader, linearizably,
// wherever the caller runs. Splits and merges call Update with the
// descriptors they produced.
type Directory interface {
	// Update records descriptors; only those newer (by generation) than
	// the overlapping entries change the directory.
	Update(ctx context.Context, descs ...*tesserapb.RangeDescriptor) error
	// Lookup returns the descriptor of the range holding key.
	Lookup(ctx context.Context, key []byte) (*tesserapb.RangeDescriptor, error)
	// Scan returns up to limit descriptors in key order starting with the
	// one holding start (limit 0: the server's page size); more tells
	// whether others follow (continue from the last one's end key).
	Scan(ctx context.Context, start []byte, limit int) (ds []*tesserapb.RangeDescriptor, more bool, err error)
}

// errNoDirectoryEntry: the directory has no range for a key (a split's
// right half not recorded yet); range leaders' reports fill it in.
var errNoDirectoryEntry = errors.New("router: the range directory has no range for the key yet")

// directoryWaitBackoff paces the retries of a directory call while the
// meta group elects a leader: 10 ms, doubling up to 200 ms.
var directoryWaitBackoff = backoff.Config{Min: 10 * time.Millisecond, Max: 200 * time.Millisecond}

// metaDirectory implements Directory through the local meta replica when
// it leads, else the Internal service of the leader (followers answer
// with a leader hint).
type metaDirectory struct{ r *Router }

var _ Directory = metaDirectory{}

// Directory returns the router's view of the range directory.
func (r *Router) Directory() Directory { return metaDirectory{r: r} }

// onMetaLeader runs local on this node's meta replica when it leads the
// meta group, else remote on the other nodes (the known leader first)
// until one answers without a routing error. While no node answers (an
// election), it retries with backoff until ctx ends.
func (r *Router) onMetaLeader(ctx context.Context, what string,
	local func(m *placement.Meta) error,
	remote func(ctx context.Context, c tesserapb.InternalClient) (*tesserapb.RoutingError, error),
) error {
	bo := backoff.New(directoryWaitBackoff)
	var last error = rpctypes.ErrGRPCNoLeader
	for {
		var hint raftgroup.NodeID
		if m := r.cfg.Meta; m != nil {
			if m.Leader() == r.nodes.Self() {
				err := local(m)
				if err == nil || !errors.Is(err, raftgroup.ErrNotLeader) {
					return err
				}
				last = err
			}
			hint = m.Leader()
		}
		order := make([]raftgroup.NodeID, 0, len(r.nodes.List()))
		if hint != 0 && hint != r.nodes.Self() {
			order = append(order, hint)
		}
		for _, n := range r.nodes.List() {
			if id := raftgroup.NodeID(n.GetNodeId()); id != r.nodes.Self() && !slices.Contains(order, id) {
				order = append(order, id)
			}
		}
		for i := 0; i < len(order); i++ {
			conn, err := r.nodes.Conn(order[i])
			if err != nil {
				last = err
				continue
			}
			re, err := remote(ctx, tesserapb.NewInternalClient(conn))
			if err != nil {
				if ctx.Err() != nil {
					return fmt.Errorf("router: %s: %w (last error: %v)", what, ctx.Err(), err)
				}
				if isTransportError(err) {
					last = err
					continue
				}
				return fmt.Errorf("router: %s: %w", what, err)
			}
			if re == nil {
				return nil
			}
			last = fmt.Errorf("node %d: %s", order[i], re.GetCode())
			// Follow a leader hint we have not tried yet in this round.
			if l := raftgroup.NodeID(re.GetLeaderNode()); l != 0 && l != r.nodes.Self() && !slices.Contains(order[:i+1], l) {
				order = slices.Insert(order, i+1, l)
			}
		}
		if err := bo.Wait(ctx); err != nil {
			return fmt.Errorf("router: %s: %w (last error: %v)", what, err, last)
		}
	}
}

func (d metaDirectory) Update(ctx context.Context, descs ...*tesserapb.RangeDescriptor) error {
	if len(descs) == 0 {
		return nil
	}
	return d.r.onMetaLeader(ctx, "record range descriptors",
		func(m *placement.Meta) error {
			_, err := m.ReportRanges(ctx, descs)
			return err
		},
		func(ctx context.Context, c tesserapb.InternalClient) (*tesserapb.RoutingError, error) {
			resp, err := c.RangeReport(ctx, &tesserapb.RangeReportRequest{Ranges: descs})
			return resp.GetRoutingError(), err
		})
}

func (d metaDirectory) Lookup(ctx context.Context, key []byte) (*tesserapb.RangeDescriptor, error) {
	var out *tesserapb.RangeDescriptor
	err := d.r.onMetaLeader(ctx, "look up range",
		func(m *placement.Meta) (err error) {
			out, err = m.LookupRange(ctx, key)
			return err
		},
		func(ctx context.Context, c tesserapb.InternalClient) (*tesserapb.RoutingError, error) {
			resp, err := c.RangeLookup(ctx, &tesserapb.RangeLookupRequest{Key: key})
			out = resp.GetRangeDescriptor()
			return resp.GetRoutingError(), err
		})
	if err == nil && out == nil {
		return nil, fmt.Errorf("%w (%q)", errNoDirectoryEntry, key)
	}
	return out, err
}

func (d metaDirectory) Scan(ctx context.Context, start []byte, limit int) (ds []*tesserapb.RangeDescriptor, more bool, err error) {
	lim := d.r.dirLimits().MaxScanLimit
	if limit <= 0 || limit > lim {
		limit = lim
	}
	err = d.r.onMetaLeader(ctx, "scan ranges",
		func(m *placement.Meta) (err error) {
			ds, more, err = m.ScanRanges(ctx, start, limit)
			return err
		},
		func(ctx context.Context, c tesserapb.InternalClient) (*tesserapb.RoutingError, error) {
			resp, err := c.RangeScan(ctx, &tesserapb.RangeScanRequest{StartKey: start, Limit: uint32(limit)})
			ds, more = resp.GetRanges(), resp.GetMore()
			return resp.GetRoutingError(), err
		})
	return ds, more, err
}

// ScanAll reads the whole directory, page by page (each page is
// linearizable; a split between pages can show both a parent and a half,
// which the range cache's generation rule sorts out).
func ScanAll(ctx context.Context, d Directory) ([]*tesserapb.RangeDescriptor, error) {
	var out []*tesserapb.RangeDescriptor
	var start []byte
	for {
		page, more, err := d.Scan(ctx, start, 0)
		if err != nil {
			return nil, err
		}
		out = append(out, page...)
		if !more || len(page) == 0 || len(page[len(page)-1].GetEndKey()) == 0 {
			return out, nil
		}
		start = page[len(page)-1].GetEndKey()
	}
}

// dirLimits returns the directory RPC limits.
func (r *Router) dirLimits() placement.DirectoryLimits {
	if r.cfg.DirectoryLimits == (placement.DirectoryLimits{}) {
		return placement.DefaultDirectoryLimits()
	}
	return r.cfg.DirectoryLimits
}

// metaNotLeader is the routing error of a directory RPC on a node that
// does not lead the meta group.
func (s *Internal) metaNotLeader(err error) (*tesserapb.RoutingError, error) {
	m := s.r.cfg.Meta
	if m == nil {
		return &tesserapb.RoutingError{Code: tesserapb.RoutingError_RANGE_NOT_FOUND, Message: "no meta replica"}, nil
	}
	if errors.Is(err, raftgroup.ErrNotLeader) {
		return &tesserapb.RoutingError{Code: tesserapb.RoutingError_NOT_LEADER, LeaderNode: uint64(m.Leader())}, nil
	}
	return nil, toGRPCError(err)
}

// RangeLookup implements the Internal service's directory lookup.
func (s *Internal) RangeLookup(ctx context.Context, req *tesserapb.RangeLookupRequest) (*tesserapb.RangeLookupResponse, error) {
	if n, lim := len(req.GetKey()), s.r.dirLimits().MaxKeyBytes; n > lim {
		return nil, invalidArg("range lookup key of %d bytes exceeds %d", n, lim)
	}
	if s.r.cfg.Meta == nil {
		re, _ := s.metaNotLeader(nil)
		return &tesserapb.RangeLookupResponse{RoutingError: re}, nil
	}
	d, err := s.r.cfg.Meta.LookupRange(ctx, req.GetKey())
	if err != nil {
		re, err := s.metaNotLeader(err)
		return &tesserapb.RangeLookupResponse{RoutingError: re}, err
	}
	return &tesserapb.RangeLookupResponse{RangeDescriptor: d}, nil
}

// RangeScan implements the Internal service's directory scan.
func (s *Internal) RangeScan(ctx context.Context, req *tesserapb.RangeScanRequest) (*tesserapb.RangeScanResponse, error) {
	lim := s.r.dirLimits()
	if n := len(req.GetStartKey()); n > lim.MaxKeyBytes {
		return nil, invalidArg("range scan start key of %d bytes exceeds %d", n, lim.MaxKeyBytes)
	}
	limit := int(req.GetLimit())
	if limit > lim.MaxScanLimit {
		return nil, invalidArg("range scan limit %d exceeds %d", limit, lim.MaxScanLimit)
	}
	if limit == 0 {
		limit = lim.MaxScanLimit
	}
	if s.r.cfg.Meta == nil {
		re, _ := s.metaNotLeader(nil)
		return &tesserapb.RangeScanResponse{RoutingError: re}, nil
	}
	ds, more, err := s.r.cfg.Meta.ScanRanges(ctx, req.GetStartKey(), limit)
	if err != nil {
		re, err := s.metaNotLeader(err)
		return &tesserapb.RangeScanResponse{RoutingError: re}, err
	}
	resp := &tesserapb.RangeScanResponse{Ranges: ds, More: more}
	if more && len(ds) > 0 {
		resp.NextKey = ds[len(ds)-1].GetEndKey()
	}
	return resp, nil
}

// RangeReport implements the Internal service's directory update.
func (s *Internal) RangeReport(ctx context.Context, req *tesserapb.RangeReportRequest) (*tesserapb.RangeReportResponse, error) {
	if err := validateReport(req.GetRanges(), s.r.dirLimits()); err != nil {
		return nil, err
	}
	if s.r.cfg.Meta == nil {
		re, _ := s.metaNotLeader(nil)
		return &tesserapb.RangeReportResponse{RoutingError: re}, nil
	}
	n, err := s.r.cfg.Meta.ReportRanges(ctx, req.GetRanges())
	if err != nil {
		re, err := s.metaNotLeader(err)
		return &tesserapb.RangeReportResponse{RoutingError: re}, err
	}
	return &tesserapb.RangeReportResponse{Recorded: uint32(n)}, nil
}

// validateReport checks reported descriptors: a data range each (not the
// meta group), a non-empty span, a generation, replicas, keys within
// limits.
func validateReport(ds []*tesserapb.RangeDescriptor, lim placement.DirectoryLimits) error {
	if len(ds) == 0 || len(ds) > lim.MaxReport {
		return invalidArg("range report of %d descriptors outside [1, %d]", len(ds), lim.MaxReport)
	}
	for _, d := range ds {
		switch {
		case d.GetRangeId() <= placement.MetaRangeID:
			return invalidArg("range report names range %d, not a data range", d.GetRangeId())
		case !descset.ValidSpan(d):
			return invalidArg("range %d reported with an empty span [%q, %q)", d.GetRangeId(), d.GetStartKey(), d.GetEndKey())
		case d.GetGeneration() == 0:
			return invalidArg("range %d reported without a generation", d.GetRangeId())
		case len(d.GetReplicas()) == 0:
			return invalidArg("range %d reported without replicas", d.GetRangeId())
		case len(d.GetStartKey()) > lim.MaxKeyBytes || len(d.GetEndKey()) > lim.MaxKeyBytes:
			return invalidArg("range %d reported with a key over %d bytes", d.GetRangeId(), lim.MaxKeyBytes)
		}
	}
	return nil
}

// RangesChanged records the descriptors a split or merge on this node
// produced (the split code's directory hook).
func (d metaDirectory) RangesChanged(ctx context.Context, descs []*tesserapb.RangeDescriptor) error {
	return d.Update(ctx, descs...)
}
