package shard

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/protobuf/proto"

	"github.com/tesseradb/tessera/engine"
)

func TestShardRangeRequestClip(t *testing.T) {
	tests := []struct {
		name          string
		key, end      string
		start, sEnd   string
		wantNil       bool
		wKey, wEnd    string
		wantUnchanged bool
	}{
		{name: "single key inside", key: "b", start: "a", sEnd: "c", wKey: "b", wEnd: ""},
		{name: "single key at start", key: "a", start: "a", sEnd: "c", wKey: "a", wEnd: ""},
		{name: "single key at end", key: "c", start: "a", sEnd: "c", wantNil: true},
		{name: "single key last shard", key: "z", start: "c", sEnd: "", wKey: "z", wEnd: ""},
		{name: "range inside", key: "b", end: "bb", start: "a", sEnd: "c", wKey: "b", wEnd: "bb"},
		{name: "range clipped left", key: "a", end: "d", start: "b", sEnd: "z", wKey: "b", wEnd: "d"},
		{name: "range clipped right", key: "a", end: "d", start: "", sEnd: "c", wKey: "a", wEnd: "c"},
		{name: "range clipped both", key: "a", end: "z", start: "c", sEnd: "d", wKey: "c", wEnd: "d"},
		{name: "range outside", key: "a", end: "b", start: "b", sEnd: "c", wantNil: true},
		{name: "open range", key: "b", end: "\x00", start: "a", sEnd: "c", wKey: "b", wEnd: "c"},
		{name: "open range last shard", key: "b", end: "\x00", start: "c", sEnd: "", wKey: "c", wEnd: "\x00"},
		{name: "open range all", key: "\x00", end: "\x00", start: "", sEnd: "", wKey: "\x00", wEnd: "\x00"},
		{name: "inverted range", key: "d", end: "b", start: "a", sEnd: "z", wantNil: true},
		{name: "range to last shard", key: "a", end: "z", start: "c", sEnd: "", wKey: "c", wEnd: "z"},
	}
	for _, tt := range tests {
		req := &pb.RangeRequest{Key: []byte(tt.key), RangeEnd: []byte(tt.end), Revision: 9}
		orig := proto.Clone(req)
		got := ShardRangeRequest(req, []byte(tt.start), []byte(tt.sEnd))
		if !proto.Equal(req, orig) {
			t.Errorf("%s: request modified", tt.name)
		}
		if tt.wantNil {
			if got != nil {
				t.Errorf("%s: got %v, want nil", tt.name, got)
			}
			continue
		}
		if got == nil || string(got.Key) != tt.wKey || string(got.RangeEnd) != tt.wEnd || got.Revision != 9 {
			t.Errorf("%s: got %v, want [%q, %q)", tt.name, got, tt.wKey, tt.wEnd)
		}
	}
}

// TestMergeRangeResponses checks, over random data, requests and shard
// boundaries, that the merge of the shards' answers equals the answer of one
// Range over the whole keyspace, which is etcd's. The data has many ties in
// version, create and mod revision (several keys per txn) and value, and more
// than 12 keys, so that the unstable sort's tie order is exercised.
func TestMergeRangeResponses(t *testing.T) {
	s := newKVStore(t)
	rng := rand.New(rand.NewPCG(3, 4))
	keys := make([]string, 40)
	for i := range keys {
		keys[i] = fmt.Sprintf("k%02d", i)
		if i%7 == 3 {
			keys[i] += "/x"
		}
	}
	values := []string{"", "a", "b", "bb", "c"}
	var revs []engine.Revision
	for range 120 {
		var ops []*pb.RequestOp
		used := map[string]bool{}
		for range 1 + rng.IntN(4) {
			k := keys[rng.IntN(len(keys))]
			if used[k] {
				continue
			}
			used[k] = true
			if rng.IntN(6) == 0 {
				ops = append(ops, delOp(k, ""))
			} else {
				ops = append(ops, putOp(k, values[rng.IntN(len(values))]))
			}
		}
		if _, rev, err := s.txn(&pb.TxnRequest{Success: ops}); err != nil {
			t.Fatal(err)
		} else {
			revs = append(revs, rev)
		}
	}
	snap := s.e.NewSnapshot()
	defer snap.Close()
	cur := s.rev

	pick := func() []byte { return []byte(keys[rng.IntN(len(keys))]) }
	between := func() []byte { return append(pick(), 'm') }
	randRev := func() int64 {
		switch rng.IntN(4) {
		case 0:
			return 0
		case 1:
			return int64(revs[rng.IntN(len(revs))] + engine.Revision(rng.IntN(3)) - 1)
		default:
			return int64(revs[rng.IntN(len(revs))])
		}
	}
	for i := range 3000 {
		req := &pb.RangeRequest{Key: pick()}
		switch rng.IntN(5) {
		case 0: // single key
		case 1:
			req.RangeEnd = []byte{0}
		case 2:
			req.Key, req.RangeEnd = []byte{0}, []byte{0}
		default:
			req.RangeEnd = pick()
		}
		switch rng.IntN(6) {
		case 0:
		case 1:
			req.Limit = -1
		case 2:
			req.Limit = math.MaxInt64
		default:
			req.Limit = int64(1 + rng.IntN(12))
		}
		req.SortOrder = pb.RangeRequest_SortOrder(rng.IntN(3))
		req.SortTarget = pb.RangeRequest_SortTarget(rng.IntN(5))
		req.KeysOnly = rng.IntN(3) == 0
		req.CountOnly = rng.IntN(8) == 0
		if rng.IntN(3) == 0 {
			req.Revision = int64(revs[len(revs)/2+rng.IntN(len(revs)/2)])
		}
		if rng.IntN(3) == 0 {
			req.MinModRevision = randRev()
			req.MaxModRevision = randRev()
		}
		if rng.IntN(3) == 0 {
			req.MinCreateRevision = randRev()
			req.MaxCreateRevision = randRev()
		}

		want, err := Range(snap, req, cur)
		if err != nil {
			t.Fatal(err)
		}

		// Random shard boundaries: some at keys, some between keys.
		var cuts [][]byte
		for range rng.IntN(6) {
			if rng.IntN(2) == 0 {
				cuts = append(cuts, pick())
			} else {
				cuts = append(cuts, between())
			}
		}
		slices.SortFunc(cuts, func(a, b []byte) int { return slices.Compare(a, b) })
		cuts = slices.CompactFunc(cuts, func(a, b []byte) bool { return string(a) == string(b) })
		bounds := append([][]byte{nil}, cuts...)
		var parts []*pb.RangeResponse
		for j, start := range bounds {
			var end []byte
			if j+1 < len(bounds) {
				end = bounds[j+1]
			}
			sr := ShardRangeRequest(req, start, end)
			if sr == nil {
				continue
			}
			part, err := Range(snap, sr, cur)
			if err != nil {
				t.Fatalf("#%d: shard [%q, %q) request %v: %v", i, start, end, sr, err)
			}
			parts = append(parts, part)
		}
		rng.Shuffle(len(parts), func(a, b int) { parts[a], parts[b] = parts[b], parts[a] })
		got := MergeRangeResponses(req, parts)
		if !proto.Equal(got, want) {
			t.Fatalf("#%d: request %v over cuts %q:\n got %v\nwant %v", i, req, cuts, got, want)
		}
	}
}

func TestMergeRangeResponsesEmpty(t *testing.T) {
	got := MergeRangeResponses(&pb.RangeRequest{Key: []byte("a"), Limit: 3}, []*pb.RangeResponse{nil})
	requireProtoEqual(t, "empty merge", got, &pb.RangeResponse{Header: &pb.ResponseHeader{}})
}
