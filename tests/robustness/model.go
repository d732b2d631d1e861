package robustness

import (
	"fmt"
	"hash/fnv"

	"github.com/anishathalye/porcupine"
)

// OpKind names an operation of the traffic. Each touches exactly one key.
type OpKind string

const (
	// OpGet is a linearizable Range of one key.
	OpGet OpKind = "get"
	// OpPut is a Put.
	OpPut OpKind = "put"
	// OpDelete is a DeleteRange of one key.
	OpDelete OpKind = "delete"
	// OpCASRev is Txn(If mod_revision(key) = ExpectRev, Then put, Else get).
	// ExpectRev 0 means "the key does not exist", as in etcd.
	OpCASRev OpKind = "cas-rev"
	// OpCASValue is Txn(If value(key) = ExpectValue, Then put, Else get).
	// As in etcd, a value comparison on a missing key is false.
	OpCASValue OpKind = "cas-value"
)

// Input is what a client asked.
type Input struct {
	Kind        OpKind `json:"kind"`
	Key         string `json:"key"`
	Value       string `json:"value,omitempty"`        // put, cas: the value written
	ExpectRev   int64  `json:"expect_rev,omitempty"`   // cas-rev
	ExpectValue string `json:"expect_value,omitempty"` // cas-value
	// Leases (model_lease.go): the lease a put-lease attaches, or the one a
	// grant, revoke or keep-alive names; Keys are the keys that lease may
	// be attached to (a lease operation takes part in their histories);
	// Expirable marks a grant whose lease may expire during the run.
	Lease     int64    `json:"lease,omitempty"`
	Keys      []string `json:"keys,omitempty"`
	Expirable bool     `json:"expirable,omitempty"`
}

// Output is what the client saw. Unknown marks an ambiguous failure
// (timeout, unavailable, leader lost): the operation may or may not have
// taken effect, and nothing else in Output is meaningful.
type Output struct {
	Unknown bool `json:"unknown,omitempty"`
	// Rev is the response header's revision.
	Rev int64 `json:"rev"`
	// Found and the fields after it describe the key as read by a get or by
	// the else branch of a failed cas.
	Found     bool   `json:"found,omitempty"`
	Value     string `json:"value,omitempty"`
	ModRev    int64  `json:"mod_rev,omitempty"`
	CreateRev int64  `json:"create_rev,omitempty"`
	Version   int64  `json:"version,omitempty"`
	// Deleted is a delete's count of deleted keys.
	Deleted int64 `json:"deleted,omitempty"`
	// Succeeded is a cas's Txn outcome.
	Succeeded bool `json:"succeeded,omitempty"`
	// Lease is the lease of the key read (0: none).
	Lease int64 `json:"lease,omitempty"`
	// LeaseNotFound: a put-lease, revoke or keep-alive answered that the
	// lease does not exist (etcd's "requested lease not found", or a
	// keep-alive's TTL 0).
	LeaseNotFound bool `json:"lease_not_found,omitempty"`
}

// isWrite reports whether op, as answered, created a revision: a
// acknowledged put, a delete that deleted, a cas that succeeded.
func isWrite(in Input, out Output) bool {
	switch in.Kind {
	case OpPut:
		return true
	case OpPutLease:
		return !out.LeaseNotFound
	case OpDelete:
		return out.Deleted > 0
	case OpCASRev, OpCASValue:
		return out.Succeeded
	}
	return false
}

// keyState is the model's view of one key: etcd's KeyValue metadata plus
// Floor, the highest revision linearized on the key so far (a later write
// must get a higher one; a read at revision R shows the state at R, so a
// write ordered after it must be above R too).
//
// A write with an unknown outcome that the linearization applies has an
// unknown revision: ModKnown (and CreateKnown for a creation) is false
// until a read reveals it. Revisions are timestamps in Tessera, so the
// revealed value can only be checked against Floor.
type keyState struct {
	Exists      bool
	Value       string
	ModRev      int64 // of the last write, a deletion's too
	ModKnown    bool
	CreateRev   int64
	CreateKnown bool
	Version     int64
	Floor       int64
	// Lease is the lease the live version is attached to (0: none).
	Lease int64
}

var initialKeyState = keyState{ModKnown: true, CreateKnown: true}

// compareRev is mod_revision as an etcd compare sees it: 0 for a missing key.
func (s keyState) compareRev() int64 {
	if !s.Exists {
		return 0
	}
	return s.ModRev
}

// applyPut returns the state after a put of value at rev (known=false: at
// an unknown revision).
func (s keyState) applyPut(value string, rev int64, known bool) keyState {
	n := s
	n.Value, n.ModRev, n.ModKnown, n.Lease = value, rev, known, 0
	if !s.Exists {
		n.Exists, n.Version = true, 1
		n.CreateRev, n.CreateKnown = rev, known
	} else {
		n.Version++
	}
	if known {
		n.Floor = rev
	}
	return n
}

func (s keyState) applyDelete(rev int64, known bool) keyState {
	n := keyState{Exists: false, ModRev: rev, ModKnown: known, CreateKnown: true, Floor: s.Floor}
	if known {
		n.Floor = rev
	}
	return n
}

// observe checks a read of the key (found, value, revisions at header
// revision rev) against s and returns the state with unknown revisions
// resolved and Floor raised to rev.
func (s keyState) observe(out Output) (keyState, bool) {
	if out.Found != s.Exists {
		return s, false
	}
	n := s
	if out.Found {
		if out.Value != s.Value || out.Version != s.Version || out.Lease != s.Lease {
			return s, false
		}
		if s.ModKnown {
			if out.ModRev != s.ModRev {
				return s, false
			}
		} else {
			if out.ModRev <= s.Floor {
				return s, false
			}
			n.ModRev, n.ModKnown = out.ModRev, true
		}
		if s.CreateKnown {
			if out.CreateRev != s.CreateRev {
				return s, false
			}
		} else {
			n.CreateRev, n.CreateKnown = out.CreateRev, true
		}
		if n.Version == 1 && n.CreateRev != n.ModRev {
			return s, false
		}
		if out.CreateRev > out.ModRev {
			return s, false
		}
	}
	// The read saw the state at out.Rev, so that state's last write is at
	// or below out.Rev.
	if n.ModKnown && out.Rev < n.ModRev {
		return s, false
	}
	n.Floor = max(n.Floor, out.Rev)
	return n, true
}

// step is the model's transition function: every state the key may be in
// after op, given that it was in s before (none: op cannot follow s).
func step(s keyState, in Input, out Output) []keyState {
	switch in.Kind {
	case OpGet:
		if out.Unknown {
			return []keyState{s}
		}
		if n, ok := s.observe(out); ok {
			return []keyState{n}
		}
		return nil
	case OpPut:
		if out.Unknown {
			return []keyState{s.applyPut(in.Value, 0, false)}
		}
		if out.Rev <= s.Floor {
			return nil
		}
		return []keyState{s.applyPut(in.Value, out.Rev, true)}
	case OpDelete:
		if out.Unknown {
			if !s.Exists {
				return []keyState{s}
			}
			return []keyState{s.applyDelete(0, false)}
		}
		if out.Deleted > 1 {
			return nil
		}
		if out.Deleted == 1 {
			if !s.Exists || out.Rev <= s.Floor {
				return nil
			}
			return []keyState{s.applyDelete(out.Rev, true)}
		}
		// Deleted nothing: a read of a missing key.
		if n, ok := s.observe(Output{Rev: out.Rev}); ok {
			return []keyState{n}
		}
		return nil
	case OpCASRev, OpCASValue:
		var branches []keyState // states in which the compare holds, resolved
		var failing []keyState  // states in which it fails
		switch {
		case in.Kind == OpCASValue:
			if s.Exists && s.Value == in.ExpectValue {
				branches = append(branches, s)
			} else {
				failing = append(failing, s)
			}
		case !s.Exists || s.ModKnown:
			if s.compareRev() == in.ExpectRev {
				branches = append(branches, s)
			} else {
				failing = append(failing, s)
			}
		default:
			// An unapplied-looking write of unknown revision: the compare
			// holds only if that revision is ExpectRev.
			if in.ExpectRev > s.Floor {
				r := s
				r.ModRev, r.ModKnown = in.ExpectRev, true
				if !r.CreateKnown && r.Version == 1 {
					r.CreateRev, r.CreateKnown = in.ExpectRev, true
				}
				branches = append(branches, r)
			}
			failing = append(failing, s)
		}
		var next []keyState
		switch {
		case out.Unknown:
			for _, b := range branches {
				next = append(next, b.applyPut(in.Value, 0, false))
			}
			next = append(next, failing...)
		case out.Succeeded:
			for _, b := range branches {
				if out.Rev > b.Floor {
					next = append(next, b.applyPut(in.Value, out.Rev, true))
				}
			}
		default:
			for _, f := range failing {
				if n, ok := f.observe(out); ok {
					next = append(next, n)
				}
			}
		}
		return next
	}
	return nil
}

// KVModel is etcd's KV with revisions and leases, checked key by key (a
// lease operation takes part in the history of every key its lease may be
// attached to; model_lease.go).
var KVModel = porcupine.NondeterministicModel{
	Partition: partitionByKey,
	Init:      func() []any { return []any{modelState{Key: initialKeyState}} },
	Step: func(state, input, output any) []any {
		var out []any
		for _, n := range stepModel(state.(modelState), input.(Input), output.(Output)) {
			out = append(out, n)
		}
		return out
	},
	Equal: func(a, b any) bool { return a.(modelState).equal(b.(modelState)) },
	Hash: func(state any) uint64 {
		s := state.(modelState)
		h := fnv.New64a()
		k := s.Key
		fmt.Fprintf(h, "%t|%s|%d|%t|%d|%t|%d|%d|%d|%v", k.Exists, k.Value, k.ModRev, k.ModKnown, k.CreateRev, k.CreateKnown, k.Version, k.Floor, k.Lease, s.Leases)
		return h.Sum64()
	},
	DescribeOperation: func(input, output any) string {
		return describeOp(input.(Input), output.(Output))
	},
	DescribeState: func(state any) string {
		ms := state.(modelState)
		s := ms.Key
		leases := ""
		if len(ms.Leases) > 0 {
			leases = fmt.Sprintf(" leases=%v", ms.Leases)
		}
		if !s.Exists {
			return fmt.Sprintf("<none> floor=%d%s", s.Floor, leases)
		}
		mod, create := fmt.Sprint(s.ModRev), fmt.Sprint(s.CreateRev)
		if !s.ModKnown {
			mod = "?"
		}
		if !s.CreateKnown {
			create = "?"
		}
		lease := ""
		if s.Lease != 0 {
			lease = fmt.Sprintf(" lease=%x", s.Lease)
		}
		return fmt.Sprintf("%q mod=%s create=%s ver=%d floor=%d%s%s", s.Value, mod, create, s.Version, s.Floor, lease, leases)
	},
}

func partitionByKey(history []porcupine.Operation) [][]porcupine.Operation {
	byKey := map[string]int{}
	var parts [][]porcupine.Operation
	for _, op := range history {
		in := op.Input.(Input)
		keys := []string{in.Key}
		if isLeaseOp(in.Kind) {
			keys = in.Keys
		}
		for _, k := range keys {
			i, ok := byKey[k]
			if !ok {
				i = len(parts)
				byKey[k] = i
				parts = append(parts, nil)
			}
			parts[i] = append(parts[i], op)
		}
	}
	return parts
}

func describeOp(in Input, out Output) string {
	var call string
	switch in.Kind {
	case OpGet, OpDelete:
		call = fmt.Sprintf("%s(%q)", in.Kind, in.Key)
	case OpPut:
		call = fmt.Sprintf("put(%q, %q)", in.Key, in.Value)
	case OpCASRev:
		call = fmt.Sprintf("cas(%q, mod=%d, %q)", in.Key, in.ExpectRev, in.Value)
	case OpCASValue:
		call = fmt.Sprintf("cas(%q, value=%q, %q)", in.Key, in.ExpectValue, in.Value)
	}
	if isLeaseOp(in.Kind) || in.Kind == OpPutLease {
		return describeLeaseOp(in, out)
	}
	if out.Unknown {
		return call + " -> ?"
	}
	read := "<none>"
	if out.Found {
		read = fmt.Sprintf("%q mod=%d create=%d ver=%d", out.Value, out.ModRev, out.CreateRev, out.Version)
	}
	switch in.Kind {
	case OpGet:
		return fmt.Sprintf("%s -> %s @%d", call, read, out.Rev)
	case OpDelete:
		return fmt.Sprintf("%s -> deleted=%d @%d", call, out.Deleted, out.Rev)
	case OpCASRev, OpCASValue:
		if out.Succeeded {
			return fmt.Sprintf("%s -> ok @%d", call, out.Rev)
		}
		return fmt.Sprintf("%s -> failed, %s @%d", call, read, out.Rev)
	}
	return fmt.Sprintf("%s -> @%d", call, out.Rev)
}
