package robustness

import (
	"cmp"
	"fmt"
	"slices"
)

// Leases in the model, after etcd's robustness traffic EtcdPutDeleteLease
// (our own model).
//
// Tessera revokes a lease range by range: each range deletes the lease's
// keys at its own revision, all of them before the revoke returns. So the
// guarantee is per key: for every key, the history of that key together
// with every lease operation on a lease the key may be attached to is
// linearizable. A grant, revoke or keep-alive therefore takes part in the
// history of every key in its Input.Keys (partitionByKey), and may be
// linearized at a different point for each key within its interval, as the
// ranges apply it.
//
// The state of a key's history is the key (with the lease of its live
// version) plus the leases alive. What the model checks:
//   - a put with a lease succeeds only while the lease is alive, and fails
//     with "lease not found" only while it is not;
//   - a revoke succeeds only on a live lease, deletes the key if it is
//     attached to the lease (at a revision the client does not see), and
//     the lease is gone from then on: no later read finds the key attached
//     to it, no later put with it succeeds, a keep-alive answers TTL 0;
//   - a put without a lease (a delete, a cas) detaches the key;
//   - a keep-alive answers a TTL only for a live lease;
//   - a lease granted as Expirable may expire at any moment, with the same
//     effect as a revoke; any other lease never expires (the traffic keeps
//     it alive and its TTL outlasts the run), so a leader change or a
//     crash that lost or shortened it is a violation.
//
// Outcomes that are not known (timeouts) branch: the operation took effect
// or it did not.

const (
	// OpLeaseGrant grants Input.Lease (the client picks the id).
	OpLeaseGrant OpKind = "lease-grant"
	// OpLeaseRevoke revokes Input.Lease.
	OpLeaseRevoke OpKind = "lease-revoke"
	// OpLeaseKeepAlive renews Input.Lease once.
	OpLeaseKeepAlive OpKind = "lease-keepalive"
	// OpPutLease is a Put of Input.Key attached to Input.Lease.
	OpPutLease OpKind = "put-lease"
)

// isLeaseOp reports whether kind is an operation on a lease (not a key).
func isLeaseOp(kind OpKind) bool {
	return kind == OpLeaseGrant || kind == OpLeaseRevoke || kind == OpLeaseKeepAlive
}

// liveLease is a lease the model holds alive.
type liveLease struct {
	ID        int64
	Expirable bool
}

func (l liveLease) String() string {
	if l.Expirable {
		return fmt.Sprintf("%x~", l.ID)
	}
	return fmt.Sprintf("%x", l.ID)
}

// modelState is one key and the leases alive, sorted by id.
type modelState struct {
	Key    keyState
	Leases []liveLease
}

func (s modelState) equal(o modelState) bool {
	return s.Key == o.Key && slices.Equal(s.Leases, o.Leases)
}

func (s modelState) alive(id int64) bool {
	return slices.ContainsFunc(s.Leases, func(l liveLease) bool { return l.ID == id })
}

// grant returns s with lease l alive.
func (s modelState) grant(l liveLease) modelState {
	n := s
	n.Leases = append(slices.Clone(s.Leases), l)
	slices.SortFunc(n.Leases, func(a, b liveLease) int { return cmp.Compare(a.ID, b.ID) })
	return n
}

// end returns s after lease id ended (revoked or expired): the key, if
// attached to it, is deleted at a revision nobody saw.
func (s modelState) end(id int64) modelState {
	n := s
	n.Leases = slices.DeleteFunc(slices.Clone(s.Leases), func(l liveLease) bool { return l.ID == id })
	if n.Key.Exists && n.Key.Lease == id {
		n.Key = n.Key.applyDelete(0, false)
	}
	return n
}

// expiries returns every state s may be in after any of its expirable
// leases expired (s included).
func (s modelState) expiries() []modelState {
	out := []modelState{s}
	for _, l := range s.Leases {
		if !l.Expirable {
			continue
		}
		for _, st := range slices.Clone(out) {
			if st.alive(l.ID) {
				out = append(out, st.end(l.ID))
			}
		}
	}
	return out
}

// stepModel is the transition function of KVModel.
func stepModel(s modelState, in Input, out Output) []modelState {
	var next []modelState
	for _, st := range s.expiries() {
		next = append(next, stepOne(st, in, out)...)
	}
	return next
}

func stepOne(s modelState, in Input, out Output) []modelState {
	switch in.Kind {
	case OpLeaseGrant:
		l := liveLease{ID: in.Lease, Expirable: in.Expirable}
		switch {
		case out.Unknown:
			if s.alive(in.Lease) {
				return []modelState{s}
			}
			return []modelState{s, s.grant(l)}
		case s.alive(in.Lease):
			return nil // the client never grants an id twice
		}
		return []modelState{s.grant(l)}
	case OpLeaseRevoke:
		alive := s.alive(in.Lease)
		switch {
		case out.Unknown && alive:
			return []modelState{s, s.end(in.Lease)}
		case out.Unknown, out.LeaseNotFound && !alive:
			return []modelState{s}
		case !out.LeaseNotFound && alive:
			return []modelState{s.end(in.Lease)}
		}
		return nil
	case OpLeaseKeepAlive:
		if out.Unknown || out.LeaseNotFound != s.alive(in.Lease) {
			return []modelState{s}
		}
		return nil
	case OpPutLease:
		alive := s.alive(in.Lease)
		switch {
		case out.Unknown:
			if !alive {
				return []modelState{s}
			}
			n := s
			n.Key = s.Key.applyPut(in.Value, 0, false)
			n.Key.Lease = in.Lease
			return []modelState{s, n}
		case out.LeaseNotFound:
			if alive {
				return nil
			}
			return []modelState{s}
		case !alive || out.Rev <= s.Key.Floor:
			return nil
		}
		n := s
		n.Key = s.Key.applyPut(in.Value, out.Rev, true)
		n.Key.Lease = in.Lease
		return []modelState{n}
	}
	var next []modelState
	for _, k := range step(s.Key, in, out) {
		n := s
		n.Key = k
		next = append(next, n)
	}
	return next
}

func describeLeaseOp(in Input, out Output) string {
	var call string
	switch in.Kind {
	case OpLeaseGrant:
		call = fmt.Sprintf("grant(%x)", in.Lease)
		if in.Expirable {
			call = fmt.Sprintf("grant(%x, expirable)", in.Lease)
		}
	case OpLeaseRevoke:
		call = fmt.Sprintf("revoke(%x)", in.Lease)
	case OpLeaseKeepAlive:
		call = fmt.Sprintf("keepalive(%x)", in.Lease)
	case OpPutLease:
		call = fmt.Sprintf("put(%q, %q, lease=%x)", in.Key, in.Value, in.Lease)
	}
	switch {
	case out.Unknown:
		return call + " -> ?"
	case out.LeaseNotFound:
		return call + " -> lease not found"
	case in.Kind == OpPutLease:
		return fmt.Sprintf("%s -> @%d", call, out.Rev)
	}
	return call + " -> ok"
}
