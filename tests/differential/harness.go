// Package differential checks that two etcd-compatible servers answer the
// same KV workload the same way: it sends a seeded random sequence of Put,
// Range, DeleteRange, Txn (nested, with compares) and Compact requests, with
// all their options, to both and compares every response field by field,
// errors by their etcd error.
//
// Revisions cannot be compared as numbers: etcd counts writes, Tessera's
// revisions are timestamps. Each side keeps the revisions of the writes of
// the run (the header revision of every response that changed something: a
// Put, a DeleteRange that deleted, a Txn that did either), which must
// increase strictly; a key's create and mod revision must be one of them and
// compares as its index (w1, w2, ...); any other revision (a header) compares
// as the number of writes at or below it, so a read at a Tessera timestamp
// between two writes matches etcd's revision of the earlier write. Requests
// name revisions the same way (the k-th write; compaction at the k-th write
// on each side) and each side resolves them to its own.
//
// The servers must not hold keys after the run's prefix (open-ended ranges
// would see them) and should be otherwise idle. cluster_id, member_id and
// raft_term of headers are not compared.
package differential

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Options configure a run.
type Options struct {
	// Seed selects the workload.
	Seed int64
	// NOps is the number of operations.
	NOps int
	// Prefix is put before every key; empty means "diff/<seed>/". It must
	// hold no key on either server.
	Prefix string
	// Leases grants three leases with fixed IDs on both sides (so IDs
	// compare as they are) and attaches keys to them; puts also name an
	// ungranted lease now and then.
	Leases bool
	// Compact issues compactions (at the revision of the k-th write).
	Compact bool
	// OpTimeout bounds each request; 0 means 10s.
	OpTimeout time.Duration
	// Skip, if set, drops a request before it is sent to either side (for
	// requests one side documents it refuses, such as Tessera's writes
	// across ranges). It sees the request as built for side A.
	Skip func(req any) bool
	// SerializableAsLinearizable sends side B serializable Ranges as
	// linearizable ones. A serializable read on a multi-node cluster may be
	// served by a follower that lags, which single-node etcd never shows; as
	// linearizable reads their answers must match exactly
	// (docs/compatibility.md describes Tessera's serializable reads).
	SerializableAsLinearizable bool
	// KeepKeys leaves the run's keys in place at the end (for servers that
	// are thrown away after the test, or that cannot delete the whole prefix
	// in one request).
	KeepKeys bool

	// noiseB writes a key before the prefix on side B at random points, so
	// that B's revisions have gaps as Tessera's do (to test the harness
	// with two etcds).
	noiseB bool
}

// noiseKey sorts before every prefix of the form "diff/...".
const noiseKey = "!differential-noise"

// Run runs nOps operations of the workload of seed against a and b with
// leases and compaction, and fails t at the first difference.
func Run(t testing.TB, seed int64, a, b *clientv3.Client, nOps int) {
	t.Helper()
	RunOptions(t, a, b, Options{Seed: seed, NOps: nOps, Leases: true, Compact: true})
}

// leaseTTL outlives any run: a lease expiring mid-run would delete keys at a
// time that differs between the sides.
const leaseTTL = 3600

// RunOptions is Run with all options.
func RunOptions(t testing.TB, a, b *clientv3.Client, o Options) {
	t.Helper()
	if o.Prefix == "" {
		o.Prefix = fmt.Sprintf("diff/%d/", o.Seed)
	}
	if o.OpTimeout == 0 {
		o.OpTimeout = 10 * time.Second
	}
	sides := [2]*side{newSide("A", a), newSide("B", b)}
	noise := rand.New(rand.NewPCG(uint64(o.Seed), 0x0415e))
	addNoise := func(p float64) {
		if !o.noiseB || noise.Float64() >= p {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), o.OpTimeout)
		defer cancel()
		for range 1 + noise.IntN(3) {
			if _, err := sides[1].kv.Put(ctx, &pb.PutRequest{Key: []byte(noiseKey)}); err != nil {
				t.Fatalf("side B: noise write: %v", err)
			}
		}
	}
	addNoise(1)
	for _, s := range sides {
		ctx, cancel := context.WithTimeout(context.Background(), o.OpTimeout)
		resp, err := s.kv.Range(ctx, &pb.RangeRequest{Key: []byte(o.Prefix), RangeEnd: []byte(o.Prefix + "\xff"), CountOnly: true})
		cancel()
		if err != nil {
			t.Fatalf("side %s: read prefix %q: %v", s.name, o.Prefix, err)
		}
		if resp.Count != 0 {
			t.Fatalf("side %s: prefix %q holds %d keys", s.name, o.Prefix, resp.Count)
		}
		s.base = resp.GetHeader().GetRevision()
	}

	idBase := int64(0x5e55)<<32 + (o.Seed&0xffffff)<<4
	var leases []int64
	if o.Leases {
		for i := range int64(3) {
			id := idBase + i + 1
			for _, s := range sides {
				ctx, cancel := context.WithTimeout(context.Background(), o.OpTimeout)
				_, err := s.lease.LeaseGrant(ctx, &pb.LeaseGrantRequest{ID: id, TTL: leaseTTL})
				cancel()
				if err != nil {
					t.Fatalf("side %s: grant lease %x: %v", s.name, id, err)
				}
			}
			leases = append(leases, id)
		}
	}
	t.Cleanup(func() {
		for _, s := range sides {
			if o.KeepKeys {
				break
			}
			ctx, cancel := context.WithTimeout(context.Background(), o.OpTimeout)
			if _, err := s.kv.DeleteRange(ctx, &pb.DeleteRangeRequest{Key: []byte(o.Prefix), RangeEnd: []byte(o.Prefix + "\xff")}); err != nil {
				t.Errorf("side %s: clean up prefix: %v", s.name, err)
			}
			for _, id := range leases {
				if _, err := s.lease.LeaseRevoke(ctx, &pb.LeaseRevokeRequest{ID: id}); err != nil {
					t.Errorf("side %s: revoke lease %x: %v", s.name, id, err)
				}
			}
			cancel()
		}
	})

	g := newGenerator(o.Seed, o.Prefix, leases, idBase+15, o.Compact, func() int {
		return min(len(sides[0].writes), len(sides[1].writes))
	})
	st := stats{ops: map[string]int{}, errs: map[string]int{}}
	var recent []string
	for i := range o.NOps {
		addNoise(0.3)
		req := g.next()
		if o.Skip != nil && o.Skip(req.build(sides[0].resolve)) {
			st.ops["skipped"]++
			continue
		}
		var resps [2]proto.Message
		var errs [2]error
		var reqs [2]any
		for j, s := range sides {
			reqs[j] = req.build(s.resolve)
			if rr, ok := reqs[j].(*pb.RangeRequest); ok && j == 1 && rr.Serializable && o.SerializableAsLinearizable {
				rr.Serializable = false
			}
			ctx, cancel := context.WithTimeout(context.Background(), o.OpTimeout)
			resps[j], errs[j] = s.do(ctx, reqs[j])
			cancel()
			if errs[j] != nil {
				if _, ok := rpctypes.Error(errs[j]).(rpctypes.EtcdError); !ok {
					t.Fatalf("op #%d %s: side %s failed outside etcd's errors: %v\nrequest: %s", i, req.kind, s.name, errs[j], text(reqs[j]))
				}
			}
		}
		desc := fmt.Sprintf("#%d %s %s", i, req.kind, text(reqs[0]))
		recent = append(recent, desc)
		if len(recent) > 8 {
			recent = recent[1:]
		}
		fail := func(format string, args ...any) {
			t.Helper()
			t.Fatalf("op #%d (%s) diverged: %s\nrequest to A: %s\nrequest to B: %s\nA: %s\nB: %s\nrecent ops:\n  %s",
				i, req.kind, fmt.Sprintf(format, args...), text(reqs[0]), text(reqs[1]),
				describe(resps[0], errs[0]), describe(resps[1], errs[1]), strings.Join(recent, "\n  "))
		}
		st.ops[req.kind]++
		if ea, eb := errKey(errs[0]), errKey(errs[1]); ea != eb {
			fail("errors differ: %q vs %q", ea, eb)
		} else if ea != "" {
			st.errs[ea]++
			continue
		}
		for j, s := range sides {
			if err := s.record(resps[j]); err != nil {
				fail("side %s: %v", s.name, err)
			}
		}
		la, lb := sides[0].flatten(resps[0]), sides[1].flatten(resps[1])
		if k := firstDiff(la, lb); k >= 0 {
			fail("field %q vs %q\nA (normalized): %s\nB (normalized): %s", at(la, k), at(lb, k), strings.Join(la, "; "), strings.Join(lb, "; "))
		}
	}
	t.Logf("seed %d: %d ops %v, %d writes, etcd errors %v", o.Seed, o.NOps, st.ops, len(sides[0].writes), st.errs)
}

type stats struct {
	ops  map[string]int
	errs map[string]int
}

// side is one server and what the run learned of its revisions.
type side struct {
	name  string
	kv    pb.KVClient
	lease pb.LeaseClient
	// base is the header revision before the run.
	base int64
	// writes are the revisions of the run's writes, increasing.
	writes []int64
}

func newSide(name string, c *clientv3.Client) *side {
	conn := c.ActiveConnection()
	return &side{name: name, kv: pb.NewKVClient(conn), lease: pb.NewLeaseClient(conn)}
}

func (s *side) resolve(r revRef) int64 {
	switch r.kind {
	case refWrite:
		if r.n >= 0 && int(r.n) < len(s.writes) {
			return s.writes[r.n]
		}
		return 0
	case refFuture:
		return 1 << 62
	}
	return r.n
}

func (s *side) do(ctx context.Context, req any) (proto.Message, error) {
	var resp proto.Message
	var err error
	switch r := req.(type) {
	case *pb.PutRequest:
		resp, err = s.kv.Put(ctx, r)
	case *pb.RangeRequest:
		resp, err = s.kv.Range(ctx, r)
	case *pb.DeleteRangeRequest:
		resp, err = s.kv.DeleteRange(ctx, r)
	case *pb.TxnRequest:
		resp, err = s.kv.Txn(ctx, r)
	case *pb.CompactionRequest:
		resp, err = s.kv.Compact(ctx, r)
	default:
		return nil, fmt.Errorf("differential: unknown request %T", req)
	}
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// record notes the revision of a response that wrote.
func (s *side) record(resp proto.Message) error {
	if !changed(resp) {
		return nil
	}
	h, ok := resp.(interface{ GetHeader() *pb.ResponseHeader })
	if !ok {
		return fmt.Errorf("response %T has no header", resp)
	}
	rev := h.GetHeader().GetRevision()
	if rev <= s.base {
		return fmt.Errorf("write at revision %d, not above the revision %d before the run", rev, s.base)
	}
	if n := len(s.writes); n > 0 && rev <= s.writes[n-1] {
		return fmt.Errorf("write at revision %d, not above the previous write's %d", rev, s.writes[n-1])
	}
	s.writes = append(s.writes, rev)
	return nil
}

func changed(resp proto.Message) bool {
	switch r := resp.(type) {
	case *pb.PutResponse:
		return true
	case *pb.DeleteRangeResponse:
		return r.GetDeleted() > 0
	case *pb.TxnResponse:
		for _, op := range r.GetResponses() {
			switch {
			case op.GetResponsePut() != nil:
				return true
			case op.GetResponseDeleteRange().GetDeleted() > 0:
				return true
			case op.GetResponseTxn() != nil && changed(op.GetResponseTxn()):
				return true
			}
		}
	}
	return false
}

// floorRev names a header revision by the number of writes at or below it.
func (s *side) floorRev(r int64) string {
	switch {
	case r <= 0:
		return fmt.Sprint(r)
	case r < s.base:
		return "before-run"
	}
	n := sort.Search(len(s.writes), func(i int) bool { return s.writes[i] > r })
	return fmt.Sprintf("w%d", n)
}

// exactRev names a key's create or mod revision by its write.
func (s *side) exactRev(r int64) string {
	if i, ok := slices.BinarySearch(s.writes, r); ok {
		return fmt.Sprintf("w%d", i+1)
	}
	if r <= s.base {
		return "before-run"
	}
	return fmt.Sprintf("not-a-write(%d)", r)
}

// flatten lists every set field of a response as "path=value", revisions
// normalized, in field-number order.
func (s *side) flatten(m proto.Message) []string {
	var out []string
	if m != nil {
		s.walk(m.ProtoReflect(), "", &out)
	}
	return out
}

func (s *side) walk(m protoreflect.Message, path string, out *[]string) {
	fields := m.Descriptor().Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		if !m.Has(fd) {
			continue
		}
		name := path + string(fd.Name())
		v := m.Get(fd)
		if fd.IsList() {
			l := v.List()
			for j := 0; j < l.Len(); j++ {
				s.field(fd, l.Get(j), fmt.Sprintf("%s[%d]", name, j), out)
			}
			continue
		}
		s.field(fd, v, name, out)
	}
}

func (s *side) field(fd protoreflect.FieldDescriptor, v protoreflect.Value, name string, out *[]string) {
	if fd.Kind() == protoreflect.MessageKind {
		if fd.Message().FullName() != "etcdserverpb.ResponseHeader" {
			*out = append(*out, name+"{}")
		}
		s.walk(v.Message(), name+".", out)
		return
	}
	var val string
	switch fd.FullName() {
	case "etcdserverpb.ResponseHeader.cluster_id", "etcdserverpb.ResponseHeader.member_id", "etcdserverpb.ResponseHeader.raft_term":
		return
	case "etcdserverpb.ResponseHeader.revision":
		val = s.floorRev(v.Int())
	case "mvccpb.KeyValue.create_revision", "mvccpb.KeyValue.mod_revision":
		val = s.exactRev(v.Int())
	default:
		if fd.Kind() == protoreflect.BytesKind {
			val = fmt.Sprintf("%q", v.Bytes())
		} else {
			val = v.String()
		}
	}
	*out = append(*out, name+"="+val)
}

func firstDiff(a, b []string) int {
	for i := range max(len(a), len(b)) {
		if i >= len(a) || i >= len(b) || a[i] != b[i] {
			return i
		}
	}
	return -1
}

func at(l []string, i int) string {
	if i < len(l) {
		return l[i]
	}
	return "<none>"
}

// errKey identifies an etcd error by gRPC code and description.
func errKey(err error) string {
	if err == nil {
		return ""
	}
	return fmt.Sprintf("%s: %s", status.Code(err), rpctypes.ErrorDesc(err))
}

func text(m any) string {
	if pm, ok := m.(proto.Message); ok {
		return prototext.MarshalOptions{}.Format(pm)
	}
	return fmt.Sprint(m)
}

func describe(m proto.Message, err error) string {
	if err != nil {
		return "error " + errKey(err)
	}
	return text(m)
}
