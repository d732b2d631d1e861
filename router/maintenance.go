package router

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.etcd.io/etcd/api/v3/version"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tesseradb/tessera/placement"
	"github.com/tesseradb/tessera/raftgroup"
)

// Maintenance serves etcd's Maintenance service: Alarm (list, raise and
// disarm, as etcdctl alarm list / alarm disarm) and Status (etcdctl endpoint
// status). The other methods are not implemented yet.
//
// Alarms live in the meta group (placement/alarms.go). On the client port a
// node without a meta replica, or one whose meta replica does not lead,
// forwards the request to the meta nodes' peer ports, where a Maintenance
// that never forwards answers it.
type Maintenance struct {
	pb.UnimplementedMaintenanceServer
	r       *Router
	forward bool
	// dbSize returns the node's storage size in bytes (nil: 0).
	dbSize func() int64
	// Info, if set, fills the rest of Status (etcdctl endpoint status).
	Info func() StatusInfo
	// snapshot, defrag, …: the other Maintenance RPCs (maintenance_*.go).
	maintenanceExtra
}

// StatusInfo is what a node reports in Maintenance.Status beyond what the
// router knows.
type StatusInfo struct {
	// Version: etcd's API version with Tessera's as build metadata
	// ("3.7.3+tessera.0.1.0"); StorageVersion: the data dir's format.
	Version, StorageVersion string
	// QuotaBytes is the data size at which the node raises NOSPACE:
	// --quota-backend-bytes if set, else what the data dir can grow to
	// before --quota-free-bytes trips (0: no limit).
	QuotaBytes int64
	// Raft* describe the meta group's replica on this node (the group that
	// holds the cluster's metadata, TSO and alarms; its leader is Status's
	// Leader), or are 0 on a node without one.
	RaftTerm, RaftIndex, RaftAppliedIndex uint64
}

var _ pb.MaintenanceServer = (*Maintenance)(nil)

// NewMaintenance returns the Maintenance service of a router: forward for
// the client port, not for the peer port (where forwarded requests land).
func NewMaintenance(r *Router, forward bool, dbSize func() int64) *Maintenance {
	return &Maintenance{r: r, forward: forward, dbSize: dbSize}
}

// errNoMetaReplica: a forwarded alarm request reached a node that holds no
// replica of the meta group.
var errNoMetaReplica = status.Error(codes.FailedPrecondition, "router: no meta group replica on this node")

// Alarm implements etcd's Maintenance.Alarm.
func (m *Maintenance) Alarm(ctx context.Context, req *pb.AlarmRequest) (*pb.AlarmResponse, error) {
	alarms, err := m.alarm(ctx, req)
	if err != nil {
		return nil, toGRPCError(err)
	}
	if req.GetAction() == pb.AlarmRequest_GET && m.r.cfg.Meta == nil {
		m.r.alarms.set(req.GetAlarm(), alarms)
	}
	return &pb.AlarmResponse{Header: m.r.header(0), Alarms: alarms}, nil
}

func (m *Maintenance) alarm(ctx context.Context, req *pb.AlarmRequest) ([]*pb.AlarmMember, error) {
	meta := m.r.cfg.Meta
	if meta != nil && (req.GetAction() == pb.AlarmRequest_GET || meta.Leader() == m.r.nodes.Self()) {
		alarms, err := meta.Alarm(ctx, req)
		if !m.forward || !errors.Is(err, raftgroup.ErrNotLeader) {
			return alarms, err
		}
	}
	if !m.forward {
		if meta == nil {
			return nil, errNoMetaReplica
		}
		return nil, &raftgroup.NotLeaderError{Group: placement.MetaRangeID, Leader: meta.Leader()}
	}
	return m.forwardAlarm(ctx, req)
}

// forwardAlarm asks the meta group's leader (if known here), then every other
// node, until one that holds the meta group answers.
func (m *Maintenance) forwardAlarm(ctx context.Context, req *pb.AlarmRequest) ([]*pb.AlarmMember, error) {
	var order []raftgroup.NodeID
	if meta := m.r.cfg.Meta; meta != nil && meta.Leader() != 0 {
		order = append(order, meta.Leader())
	}
	for _, n := range m.r.nodes.List() {
		if id := raftgroup.NodeID(n.GetNodeId()); id != m.r.nodes.Self() && !slices.Contains(order, id) {
			order = append(order, id)
		}
	}
	var errs []error
	for _, id := range order {
		if id == m.r.nodes.Self() {
			continue
		}
		conn, err := m.r.nodes.Conn(id)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		resp, err := pb.NewMaintenanceClient(conn).Alarm(ctx, req)
		if err == nil {
			return resp.GetAlarms(), nil
		}
		errs = append(errs, fmt.Errorf("node %d: %w", id, err))
		if ctx.Err() != nil {
			break
		}
	}
	if len(errs) == 0 {
		return nil, rpctypes.ErrGRPCNoLeader
	}
	return nil, fmt.Errorf("router: alarm %s: no meta group leader answered: %w", req.GetAction(), errors.Join(errs...))
}

// RefreshAlarms updates the alarms a node without a meta replica enforces
// (one that holds one reads them from its replica): its disk monitor calls
// it every few seconds.
func (m *Maintenance) RefreshAlarms(ctx context.Context) error {
	if m.r.cfg.Meta != nil {
		return nil
	}
	_, err := m.Alarm(ctx, &pb.AlarmRequest{Action: pb.AlarmRequest_GET})
	return err
}

// Status implements etcd's Maintenance.Status (etcdctl endpoint status):
// version, storage version and size, quota, the meta group's leader and
// raft state, and the active alarms.
func (m *Maintenance) Status(ctx context.Context, _ *pb.StatusRequest) (*pb.StatusResponse, error) {
	resp := &pb.StatusResponse{Header: m.r.header(m.r.statusRevision(ctx)), Version: version.Version, DowngradeInfo: &pb.DowngradeInfo{}}
	if m.Info != nil {
		in := m.Info()
		resp.Version, resp.StorageVersion, resp.DbSizeQuota = in.Version, in.StorageVersion, in.QuotaBytes
		resp.RaftTerm, resp.RaftIndex, resp.RaftAppliedIndex = in.RaftTerm, in.RaftIndex, in.RaftAppliedIndex
	}
	if m.dbSize != nil {
		resp.DbSize = m.dbSize()
		resp.DbSizeInUse = resp.DbSize
	}
	if meta := m.r.cfg.Meta; meta != nil {
		resp.Leader = uint64(meta.Leader())
	}
	for _, a := range m.r.activeAlarms(pb.AlarmType_NONE) {
		resp.Errors = append(resp.Errors, a.String())
	}
	return resp, nil
}

// alarmCache holds the alarms a node without a meta replica last learned.
type alarmCache struct {
	mu     sync.Mutex
	alarms []*pb.AlarmMember
}

// set records the answer of a GET of type t.
func (c *alarmCache) set(t pb.AlarmType, alarms []*pb.AlarmMember) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t == pb.AlarmType_NONE {
		c.alarms = slices.Clone(alarms)
		return
	}
	c.alarms = slices.DeleteFunc(c.alarms, func(a *pb.AlarmMember) bool { return a.GetAlarm() == t })
	c.alarms = append(c.alarms, alarms...)
}

func (c *alarmCache) get(t pb.AlarmType) []*pb.AlarmMember {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*pb.AlarmMember
	for _, a := range c.alarms {
		if t == pb.AlarmType_NONE || a.GetAlarm() == t {
			out = append(out, a)
		}
	}
	return out
}

// activeAlarms returns the alarms of type t (NONE: all) this node enforces.
func (r *Router) activeAlarms(t pb.AlarmType) []*pb.AlarmMember {
	if m := r.cfg.Meta; m != nil {
		return m.Alarms(t)
	}
	return r.alarms.get(t)
}

// checkNoSpace refuses, as etcd's capped applier does, the writes that add
// data while a NOSPACE alarm is active anywhere in the cluster: Put, and a
// Txn with a Put among its top-level operations. Deletes, compactions and
// reads go on, so an operator can free space.
func (r *Router) checkNoSpace(txn *pb.TxnRequest) error {
	if txn != nil && !txnHasPuts(txn) {
		return nil
	}
	if len(r.activeAlarms(pb.AlarmType_NOSPACE)) > 0 {
		return rpctypes.ErrGRPCNoSpace
	}
	return nil
}

// txnHasPuts reports whether etcd's quota would give the txn a cost: a put
// in its success or failure branch (nested txns are not counted, as in
// etcd).
func txnHasPuts(t *pb.TxnRequest) bool {
	for _, ops := range [][]*pb.RequestOp{t.GetSuccess(), t.GetFailure()} {
		for _, op := range ops {
			if op.GetRequestPut() != nil {
				return true
			}
		}
	}
	return false
}
