package shard

import (
	"fmt"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/tesseradb/tessera/engine"
	"github.com/tesseradb/tessera/proto/tesserapb"
)

// Leases on a range.
//
// Leases are kept by the meta group; a range only knows them through the
// commands it applies. A write whose puts name leases carries the
// incarnation of each (the meta log index of its grant) as the router found
// it. A revocation is a command of its own, sent to every range: it deletes,
// at its revision, every live key of the range attached to one of the
// leases (normal delete events for watchers), and records for each lease
// id the highest incarnation revoked here (a replicated local key,
// KindRevokedLease). From then on the range refuses a put naming that
// lease at that incarnation or an older one with etcd's "lease not found",
// until no lookup of it can be valid any more (lease_gc.go).
//
// That closes the race of a put with a revoke: the put either applied
// before the revocation on its range (the revocation deletes its key) or
// after it (it is refused), whatever the router believed. A lease granted
// again under the same id gets a higher incarnation and is accepted.
//
// Split and merge (not implemented yet) must carry the revoked-lease keys
// (and their KindRevokedGC queue entries) to both halves of a split and
// take the union (highest incarnation per id, latest forget revision) in a
// merge: they are replicated local state like the change log.

// revokedLeaseKey is the key recording the highest incarnation of a lease
// revoked on the range.
func revokedLeaseKey(group uint64, id int64) []byte {
	return engine.LocalGroupIndexKey(group, engine.KindRevokedLease, uint64(id))
}

// revokedIncarnation returns the highest incarnation of the lease revoked on
// the range (0: none).
func revokedIncarnation(r engine.Reader, group uint64, id int64) (uint64, error) {
	rec, err := readRevoked(r, group, id)
	return rec.incarnation, err
}

// leaseCheck returns the TxnEnv.LeaseExists of a command: a lease exists
// when the command carries its incarnation and the range has not seen that
// incarnation (or a newer one) revoked.
func (r *Replica) leaseCheck(b *engine.Batch, cmd *tesserapb.ShardCommand) func(int64) bool {
	refs := cmd.GetLeases()
	return func(id int64) bool {
		var inc uint64
		for _, ref := range refs {
			if ref.GetId() == id {
				inc = ref.GetIncarnation()
			}
		}
		if inc == 0 {
			return false
		}
		revoked, err := revokedIncarnation(b, uint64(r.group), id)
		if err != nil {
			// A storage failure: refuse the put rather than attach a
			// key to a lease that may be gone.
			r.log.Error("read revoked lease", "lease", id, "err", err)
			return false
		}
		return revoked < inc
	}
}

// noLeases is the lease check of reads (which attach nothing).
func noLeases(int64) bool { return false }

// applyRevokeLocked applies a revocation: every live key of the range
// attached to one of the leases is deleted at rev, and the leases are
// recorded as revoked. The response is a DeleteRange response counting the
// keys deleted.
func (r *Replica) applyRevokeLocked(b *engine.Batch, cmd *tesserapb.ShardCommand, rev engine.Revision) (*pb.ResponseOp, error) {
	g := uint64(r.group)
	// The keys come from the lease index (see lease_index.go), read before
	// the records are written: the batch's index stays small.
	ids := make([]int64, 0, len(cmd.GetRevokeLeases()))
	for _, ref := range cmd.GetRevokeLeases() {
		ids = append(ids, ref.GetId())
	}
	keys, err := leasesKeys(b, g, ids, rev-1)
	if err != nil {
		return nil, storageError{err: fmt.Errorf("shard: range %d: keys of %d revoked leases: %w", g, len(ids), err)}
	}
	for _, ref := range cmd.GetRevokeLeases() {
		if err := r.recordRevokedLocked(b, ref); err != nil {
			return nil, storageError{err: err}
		}
	}
	b.TrackDataWrites()
	b.TakeDataWrites()
	for _, k := range keys {
		if err := engine.MVCCDelete(b, k, rev); err != nil {
			return nil, storageError{err: fmt.Errorf("shard: range %d: delete leased key: %w", g, err)}
		}
	}
	if written := b.TakeDataWrites(); len(written) > 0 {
		if err := b.Set(changeLogKey(g, rev), encodeChangeLog(written)); err != nil {
			return nil, storageError{err: err}
		}
		if err := updateLeaseIndex(b, g, written, rev); err != nil {
			return nil, storageError{err: err}
		}
	}
	return &pb.ResponseOp{Response: &pb.ResponseOp_ResponseDeleteRange{ResponseDeleteRange: &pb.DeleteRangeResponse{Deleted: int64(len(keys))}}}, nil
}
