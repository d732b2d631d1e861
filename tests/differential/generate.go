package differential

import (
	"fmt"
	"math/rand/v2"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// revRef is a revision chosen by the generator. Revisions differ between the
// two servers, so a request names them abstractly and each side resolves
// them: the k-th write of the run maps to that side's revision of its k-th
// write.
type revRef struct {
	kind revKind
	n    int64 // write index (refWrite) or raw value (refRaw)
}

type revKind int

const (
	refRaw    revKind = iota // n itself: 0, negative revisions, a lease ID
	refWrite                 // the revision of write n (0-based) of this run
	refFuture                // far above any revision (1<<62)
)

// resolver maps a revRef to one side's revision.
type resolver func(revRef) int64

// request builds one operation's request for one side. The generator makes
// every random choice up front; the closure only resolves revisions, so
// both sides get the same request but for revisions.
type request struct {
	kind  string
	build func(res resolver) any // *pb.PutRequest, *pb.RangeRequest, ...
}

// generator produces a seeded random workload over a small key space, so
// that operations collide.
type generator struct {
	rng    *rand.Rand
	prefix string
	keys   []string // full keys
	leases []int64  // granted lease IDs (empty: no leases)
	// badLease is a lease ID that is never granted.
	badLease int64
	compact  bool
	// nWrites is the number of writes so far (so revision refs point at
	// writes that exist on both sides).
	nWrites func() int
}

// keyNames are the names under the run's prefix: nested names make prefix
// ranges and open-ended ranges interesting. Twelve keys at most, so that
// etcd's sort.Sort (insertion sort up to 12 elements) keeps ties in key
// order on every implementation of it.
var keyNames = []string{"a", "a/1", "a/2", "b", "b/1", "c", "d", "e", "f", "g"}

var valuePool = []string{"", "v", "w", "vv", "x1", "y"}

func newGenerator(seed int64, prefix string, leases []int64, badLease int64, compact bool, nWrites func() int) *generator {
	g := &generator{
		rng:      rand.New(rand.NewPCG(uint64(seed), 0x7e55e7a)),
		prefix:   prefix,
		leases:   leases,
		badLease: badLease,
		compact:  compact,
		nWrites:  nWrites,
	}
	for _, n := range keyNames {
		g.keys = append(g.keys, prefix+n)
	}
	return g
}

func (g *generator) chance(p float64) bool { return g.rng.Float64() < p }

func (g *generator) key() []byte { return []byte(g.keys[g.rng.IntN(len(g.keys))]) }

func (g *generator) value() []byte {
	if g.chance(0.1) {
		b := make([]byte, 1+g.rng.IntN(8))
		for i := range b {
			b[i] = byte(g.rng.IntN(256))
		}
		return b
	}
	return []byte(valuePool[g.rng.IntN(len(valuePool))])
}

// keyRange returns a (key, range_end) pair in one of etcd's forms.
func (g *generator) keyRange() ([]byte, []byte) {
	switch g.rng.IntN(8) {
	case 0, 1:
		return g.key(), nil
	case 2: // every key >= key
		return g.key(), []byte{0}
	case 3: // the whole run
		return []byte(g.prefix), []byte(g.prefix + "\xff")
	case 4: // a prefix
		n := keyNames[g.rng.IntN(len(keyNames))]
		return []byte(g.prefix + n + "/"), []byte(g.prefix + n + "0")
	default: // [k1, k2), possibly empty or inverted
		return g.key(), g.key()
	}
}

// writeRef points at an existing write, or at revision 0 before any.
func (g *generator) writeRef() revRef {
	n := g.nWrites()
	if n == 0 {
		return revRef{kind: refRaw}
	}
	// Favour recent writes: old ones are more often compacted.
	k := n - 1 - g.rng.IntN(min(n, 1+g.rng.IntN(20)))
	return revRef{kind: refWrite, n: int64(k)}
}

// readRev is the revision field of a Range.
func (g *generator) readRev() revRef {
	switch x := g.rng.Float64(); {
	case x < 0.6:
		return revRef{kind: refRaw}
	case x < 0.93:
		return g.writeRef()
	case x < 0.96:
		return revRef{kind: refRaw, n: -1}
	default:
		return revRef{kind: refFuture}
	}
}

// filterRev is a min/max revision filter: mostly none.
func (g *generator) filterRev() revRef {
	if g.chance(0.8) {
		return revRef{kind: refRaw}
	}
	return g.writeRef()
}

func (g *generator) lease() int64 {
	switch {
	case len(g.leases) > 0 && g.chance(0.2):
		return g.leases[g.rng.IntN(len(g.leases))]
	case len(g.leases) > 0 && g.chance(0.03):
		return g.badLease
	}
	return 0
}

// next generates the next operation.
func (g *generator) next() request {
	switch x := g.rng.Float64(); {
	case x < 0.28:
		b := g.put(nil)
		return request{kind: "put", build: func(res resolver) any { return b(res) }}
	case x < 0.53:
		b := g.rangeReq()
		return request{kind: "range", build: func(res resolver) any { return b(res) }}
	case x < 0.66:
		b := g.del(nil)
		return request{kind: "delete", build: func(res resolver) any { return b(res) }}
	case x < 0.97 || !g.compact || g.nWrites() == 0:
		b := g.txn(2)
		return request{kind: "txn", build: func(res resolver) any { return b(res) }}
	default:
		ref := g.writeRef()
		if g.chance(0.1) {
			ref = revRef{kind: refFuture}
		}
		physical := g.chance(0.5)
		return request{kind: "compact", build: func(res resolver) any {
			return &pb.CompactionRequest{Revision: res(ref), Physical: physical}
		}}
	}
}

// scope tracks the writes of one txn branch so that the generator mostly
// avoids etcd's duplicate-key error (and sometimes provokes it).
//
// It also keeps apart, in one branch, a put with ignore_value/ignore_lease
// and a DeleteRange with range_end "\x00" covering its key: etcd's overlap
// check reads "\x00" literally and lets them through, and if the delete runs
// first, etcd (3.4 to 3.6) panics applying the txn and the member dies.
// Tessera accepts the txn (see shard.ApplyTxn); there is nothing to compare.
type scope struct {
	puts       map[string]bool
	dels       [][2][]byte
	ignorePuts [][]byte
	openDels   [][]byte
}

// openDelCovers: an open-ended delete of the branch covers k.
func (s *scope) openDelCovers(k []byte) bool {
	if s == nil {
		return false
	}
	for _, d := range s.openDels {
		if string(d) <= string(k) {
			return true
		}
	}
	return false
}

// coversIgnorePut: an open-ended delete from key would cover an
// ignore_value/ignore_lease put of the branch.
func (s *scope) coversIgnorePut(key []byte) bool {
	if s == nil {
		return false
	}
	for _, k := range s.ignorePuts {
		if string(key) <= string(k) {
			return true
		}
	}
	return false
}

func (s *scope) conflictsPut(k []byte) bool {
	if s == nil {
		return false
	}
	if s.puts[string(k)] {
		return true
	}
	for _, d := range s.dels {
		if inDelete(k, d[0], d[1]) {
			return true
		}
	}
	return false
}

func (s *scope) conflictsDel(key, end []byte) bool {
	if s == nil {
		return false
	}
	for k := range s.puts {
		if inDelete([]byte(k), key, end) {
			return true
		}
	}
	return false
}

// inDelete mirrors etcd's overlap check (range_end taken literally).
func inDelete(k, key, end []byte) bool {
	if len(end) == 0 {
		return string(k) == string(key)
	}
	return string(key) <= string(k) && string(k) < string(end)
}

func (g *generator) put(sc *scope) func(resolver) *pb.PutRequest {
	k := g.key()
	for try := 0; try < 5 && sc.conflictsPut(k) && !g.chance(0.05); try++ {
		k = g.key()
	}
	if sc != nil {
		sc.puts[string(k)] = true
	}
	req := &pb.PutRequest{Key: k, Value: g.value(), PrevKv: g.chance(0.5), Lease: g.lease()}
	if g.chance(0.12) {
		req.IgnoreValue = true
		if g.chance(0.85) {
			req.Value = nil
		}
	}
	if g.chance(0.12) {
		req.IgnoreLease = true
		if g.chance(0.85) {
			req.Lease = 0
		}
	}
	if req.IgnoreValue || req.IgnoreLease {
		if sc.openDelCovers(k) {
			req.IgnoreValue, req.IgnoreLease = false, false
		} else if sc != nil {
			sc.ignorePuts = append(sc.ignorePuts, k)
		}
	}
	return func(resolver) *pb.PutRequest { return req }
}

func (g *generator) del(sc *scope) func(resolver) *pb.DeleteRangeRequest {
	key, end := g.keyRange()
	for try := 0; try < 5 && sc.conflictsDel(key, end) && !g.chance(0.05); try++ {
		key, end = g.keyRange()
	}
	open := len(end) == 1 && end[0] == 0
	if open && sc.coversIgnorePut(key) {
		open, end = false, nil // a single-key delete instead
	}
	if sc != nil {
		sc.dels = append(sc.dels, [2][]byte{key, end})
		if open {
			sc.openDels = append(sc.openDels, key)
		}
	}
	req := &pb.DeleteRangeRequest{Key: key, RangeEnd: end, PrevKv: g.chance(0.5)}
	return func(resolver) *pb.DeleteRangeRequest { return req }
}

func (g *generator) rangeReq() func(resolver) *pb.RangeRequest {
	key, end := g.keyRange()
	var limit int64
	switch x := g.rng.Float64(); {
	case x < 0.5:
	case x < 0.9:
		limit = int64(1 + g.rng.IntN(4))
	case x < 0.95:
		limit = -1
	default:
		limit = 1 << 40
	}
	order := pb.RangeRequest_NONE
	target := pb.RangeRequest_KEY
	if g.chance(0.4) {
		order = pb.RangeRequest_SortOrder(g.rng.IntN(3))
		target = pb.RangeRequest_SortTarget(g.rng.IntN(5))
	}
	rev, minMod, maxMod, minCreate, maxCreate := g.readRev(), g.filterRev(), g.filterRev(), g.filterRev(), g.filterRev()
	keysOnly, countOnly, serializable := g.chance(0.15), g.chance(0.1), g.chance(0.2)
	return func(res resolver) *pb.RangeRequest {
		return &pb.RangeRequest{
			Key: key, RangeEnd: end, Limit: limit, Revision: res(rev),
			SortOrder: order, SortTarget: target,
			Serializable: serializable, KeysOnly: keysOnly, CountOnly: countOnly,
			MinModRevision: res(minMod), MaxModRevision: res(maxMod),
			MinCreateRevision: res(minCreate), MaxCreateRevision: res(maxCreate),
		}
	}
}

func (g *generator) compare() func(resolver) *pb.Compare {
	key, end := g.key(), []byte(nil)
	switch g.rng.IntN(6) {
	case 0:
		key, end = g.keyRange()
		if len(end) == 0 {
			end = []byte{0}
		}
	case 1:
		end = []byte(g.prefix + "\xff")
	}
	result := pb.Compare_CompareResult(g.rng.IntN(4))
	target := pb.Compare_CompareTarget(g.rng.IntN(5))
	var union func(resolver, *pb.Compare)
	switch target {
	case pb.Compare_VERSION:
		v := int64(g.rng.IntN(4))
		union = func(_ resolver, c *pb.Compare) { c.TargetUnion = &pb.Compare_Version{Version: v} }
	case pb.Compare_CREATE:
		r := g.writeRef()
		union = func(res resolver, c *pb.Compare) { c.TargetUnion = &pb.Compare_CreateRevision{CreateRevision: res(r)} }
	case pb.Compare_MOD:
		r := g.writeRef()
		union = func(res resolver, c *pb.Compare) { c.TargetUnion = &pb.Compare_ModRevision{ModRevision: res(r)} }
	case pb.Compare_VALUE:
		v := g.value()
		union = func(_ resolver, c *pb.Compare) { c.TargetUnion = &pb.Compare_Value{Value: v} }
	case pb.Compare_LEASE:
		l := g.lease()
		union = func(_ resolver, c *pb.Compare) { c.TargetUnion = &pb.Compare_Lease{Lease: l} }
	}
	if g.chance(0.03) {
		// A target union that does not match the target compares with 0.
		v := g.value()
		union = func(_ resolver, c *pb.Compare) { c.TargetUnion = &pb.Compare_Value{Value: v} }
	}
	return func(res resolver) *pb.Compare {
		c := &pb.Compare{Key: key, RangeEnd: end, Result: result, Target: target}
		union(res, c)
		return c
	}
}

func (g *generator) txn(depth int) func(resolver) *pb.TxnRequest {
	var cmps []func(resolver) *pb.Compare
	for range g.rng.IntN(4) {
		cmps = append(cmps, g.compare())
	}
	success := g.branch(depth, &scope{puts: map[string]bool{}})
	failure := g.branch(depth, &scope{puts: map[string]bool{}})
	return func(res resolver) *pb.TxnRequest {
		t := &pb.TxnRequest{}
		for _, c := range cmps {
			t.Compare = append(t.Compare, c(res))
		}
		for _, op := range success {
			t.Success = append(t.Success, op(res))
		}
		for _, op := range failure {
			t.Failure = append(t.Failure, op(res))
		}
		return t
	}
}

func (g *generator) branch(depth int, sc *scope) []func(resolver) *pb.RequestOp {
	var ops []func(resolver) *pb.RequestOp
	for range g.rng.IntN(5) {
		switch x := g.rng.Float64(); {
		case x < 0.35:
			b := g.rangeReq()
			ops = append(ops, func(res resolver) *pb.RequestOp {
				return &pb.RequestOp{Request: &pb.RequestOp_RequestRange{RequestRange: b(res)}}
			})
		case x < 0.7:
			b := g.put(sc)
			ops = append(ops, func(res resolver) *pb.RequestOp {
				return &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: b(res)}}
			})
		case x < 0.9 || depth == 0:
			b := g.del(sc)
			ops = append(ops, func(res resolver) *pb.RequestOp {
				return &pb.RequestOp{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: b(res)}}
			})
		default:
			// Nested txns share the branch's scope: both of their branches
			// count against it, as in etcd's check.
			var cmps []func(resolver) *pb.Compare
			for range g.rng.IntN(3) {
				cmps = append(cmps, g.compare())
			}
			then := g.branch(depth-1, sc)
			els := g.branch(depth-1, sc)
			ops = append(ops, func(res resolver) *pb.RequestOp {
				t := &pb.TxnRequest{}
				for _, c := range cmps {
					t.Compare = append(t.Compare, c(res))
				}
				for _, op := range then {
					t.Success = append(t.Success, op(res))
				}
				for _, op := range els {
					t.Failure = append(t.Failure, op(res))
				}
				return &pb.RequestOp{Request: &pb.RequestOp_RequestTxn{RequestTxn: t}}
			})
		}
	}
	return ops
}

func (r revRef) String() string {
	switch r.kind {
	case refWrite:
		return fmt.Sprintf("write#%d", r.n)
	case refFuture:
		return "future"
	}
	return fmt.Sprint(r.n)
}
