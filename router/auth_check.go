package router

import (
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
)

// AuthPermissions is what a request check needs of the auth state
// (placement.AuthState implements it).
type AuthPermissions interface {
	// Enabled reports whether auth is enabled.
	Enabled() bool
	// CheckRange checks read (write false) or write permission on
	// [key, rangeEnd) with etcd's rules and errors.
	CheckRange(user string, key, rangeEnd []byte, write bool) error
	// IsRoot reports whether user holds the root role.
	IsRoot(user string) bool
	// HasRole reports whether user holds role.
	HasRole(user, role string) bool
	// Revision is the auth revision of this state: a write checked against
	// it carries it to the apply (shard/auth_revision.go).
	Revision() uint64
}

// LeaseKeys returns the keys attached to a lease. The lease service
// provides it: revoking or keeping a lease alive needs write permission on
// every key attached to it, and listing them (TimeToLive with keys) read
// permission, as in etcd.
type LeaseKeys func(id int64) ([][]byte, error)

// CheckRequest decides, as etcd does, whether user may run req. It is the
// one place that knows which permission each etcd request needs:
//
//   - KV: Range reads its range; Put writes its key (and reads it with
//     prev_kv); DeleteRange writes its range (and reads it with prev_kv);
//     Txn reads every compare's key and checks every op of both branches,
//     nested Txns included; Compact needs root.
//   - Watch: creating a watch reads its range.
//   - Lease: Grant needs a user; Revoke and KeepAlive write every attached
//     key; TimeToLive with keys reads them; Leases needs root.
//   - Maintenance: Status and Alarm GET need a user; every other call
//     (alarm changes, Hash, HashKV, Defragment, Snapshot, MoveLeader,
//     Downgrade) needs root.
//   - Cluster: MemberList needs a user; membership changes need root.
//   - Auth: AuthStatus and Authenticate need nothing; UserGet of oneself and
//     RoleGet of one's own role need a user; everything else needs root.
//
// With auth disabled everything is allowed; otherwise an empty user is
// etcd's "user name is empty". leaseKeys may be nil until leases exist.
func CheckRequest(a AuthPermissions, user string, req any, leaseKeys LeaseKeys) error {
	if !a.Enabled() {
		return nil
	}
	switch req.(type) {
	case *pb.AuthStatusRequest, *pb.AuthenticateRequest:
		return nil
	}
	if user == "" {
		return rpctypes.ErrGRPCUserEmpty
	}
	if a.IsRoot(user) {
		return nil
	}
	read := func(key, end []byte) error { return a.CheckRange(user, key, end, false) }
	write := func(key, end []byte) error { return a.CheckRange(user, key, end, true) }
	switch r := req.(type) {
	case *pb.RangeRequest:
		return read(r.Key, r.RangeEnd)
	case *pb.PutRequest:
		if err := write(r.Key, nil); err != nil {
			return err
		}
		if r.PrevKv {
			return read(r.Key, nil)
		}
		return nil
	case *pb.DeleteRangeRequest:
		if err := write(r.Key, r.RangeEnd); err != nil {
			return err
		}
		if r.PrevKv {
			return read(r.Key, r.RangeEnd)
		}
		return nil
	case *pb.TxnRequest:
		return checkTxn(a, user, r)
	case *pb.WatchCreateRequest:
		return read(r.Key, r.RangeEnd)
	case *pb.LeaseGrantRequest:
		return nil
	case *pb.LeaseRevokeRequest:
		return checkLeaseKeys(r.ID, leaseKeys, write)
	case *pb.LeaseKeepAliveRequest:
		return checkLeaseKeys(r.ID, leaseKeys, write)
	case *pb.LeaseTimeToLiveRequest:
		if !r.Keys {
			return nil
		}
		return checkLeaseKeys(r.ID, leaseKeys, read)
	case *pb.StatusRequest, *pb.MemberListRequest:
		return nil
	case *pb.AlarmRequest:
		if r.Action == pb.AlarmRequest_GET {
			return nil
		}
	case *pb.AuthUserGetRequest:
		if r.Name == user {
			return nil
		}
	case *pb.AuthRoleGetRequest:
		if a.HasRole(user, r.Role) {
			return nil
		}
	}
	// Everything else is an administrative call: root only.
	return rpctypes.ErrGRPCPermissionDenied
}

func checkTxn(a AuthPermissions, user string, t *pb.TxnRequest) error {
	for _, c := range t.Compare {
		if err := a.CheckRange(user, c.Key, c.RangeEnd, false); err != nil {
			return err
		}
	}
	for _, ops := range [][]*pb.RequestOp{t.Success, t.Failure} {
		for _, op := range ops {
			var req any
			switch o := op.Request.(type) {
			case *pb.RequestOp_RequestRange:
				req = o.RequestRange
			case *pb.RequestOp_RequestPut:
				req = o.RequestPut
			case *pb.RequestOp_RequestDeleteRange:
				req = o.RequestDeleteRange
			case *pb.RequestOp_RequestTxn:
				req = o.RequestTxn
			default:
				continue // an empty op: request validation refuses it
			}
			if err := CheckRequest(a, user, req, nil); err != nil {
				return err
			}
		}
	}
	return nil
}

func checkLeaseKeys(id int64, leaseKeys LeaseKeys, check func(key, end []byte) error) error {
	if leaseKeys == nil {
		return rpctypes.ErrGRPCPermissionDenied // no lease service to ask: deny
	}
	keys, err := leaseKeys(id)
	if err != nil {
		return err
	}
	for _, k := range keys {
		if err := check(k, nil); err != nil {
			return err
		}
	}
	return nil
}
