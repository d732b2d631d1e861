package shard

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tesseradb/tessera/engine"
	"github.com/tesseradb/tessera/proto/tesserapb"
)

// Forgetting revocations (docs/decisions.md, "Revocation records").
//
// A range refuses a put naming a revoked grant because it keeps a record of
// the revocation (replica_lease.go). Every lease a write names carries the
// validity of its lookup (LeaseRef.valid_until, a revision set by the meta
// leader), and the apply refuses a write whose revision is above it with
// ErrLeaseLookupExpired (the router looks the lease up again and retries).
// Every revocation carries a valid_until at or above that of every lookup
// that found the grant alive (placement/lease_gc.go). So once the range
// applies a command above a revocation's valid_until, no write naming the
// grant can pass the validity check any more, and the record is dropped.
//
// The record (KindRevokedLease, by lease id) holds the incarnation and that
// revision; a second key (KindRevokedGC: revision, lease id) queues it for
// dropping in revision order. The drop runs in the apply of the first write
// or revocation above the revision, in its batch: a function of the
// replicated state and the command, so the same on every replica. The
// replica caches the earliest queued revision (leaseGCNext) so that a
// write with nothing due costs no read; it is derived state, reset whenever
// the replica reloads its state (a snapshot), and a cache that is too high
// only delays a drop, which is always safe: a write above the revision is
// refused by its validity whether or not the record is still there.
//
// Split and merge must copy the KindRevokedGC keys with the records (a
// record without its queue entry is never dropped, nothing worse).

// ErrLeaseLookupExpired refuses a write whose revision is above the
// validity of a lease lookup it carries: it wrote nothing, and the router
// retries it with a fresh lookup.
var ErrLeaseLookupExpired = status.Error(codes.Aborted, "shard: lease lookup expired; look the lease up again")

// IsLeaseLookupExpired reports whether err is ErrLeaseLookupExpired, here or
// from a forwarded request.
func IsLeaseLookupExpired(err error) bool {
	if errors.Is(err, ErrLeaseLookupExpired) {
		return true
	}
	st, ok := status.FromError(err)
	return ok && st.Code() == codes.Aborted && st.Message() == status.Convert(ErrLeaseLookupExpired).Message()
}

// revokedRecord is a range's memory of a revoked lease.
type revokedRecord struct {
	incarnation uint64          // the highest revoked here
	forgetAfter engine.Revision // the revocation's valid_until (0: never)
}

func encodeRevokedRecord(rec revokedRecord) []byte {
	v := binary.BigEndian.AppendUint64(make([]byte, 0, 16), rec.incarnation)
	return binary.BigEndian.AppendUint64(v, uint64(rec.forgetAfter))
}

// readRevoked returns the record of a lease (the zero record: none). A
// record of 8 bytes (written before records could be forgotten) is never
// forgotten.
func readRevoked(r engine.Reader, group uint64, id int64) (revokedRecord, error) {
	v, err := r.Get(revokedLeaseKey(group, id))
	switch {
	case errors.Is(err, engine.ErrNotFound):
		return revokedRecord{}, nil
	case err != nil:
		return revokedRecord{}, err
	case len(v) == 8:
		return revokedRecord{incarnation: binary.BigEndian.Uint64(v)}, nil
	case len(v) == 16:
		return revokedRecord{incarnation: binary.BigEndian.Uint64(v), forgetAfter: engine.Revision(binary.BigEndian.Uint64(v[8:]))}, nil
	}
	return revokedRecord{}, fmt.Errorf("shard: corrupt revoked lease %d (%d bytes)", id, len(v))
}

func revokedGCKey(group uint64, at engine.Revision, id int64) []byte {
	return engine.LocalGroupPairKey(group, engine.KindRevokedGC, uint64(at), uint64(id))
}

// checkLeaseLookups refuses a write whose revision is above the validity of
// a lease lookup it carries (before it changes anything).
func checkLeaseLookups(cmd *tesserapb.ShardCommand, rev engine.Revision) error {
	for _, ref := range cmd.GetLeases() {
		if engine.Revision(ref.GetValidUntil()) < rev {
			return ErrLeaseLookupExpired
		}
	}
	return nil
}

// recordRevokedLocked remembers a revocation applied on the range: the
// highest incarnation per lease, and the latest revision after which it
// may be forgotten (a revocation of the same grant tried again after an
// earlier one failed elsewhere carries a later one).
func (r *Replica) recordRevokedLocked(b *engine.Batch, ref *tesserapb.LeaseRef) error {
	g, id := uint64(r.group), ref.GetId()
	prev, err := readRevoked(b, g, id)
	if err != nil {
		return err
	}
	next := revokedRecord{incarnation: ref.GetIncarnation(), forgetAfter: engine.Revision(ref.GetValidUntil())}
	switch {
	case next.incarnation < prev.incarnation:
		return nil
	case next.incarnation == prev.incarnation:
		if prev.forgetAfter == 0 || (next.forgetAfter != 0 && next.forgetAfter <= prev.forgetAfter) {
			return nil
		}
	}
	if next.forgetAfter == 0 {
		next.forgetAfter = math.MaxInt64 // never (no validity carried)
	}
	if prev.forgetAfter != 0 {
		if err := b.Delete(revokedGCKey(g, prev.forgetAfter, id)); err != nil {
			return err
		}
	}
	if err := b.Set(revokedLeaseKey(g, id), encodeRevokedRecord(next)); err != nil {
		return err
	}
	if next.forgetAfter != math.MaxInt64 {
		if err := b.Set(revokedGCKey(g, next.forgetAfter, id), nil); err != nil {
			return err
		}
		if r.mu.leaseGCNext != 0 {
			r.mu.leaseGCNext = min(r.mu.leaseGCNext, next.forgetAfter)
		}
	}
	return nil
}

// forgetRevokedLocked drops, before a write or revocation at rev applies,
// the revocation records whose revision is below rev.
func (r *Replica) forgetRevokedLocked(b *engine.Batch, rev engine.Revision) error {
	g := uint64(r.group)
	if r.mu.leaseGCNext == 0 {
		next, err := firstRevokedGC(b, g)
		if err != nil {
			return err
		}
		r.mu.leaseGCNext = next
	}
	if rev <= r.mu.leaseGCNext {
		return nil
	}
	span := engine.Span{Start: revokedGCKey(g, 0, 0), End: revokedGCKey(g, rev, 0)}
	it, err := b.NewIter(span)
	if err != nil {
		return fmt.Errorf("shard: range %d: revoked leases due: %w", g, err)
	}
	type due struct {
		at engine.Revision
		id int64
	}
	var dues []due
	for ok := it.First(); ok; ok = it.Next() {
		at, id, err := engine.DecodeLocalGroupPairKey(it.Key())
		if err != nil {
			it.Close()
			return fmt.Errorf("shard: range %d: %w", g, err)
		}
		dues = append(dues, due{engine.Revision(at), int64(id)})
	}
	if err := it.Error(); err != nil {
		it.Close()
		return fmt.Errorf("shard: range %d: revoked leases due: %w", g, err)
	}
	if err := it.Close(); err != nil {
		return fmt.Errorf("shard: range %d: revoked leases due: %w", g, err)
	}
	for _, d := range dues {
		rec, err := readRevoked(b, g, d.id)
		if err != nil {
			return err
		}
		if rec.forgetAfter == d.at {
			if err := b.Delete(revokedLeaseKey(g, d.id)); err != nil {
				return err
			}
		}
		if err := b.Delete(revokedGCKey(g, d.at, d.id)); err != nil {
			return err
		}
	}
	if len(dues) > 0 {
		r.log.Debug("forgot revoked leases", "count", len(dues), "revision", int64(rev))
	}
	next, err := firstRevokedGC(b, g)
	if err != nil {
		return err
	}
	r.mu.leaseGCNext = next
	return nil
}

// firstRevokedGC returns the earliest queued revision of the range
// (math.MaxInt64: none).
func firstRevokedGC(rd engine.Reader, g uint64) (engine.Revision, error) {
	it, err := rd.NewIter(engine.LocalGroupKindSpan(g, engine.KindRevokedGC))
	if err != nil {
		return 0, fmt.Errorf("shard: range %d: revoked leases due: %w", g, err)
	}
	defer it.Close()
	if !it.First() {
		if err := it.Error(); err != nil {
			return 0, fmt.Errorf("shard: range %d: revoked leases due: %w", g, err)
		}
		return math.MaxInt64, nil
	}
	at, _, err := engine.DecodeLocalGroupPairKey(it.Key())
	if err != nil {
		return 0, fmt.Errorf("shard: range %d: %w", g, err)
	}
	return engine.Revision(at), nil
}
