package shard

import (
	"context"
	"errors"
	"testing"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/protobuf/proto"

	"github.com/tesseradb/tessera/engine"
	"github.com/tesseradb/tessera/proto/tesserapb"
	"github.com/tesseradb/tessera/raftgroup"
)

// TestApplyRefusesOldAuthRevision: a write checked under an older auth
// revision than the range knows is refused at apply with etcd's "auth:
// revision in header is old", identically on every replica, writing
// nothing; the range learns the auth revision from the proposers' stamps,
// keeps the highest across a restart, and unchecked writes are not
// compared.
func TestApplyRefusesOldAuthRevision(t *testing.T) {
	replicas := []*hashReplica{newHashReplica(t), newHashReplica(t), newHashReplica(t)}
	rev := baseRev
	steps := []struct {
		key            string
		checked, stamp uint64
		want           error
		known          uint64 // the range's auth revision afterwards
	}{
		{"b", 5, 5, nil, 5},
		// Proposed by a leader that lags (stamp 4): still refused, the
		// range knows 5.
		{"c", 4, 4, rpctypes.ErrGRPCAuthOldRevision, 5},
		// The leader has applied 7 since the check at 5.
		{"d", 5, 7, rpctypes.ErrGRPCAuthOldRevision, 7},
		// Not checked (auth disabled where it entered, or an internal
		// write): not compared.
		{"e", 0, 0, nil, 7},
		{"f", 7, 7, nil, 7},
	}
	for i, s := range steps {
		rev += 1 << 18
		op, err := proto.Marshal(putOp(s.key, "v"))
		if err != nil {
			t.Fatal(err)
		}
		for n, h := range replicas {
			err := h.lastResult(&tesserapb.ShardCommand{Revision: int64(rev), RequestOp: op, Generation: 1, AuthRevision: s.checked, ProposerAuthRevision: s.stamp})
			if !errors.Is(err, s.want) {
				t.Fatalf("step %d (%s checked at %d, stamped %d) on replica %d: %v, want %v", i, s.key, s.checked, s.stamp, n, err, s.want)
			}
			_, found, gerr := engine.MVCCGet(h.e, []byte(s.key), rev)
			if gerr != nil {
				t.Fatal(gerr)
			}
			if found != (s.want == nil) {
				t.Fatalf("step %d on replica %d: key %q written %v, want %v", i, n, s.key, found, s.want == nil)
			}
			if got := h.r.AuthRevision(); got != s.known {
				t.Fatalf("step %d on replica %d: range auth revision %d, want %d", i, n, got, s.known)
			}
		}
	}
	first := replicas[0].hash()
	for n, h := range replicas[1:] {
		if got := h.hash(); got.Hash != first.Hash {
			t.Fatalf("replica %d hash %d, replica 0 %d", n+1, got.Hash, first.Hash)
		}
	}

	// A restarted replica reloads the auth revision and decides alike.
	h := replicas[0]
	h.r.Close()
	r, err := Open(Config{NodeID: 1, Engine: h.e}, raftgroup.GroupID(hashTestDesc.GetRangeId()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	h.r = r
	if got := r.AuthRevision(); got != 7 {
		t.Fatalf("auth revision after reopen: %d, want 7", got)
	}
	op, err := proto.Marshal(putOp("g", "v"))
	if err != nil {
		t.Fatal(err)
	}
	rev += 1 << 18
	err = h.lastResult(&tesserapb.ShardCommand{Revision: int64(rev), RequestOp: op, Generation: 1, AuthRevision: 6})
	if !errors.Is(err, rpctypes.ErrGRPCAuthOldRevision) {
		t.Fatalf("write checked at 6 after reopen: %v, want %v", err, rpctypes.ErrGRPCAuthOldRevision)
	}
}

// TestProposalCarriesAuthRevision: a leader's proposal carries the auth
// revision from the request's context and stamps the one its node has
// applied; without a checked revision it stamps nothing.
func TestProposalCarriesAuthRevision(t *testing.T) {
	for _, tc := range []struct {
		checked, node, wantStamp uint64
	}{
		{checked: 3, node: 9, wantStamp: 9},
		{checked: 0, node: 9, wantStamp: 0},
	} {
		r := &Replica{cfg: Config{AuthRevision: func() uint64 { return tc.node }}}
		ctx := WithAuthRevision(context.Background(), tc.checked)
		if got := AuthRevisionFrom(ctx); got != tc.checked {
			t.Fatalf("AuthRevisionFrom: %d, want %d", got, tc.checked)
		}
		if got := r.stampAuthRevision(AuthRevisionFrom(ctx)); got != tc.wantStamp {
			t.Fatalf("checked %d, node at %d: stamp %d, want %d", tc.checked, tc.node, got, tc.wantStamp)
		}
	}
}

// TestAuthRevisionOnlyForOps: compactions and lease revocations (op nil)
// carry no checked auth revision, so they are never refused in some ranges
// and applied in others.
func TestAuthRevisionOnlyForOps(t *testing.T) {
	ctx := WithAuthRevision(context.Background(), 5)
	if got := opAuthRevision(ctx, nil); got != 0 {
		t.Fatalf("a command without an op carries auth revision %d", got)
	}
	if got := opAuthRevision(ctx, putOp("b", "v")); got != 5 {
		t.Fatalf("a put carries auth revision %d, want 5", got)
	}
}
