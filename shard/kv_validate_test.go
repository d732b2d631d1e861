package shard

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/protobuf/proto"

	"github.com/tesseradb/tessera/engine"
)

func TestLimits(t *testing.T) {
	l := DefaultLimits()
	if l.MaxTxnOps != 128 || l.MaxRequestBytes != 1572864 {
		t.Fatalf("defaults %+v are not etcd's", l)
	}
	if err := l.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []Limits{{MaxTxnOps: 0, MaxRequestBytes: 1}, {MaxTxnOps: 1, MaxRequestBytes: -1}} {
		if bad.Validate() == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}

func TestValidateSimpleRequests(t *testing.T) {
	l := DefaultLimits()
	tests := []struct {
		name string
		err  error
		want error
	}{
		{"range ok", ValidateRange(&pb.RangeRequest{Key: []byte("a")}), nil},
		{"range empty key", ValidateRange(&pb.RangeRequest{RangeEnd: []byte("b")}), rpctypes.ErrGRPCEmptyKey},
		{"range nil", ValidateRange(nil), rpctypes.ErrGRPCEmptyKey},
		{"range negative limit", ValidateRange(&pb.RangeRequest{Key: []byte("a"), Limit: -5, Revision: -3, MinModRevision: -1}), nil},
		{"range inverted", ValidateRange(&pb.RangeRequest{Key: []byte("b"), RangeEnd: []byte("a")}), nil},
		{"range all sort options", ValidateRange(&pb.RangeRequest{Key: []byte("a"), SortOrder: pb.RangeRequest_DESCEND, SortTarget: pb.RangeRequest_VALUE}), nil},
		{"range bad sort order", ValidateRange(&pb.RangeRequest{Key: []byte("a"), SortOrder: 200}), rpctypes.ErrGRPCInvalidSortOption},
		{"range bad sort target", ValidateRange(&pb.RangeRequest{Key: []byte("a"), SortTarget: 100}), rpctypes.ErrGRPCInvalidSortOption},
		{"range empty key before sort", ValidateRange(&pb.RangeRequest{SortTarget: 100}), rpctypes.ErrGRPCEmptyKey},
		{"put ok", ValidatePut(&pb.PutRequest{Key: []byte("a"), Lease: 5, PrevKv: true}, l), nil},
		{"put empty key", ValidatePut(&pb.PutRequest{Value: []byte("v")}, l), rpctypes.ErrGRPCEmptyKey},
		{"put ignore_value with value", ValidatePut(&pb.PutRequest{Key: []byte("a"), Value: []byte("v"), IgnoreValue: true}, l), rpctypes.ErrGRPCValueProvided},
		{"put ignore_value", ValidatePut(&pb.PutRequest{Key: []byte("a"), IgnoreValue: true, Lease: 3}, l), nil},
		{"put ignore_lease with lease", ValidatePut(&pb.PutRequest{Key: []byte("a"), Lease: 3, IgnoreLease: true}, l), rpctypes.ErrGRPCLeaseProvided},
		{"put value check before lease check", ValidatePut(&pb.PutRequest{Key: []byte("a"), Value: []byte("v"), IgnoreValue: true, Lease: 3, IgnoreLease: true}, l), rpctypes.ErrGRPCValueProvided},
		{"put too large", ValidatePut(&pb.PutRequest{Key: []byte("a"), Value: make([]byte, 2<<20)}, l), rpctypes.ErrGRPCRequestTooLarge},
		{"put empty key before size", ValidatePut(&pb.PutRequest{Value: make([]byte, 2<<20)}, l), rpctypes.ErrGRPCEmptyKey},
		{"delete ok", ValidateDeleteRange(&pb.DeleteRangeRequest{Key: []byte("a"), RangeEnd: []byte{0}}, l), nil},
		{"delete empty key", ValidateDeleteRange(&pb.DeleteRangeRequest{RangeEnd: []byte("z")}, l), rpctypes.ErrGRPCEmptyKey},
		{"delete too large", ValidateDeleteRange(&pb.DeleteRangeRequest{Key: make([]byte, 2<<20)}, l), rpctypes.ErrGRPCRequestTooLarge},
	}
	for _, tt := range tests {
		if !isErr(tt.err, tt.want) {
			t.Errorf("%s: err %v, want %v", tt.name, tt.err, tt.want)
		}
	}
}

// TestValidateTxnTooManyOps follows etcd's TestV3TxnTooManyOps and checks
// the budget of nested txns.
func TestValidateTxnTooManyOps(t *testing.T) {
	l := DefaultLimits()
	n := 0
	key := func() []byte { n++; return []byte(fmt.Sprintf("key-%d", n)) }
	add := []func(*pb.TxnRequest){
		func(r *pb.TxnRequest) {
			r.Compare = append(r.Compare, &pb.Compare{Result: pb.Compare_GREATER, Target: pb.Compare_CREATE, Key: key()})
		},
		func(r *pb.TxnRequest) { r.Success = append(r.Success, putOp(string(key()), "bar")) },
		func(r *pb.TxnRequest) { r.Failure = append(r.Failure, putOp(string(key()), "bar")) },
		func(r *pb.TxnRequest) {
			r.Success = append(r.Success, txnOp(&pb.TxnRequest{Success: []*pb.RequestOp{putOp(string(key()), "bar")}}))
		},
	}
	for i, f := range add {
		r := &pb.TxnRequest{}
		for range l.MaxTxnOps {
			f(r)
		}
		// 128 nested txns leave their ops no budget at all.
		if err := ValidateTxn(r, l); (err != nil) != (i == 3) {
			t.Errorf("#%d: %d ops: %v", i, l.MaxTxnOps, err)
		}
		f(r)
		if err := ValidateTxn(r, l); !isErr(err, rpctypes.ErrGRPCTooManyOps) {
			t.Errorf("#%d: %d ops: %v", i, l.MaxTxnOps+1, err)
		}
	}

	// A nested txn gets what its parent leaves: 128 - 101 = 27.
	nested := func(nestedOps int) *pb.TxnRequest {
		r := &pb.TxnRequest{}
		for range 100 {
			r.Success = append(r.Success, rangeOp("a", ""))
		}
		in := &pb.TxnRequest{}
		for range nestedOps {
			in.Failure = append(in.Failure, rangeOp("b", ""))
		}
		r.Success = append(r.Success, txnOp(in))
		return r
	}
	if err := ValidateTxn(nested(27), l); err != nil {
		t.Errorf("nested 27: %v", err)
	}
	if err := ValidateTxn(nested(28), l); !isErr(err, rpctypes.ErrGRPCTooManyOps) {
		t.Errorf("nested 28: %v", err)
	}
	// The apply path does not apply the configurable limit.
	if err := validateTxnStructure(nested(28)); err != nil {
		t.Errorf("structure of nested 28: %v", err)
	}
}

func TestValidateTxnOrder(t *testing.T) {
	l := Limits{MaxTxnOps: 2, MaxRequestBytes: 1 << 20}
	emptyRange := rangeOp("", "")
	tests := []struct {
		name string
		txn  *pb.TxnRequest
		want error
	}{
		{"too many ops before empty keys", &pb.TxnRequest{Compare: []*pb.Compare{{}, {}, {}}}, rpctypes.ErrGRPCTooManyOps},
		{"compare key before ops", &pb.TxnRequest{Compare: []*pb.Compare{{}}, Success: []*pb.RequestOp{{}}}, rpctypes.ErrGRPCEmptyKey},
		{"success before failure", &pb.TxnRequest{Success: []*pb.RequestOp{{}}, Failure: []*pb.RequestOp{emptyRange}}, rpctypes.ErrGRPCKeyNotFound},
		{"failure checked", &pb.TxnRequest{Failure: []*pb.RequestOp{rangeReqOp(&pb.RangeRequest{Key: []byte("k"), SortOrder: 99})}}, rpctypes.ErrGRPCInvalidSortOption},
		{"nested op", &pb.TxnRequest{Success: []*pb.RequestOp{txnOp(&pb.TxnRequest{Failure: []*pb.RequestOp{putReqOp(&pb.PutRequest{Key: []byte("k"), Lease: 1, IgnoreLease: true})}})}}, rpctypes.ErrGRPCLeaseProvided},
		{"nil nested txn is an empty txn", &pb.TxnRequest{Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestTxn{}}}}, nil},
		{"nil range is an empty key", &pb.TxnRequest{Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestRange{}}}}, rpctypes.ErrGRPCEmptyKey},
		{"op errors before overlaps", &pb.TxnRequest{Success: []*pb.RequestOp{putOp("a", ""), putOp("a", "")}, Failure: []*pb.RequestOp{delOp("", "")}}, rpctypes.ErrGRPCEmptyKey},
	}
	for _, tt := range tests {
		if err := ValidateTxn(tt.txn, l); !isErr(err, tt.want) {
			t.Errorf("%s: err %v, want %v", tt.name, err, tt.want)
		}
	}
}

// TestValidateTxnDuplicateKeys follows etcd's TestV3TxnDuplicateKeys and
// adds the corners of checkIntervals.
func TestValidateTxnDuplicateKeys(t *testing.T) {
	put := putOp("abc", "def")
	delKey := delOp("abc", "")
	delInRange := delOp("a", "b")
	delOutOfRange := delOp("abb", "abc")
	txnDel := txnOp(&pb.TxnRequest{Success: []*pb.RequestOp{delInRange}})
	txnDelTwoSide := txnOp(&pb.TxnRequest{Success: []*pb.RequestOp{delInRange}, Failure: []*pb.RequestOp{delInRange}})
	txnPut := txnOp(&pb.TxnRequest{Success: []*pb.RequestOp{put}})
	txnPutTwoSide := txnOp(&pb.TxnRequest{Success: []*pb.RequestOp{put}, Failure: []*pb.RequestOp{put}})
	dup := rpctypes.ErrGRPCDuplicateKey
	tests := []struct {
		name    string
		success []*pb.RequestOp
		want    error
	}{
		{"put put", []*pb.RequestOp{put, put}, dup},
		{"put del key", []*pb.RequestOp{put, delKey}, dup},
		{"put del range", []*pb.RequestOp{put, delInRange}, dup},
		{"put, then(del)", []*pb.RequestOp{put, txnDel}, dup},
		{"del, then(put)", []*pb.RequestOp{delInRange, txnPut}, dup},
		{"two nested two-sided puts", []*pb.RequestOp{txnPutTwoSide, txnPutTwoSide}, dup},
		{"del elsewhere, two-sided put", []*pb.RequestOp{delOutOfRange, txnPutTwoSide}, nil},
		{"nested deletes", []*pb.RequestOp{txnDel, txnDelTwoSide}, nil},
		{"deletes overlap", []*pb.RequestOp{delKey, delInRange, delKey, delInRange}, nil},
		{"put, del elsewhere", []*pb.RequestOp{put, delOutOfRange}, nil},
		// etcd checks a nested txn's puts only against deletes seen before it.
		{"then(put), then(del)", []*pb.RequestOp{txnPut, txnDel}, nil},
		{"then(del), then(put)", []*pb.RequestOp{txnDel, txnPut}, dup},
		{"put, then(put)", []*pb.RequestOp{put, txnPut}, dup},
		{"then(put), put", []*pb.RequestOp{txnPut, put}, dup},
		{"deep nesting", []*pb.RequestOp{txnOp(&pb.TxnRequest{Failure: []*pb.RequestOp{txnOp(&pb.TxnRequest{Success: []*pb.RequestOp{delOp("ab", "abd")}})}}), put}, dup},
		// range_end "\x00" is taken literally: an empty span.
		{"open-ended delete", []*pb.RequestOp{delOp("a", "\x00"), put}, nil},
		{"inverted delete", []*pb.RequestOp{delOp("b", "a"), putOp("a", ""), putOp("b", "")}, nil},
		{"range end exclusive", []*pb.RequestOp{delOp("a", "abc"), put}, nil},
		{"key plus zero byte", []*pb.RequestOp{delOp("abc", ""), putOp("abc\x00", "")}, nil},
		{"ranges are not writes", []*pb.RequestOp{rangeOp("abc", ""), put, rangeOp("a", "z")}, nil},
	}
	for _, tt := range tests {
		err := ValidateTxn(&pb.TxnRequest{Success: tt.success}, DefaultLimits())
		if !isErr(err, tt.want) {
			t.Errorf("%s: err %v, want %v", tt.name, err, tt.want)
		}
		// Success and failure exclude each other.
		if err := ValidateTxn(&pb.TxnRequest{Success: tt.success[:1], Failure: tt.success[1:]}, DefaultLimits()); err != nil && len(tt.success) == 2 {
			t.Errorf("%s split across branches: %v", tt.name, err)
		}
	}
}

func TestCheckRequestSize(t *testing.T) {
	l := DefaultLimits()
	// Find the largest value that fits: the boundary is sharp.
	fits := func(n int) bool {
		return CheckRequestSize(&pb.PutRequest{Key: []byte("k"), Value: make([]byte, n)}, l) == nil
	}
	lo, hi := 0, l.MaxRequestBytes
	for lo+1 < hi {
		mid := (lo + hi) / 2
		if fits(mid) {
			lo = mid
		} else {
			hi = mid
		}
	}
	if !fits(lo) || fits(lo+1) || lo < l.MaxRequestBytes-32 {
		t.Fatalf("boundary at value size %d for limit %d", lo, l.MaxRequestBytes)
	}
	big := []*pb.RequestOp{rangeOp(strings.Repeat("k", 2<<20), "")}
	if err := ValidateTxn(&pb.TxnRequest{Success: big}, l); err != nil {
		t.Fatalf("read-only txn size-checked: %v", err)
	}
	if err := ValidateTxn(&pb.TxnRequest{Success: big, Failure: []*pb.RequestOp{putOp("a", "")}}, l); !isErr(err, rpctypes.ErrGRPCRequestTooLarge) {
		t.Fatalf("write txn: %v", err)
	}
	// A nested read-only txn is not read-only by etcd's definition.
	if err := ValidateTxn(&pb.TxnRequest{Success: []*pb.RequestOp{txnOp(&pb.TxnRequest{Success: big})}}, l); !isErr(err, rpctypes.ErrGRPCRequestTooLarge) {
		t.Fatalf("nested read-only txn: %v", err)
	}
}

func TestCheckReadRevision(t *testing.T) {
	const cur, comp = 1000, 500
	tests := []struct {
		rev, compact engine.Revision
		want         error
	}{
		{0, comp, nil},
		{-7, comp, nil},
		{cur, comp, nil},
		{cur + 1, comp, rpctypes.ErrGRPCFutureRev},
		{comp, comp, nil},
		{comp - 1, comp, rpctypes.ErrGRPCCompacted},
		{1, 0, nil},
	}
	for _, tt := range tests {
		if err := CheckReadRevision(tt.rev, cur, tt.compact); !isErr(err, tt.want) {
			t.Errorf("read %d (compact %d): %v, want %v", tt.rev, tt.compact, err, tt.want)
		}
	}
}

func TestCheckCompactRevision(t *testing.T) {
	const cur = 1000
	tests := []struct {
		rev, compact engine.Revision
		want         error
	}{
		{500, 0, nil},
		{0, 0, nil},
		{-1, 0, rpctypes.ErrGRPCCompacted},
		{cur, 0, nil},
		{cur + 1, 0, rpctypes.ErrGRPCFutureRev},
		{500, 500, rpctypes.ErrGRPCCompacted},
		{499, 500, rpctypes.ErrGRPCCompacted},
		{501, 500, nil},
	}
	for _, tt := range tests {
		if err := CheckCompactRevision(tt.rev, cur, tt.compact); !isErr(err, tt.want) {
			t.Errorf("compact %d (at %d): %v, want %v", tt.rev, tt.compact, err, tt.want)
		}
	}
}

// TestIntervalSet checks the interval union against a naive one.
func TestIntervalSet(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	key := func() string { return string(rune('a' + rng.IntN(20))) }
	for round := range 200 {
		var s intervalSet
		var naive []interval
		for range rng.IntN(40) {
			var batch []interval
			for range 1 + rng.IntN(5) {
				b, e := key(), key()
				if rng.IntN(3) == 0 {
					e = b + "\x00"
				}
				batch = append(batch, interval{b, e})
			}
			naive = append(naive, batch...)
			s.add(normalizeIntervals(batch))
			for range 10 {
				k := key()
				if rng.IntN(2) == 0 {
					k += "\x00"
				}
				want := false
				for _, iv := range naive {
					want = want || (iv.begin <= k && k < iv.end)
				}
				if got := s.contains(k); got != want {
					t.Fatalf("round %d: contains(%q) = %v, want %v (%v)", round, k, got, want, naive)
				}
			}
		}
		all := s.all()
		for i := 1; i < len(all); i++ {
			if all[i-1].end >= all[i].begin {
				t.Fatalf("all() not normalized: %v", all)
			}
		}
	}
}

// FuzzValidateRequest decodes random bytes as a TxnRequest, validates it and
// applies it to a scratch batch. It checks that nothing panics, that a
// request failing the structural validation (everything but the
// configurable limits, which only the front door applies) fails ApplyTxn
// with the same error, that a failed ApplyTxn writes nothing, that a txn
// writes exactly when TxnChanged says so, and that a read-only txn evaluates
// on a snapshot as it applies.
func FuzzValidateRequest(f *testing.F) {
	seeds := []*pb.TxnRequest{
		{},
		{Success: []*pb.RequestOp{putOp("a", "1"), rangeOp("a", "\x00")}},
		{Compare: []*pb.Compare{cmpVersion("a", pb.Compare_GREATER, 1)}, Success: []*pb.RequestOp{delOp("a", "c")}, Failure: []*pb.RequestOp{putOp("b", "x")}},
		{Success: []*pb.RequestOp{putOp("a", "1"), putOp("a", "2")}},
		{Success: []*pb.RequestOp{delOp("a", "\x00"), putReqOp(&pb.PutRequest{Key: []byte("b"), IgnoreValue: true, PrevKv: true})}},
		{Success: []*pb.RequestOp{txnOp(&pb.TxnRequest{Compare: []*pb.Compare{{Key: []byte("c"), Target: pb.Compare_VALUE, TargetUnion: &pb.Compare_Value{Value: []byte("c1")}}}, Success: []*pb.RequestOp{putOp("d", "")}, Failure: []*pb.RequestOp{delOp("c", "")}})}},
		{Success: []*pb.RequestOp{rangeReqOp(&pb.RangeRequest{Key: []byte("a"), RangeEnd: []byte("z"), Limit: 2, SortOrder: pb.RangeRequest_DESCEND, SortTarget: pb.RangeRequest_VALUE, KeysOnly: true})}},
		{Success: []*pb.RequestOp{rangeReqOp(&pb.RangeRequest{Key: []byte("a"), RangeEnd: []byte("z"), MinModRevision: int64(baseRev + 2), CountOnly: true, Revision: int64(baseRev + 3)})}},
		{Success: []*pb.RequestOp{rangeReqOp(&pb.RangeRequest{Key: []byte("a"), Revision: -1}), putReqOp(&pb.PutRequest{Key: []byte("e"), Lease: 3})}},
		{Success: []*pb.RequestOp{{}}},
		{Failure: []*pb.RequestOp{rangeReqOp(&pb.RangeRequest{Key: []byte("a"), SortTarget: 42})}},
	}
	for _, s := range seeds {
		b, err := proto.Marshal(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{0x12, 0x02, 0x1a, 0x00})
	f.Add([]byte{0xff, 0x01})

	e := openEngine(f)
	b := e.NewBatch()
	rev := baseRev
	for i, k := range []string{"a", "b", "c", "a", "d"} {
		rev++
		if err := engine.MVCCPut(b, []byte(k), rev, engine.Value{CreateRev: rev, Version: 1, Lease: int64(i % 3), Data: []byte(k + "1")}); err != nil {
			f.Fatal(err)
		}
	}
	rev++
	if err := engine.MVCCDelete(b, []byte("d"), rev); err != nil {
		f.Fatal(err)
	}
	if err := b.Commit(false); err != nil {
		f.Fatal(err)
	}
	b.Close()
	txnRev := rev + 10
	env := TxnEnv{CompactRev: baseRev + 2, LeaseExists: func(id int64) bool { return id%2 == 0 }}

	f.Fuzz(func(t *testing.T, data []byte) {
		req := &pb.TxnRequest{}
		if err := proto.Unmarshal(data, req); err != nil {
			return
		}
		verr := ValidateTxn(req, DefaultLimits())
		serr := validateTxnStructure(req)
		if serr != nil && verr == nil {
			t.Fatalf("structural error %v passed ValidateTxn", serr)
		}
		b := e.NewBatch()
		defer b.Close()
		resp, err := ApplyTxnEnv(b, req, txnRev, env)
		if serr != nil && err != serr {
			t.Fatalf("invalid txn (%v) applied with error %v", serr, err)
		}
		if err != nil {
			if _, ok := rpctypes.Error(err).(rpctypes.EtcdError); !ok {
				t.Fatalf("non-etcd error from a healthy engine: %v", err)
			}
			if !b.Empty() {
				t.Fatalf("failed txn (%v) wrote %d keys", err, b.Count())
			}
		} else {
			if _, merr := proto.Marshal(resp); merr != nil {
				t.Fatalf("response does not marshal: %v", merr)
			}
			if TxnChanged(resp) == b.Empty() {
				t.Fatalf("TxnChanged %v but batch empty %v", TxnChanged(resp), b.Empty())
			}
		}
		if IsReadOnlyTxn(req) {
			ro, roErr := EvalReadOnlyTxnEnv(e, req, txnRev-1, env)
			if (roErr == nil) != (err == nil) || (err != nil && rpctypes.ErrorDesc(err) != rpctypes.ErrorDesc(roErr)) {
				t.Fatalf("read-only eval error %v, apply error %v", roErr, err)
			}
			if err == nil && !proto.Equal(ro, resp) {
				t.Fatalf("read-only eval differs:\n%v\n%v", ro, resp)
			}
		}
	})
}
