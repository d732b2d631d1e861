package integration_test

import (
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestDeleteRange runs etcd's TestV3DeleteRange cases inside each of the
// four ranges (etcd's keys foo, foo/abc, fop with f replaced by the range's
// letter), with and without prev_kv, and checks the deleted count, the
// previous pairs, what remains, and that a read after the delete is at or
// after its revision.
func TestDeleteRange(t *testing.T) {
	_, cli := newClusterClient(t)
	kv := rawKV(cli)
	tests := []struct {
		name       string
		begin, end string // "L" stands for the range's letter
		prevKV     bool
		want       []string
		deleted    int64
	}{
		{"delete middle", "Loo/", "Lop", false, []string{"Loo", "Lop"}, 1},
		{"no delete", "Loo/", "Loo/", false, []string{"Loo", "Loo/abc", "Lop"}, 0},
		{"delete first", "Lo", "Lop", false, []string{"Lop"}, 2},
		{"delete tail", "Loo/", "Los", false, []string{"Loo"}, 2},
		{"delete exact", "Loo/abc", "", false, []string{"Loo", "Lop"}, 1},
		{"delete none [x,x)", "Loo", "Loo", false, []string{"Loo", "Loo/abc", "Lop"}, 0},
		{"delete none (inverted)", "Lop", "Loo", false, []string{"Loo", "Loo/abc", "Lop"}, 0},
		{"delete missing key", "Lox", "", true, []string{"Loo", "Loo/abc", "Lop"}, 0},
		{"delete middle with prev_kv", "Loo/", "Lop", true, []string{"Loo", "Lop"}, 1},
		{"delete all with prev_kv", "Lo", "Lp", true, nil, 3},
		{"delete from key (in the last range)", "Lo", "\x00", true, nil, 3},
	}
	for i, tt := range tests {
		for ri, letter := range rangeKeys {
			sub := func(s string) string {
				if len(s) > 0 && s[0] == 'L' {
					return letter + s[1:]
				}
				return s
			}
			begin, end := sub(tt.begin), sub(tt.end)
			if end == "\x00" && letter != "g" {
				continue // from-key spans every later range: see TestCrossRangeDelete
			}
			// Fresh keys for each case: a prefix per case under the letter.
			prefix := letter + string(rune('A'+i))
			m := &model{}
			for _, k := range []string{"Loo", "Loo/abc", "Lop"} {
				k = prefix + k[1:]
				m.put(k, "v"+k, put(t, cli, k, "v"+k))
			}
			dbegin := prefix + begin[1:]
			dend := end
			if end != "" && end != "\x00" {
				dend = prefix + end[1:]
			}
			var before []*mvccpb.KeyValue
			if from, to, ok := span(&pb.RangeRequest{Key: []byte(dbegin), RangeEnd: []byte(dend)}); ok {
				before = m.at(m.writes[len(m.writes)-1].rev, from, to)
			}
			resp, err := kv.DeleteRange(tctx(t), &pb.DeleteRangeRequest{Key: []byte(dbegin), RangeEnd: []byte(dend), PrevKv: tt.prevKV})
			if err != nil {
				t.Errorf("%s (range %d): %v", tt.name, dataRanges[ri], err)
				continue
			}
			if resp.Deleted != tt.deleted {
				t.Errorf("%s (range %d): deleted %d, want %d", tt.name, dataRanges[ri], resp.Deleted, tt.deleted)
			}
			if tt.prevKV {
				wantKVs(t, tt.name+": prev_kvs", resp.PrevKvs, before)
			} else if len(resp.PrevKvs) != 0 {
				t.Errorf("%s: prev_kvs without prev_kv: %s", tt.name, fmtKVs(resp.PrevKvs))
			}
			last := m.writes[len(m.writes)-1].rev
			if resp.Deleted > 0 && resp.Header.Revision <= last {
				t.Errorf("%s: delete revision %d <= last put %d", tt.name, resp.Header.Revision, last)
			}
			if resp.Deleted == 0 && resp.Header.Revision < last {
				t.Errorf("%s: no-op delete header revision %d < last put %d", tt.name, resp.Header.Revision, last)
			}
			g, err := cli.Get(tctx(t), prefix, clientv3.WithPrefix())
			must(t, "get", err)
			var want []string
			for _, k := range tt.want {
				want = append(want, prefix+k[1:])
			}
			wantKeys(t, tt.name, g.Kvs, want...)
			if g.Header.Revision < resp.Header.Revision {
				t.Errorf("%s: read after delete at %d < delete's %d", tt.name, g.Header.Revision, resp.Header.Revision)
			}
			// The deleted keys are still there at the revision before.
			if resp.Deleted > 0 {
				h, err := cli.Get(tctx(t), prefix, clientv3.WithPrefix(), clientv3.WithRev(resp.Header.Revision-1))
				must(t, "historical get", err)
				wantKVs(t, tt.name+": before the delete", h.Kvs, m.at(last, prefix, prefix+"\xff"))
				h, err = cli.Get(tctx(t), prefix, clientv3.WithPrefix(), clientv3.WithRev(resp.Header.Revision))
				must(t, "historical get", err)
				wantKeys(t, tt.name+": at the delete", h.Kvs, want...)
			}
		}
	}
}

// TestDeleteRecreate deletes a key and puts it again on every range: the
// new incarnation has a new create revision and version 1, and the old one
// is readable at its revisions.
func TestDeleteRecreate(t *testing.T) {
	_, cli := newClusterClient(t)
	for _, p := range rangeKeys {
		k := p + "/recreate"
		r1 := put(t, cli, k, "v1")
		r2 := put(t, cli, k, "v2")
		d, err := cli.Delete(tctx(t), k, clientv3.WithPrevKV())
		must(t, "delete", err)
		if d.Deleted != 1 || len(d.PrevKvs) != 1 || string(d.PrevKvs[0].Value) != "v2" || d.PrevKvs[0].Version != 2 {
			t.Errorf("%s: delete = %v", k, d)
		}
		if d.Header.Revision <= r2 {
			t.Errorf("%s: delete revision %d <= last put %d", k, d.Header.Revision, r2)
		}
		// Deleting again deletes nothing.
		d2, err := cli.Delete(tctx(t), k)
		must(t, "delete", err)
		if d2.Deleted != 0 {
			t.Errorf("%s: second delete deleted %d", k, d2.Deleted)
		}
		r3 := put(t, cli, k, "v3")
		m := &model{}
		m.put(k, "v1", r1)
		m.put(k, "v2", r2)
		m.del(k, d.Header.Revision)
		m.put(k, "v3", r3)
		for _, rv := range []int64{r1, r2, d.Header.Revision, r3} {
			g, err := cli.Get(tctx(t), k, clientv3.WithRev(rv))
			must(t, "get", err)
			wantKVs(t, k, g.Kvs, m.at(rv, k, k+"\x00"))
		}
		g, err := cli.Get(tctx(t), k)
		must(t, "get", err)
		if len(g.Kvs) != 1 || g.Kvs[0].CreateRevision != r3 || g.Kvs[0].Version != 1 {
			t.Errorf("%s: recreated key %s, want create revision %d version 1", k, fmtKVs(g.Kvs), r3)
		}
	}
}

// TestCrossRangeDelete checks Tessera's documented limit: a DeleteRange
// whose span covers several ranges fails with FailedPrecondition naming the
// ranges and deletes nothing, in every form (explicit end, from-key, prefix,
// everything).
func TestCrossRangeDelete(t *testing.T) {
	_, cli := newClusterClient(t)
	for _, p := range rangeKeys {
		put(t, cli, p, "v")
	}
	cases := []struct {
		what string
		key  string
		opts []clientv3.OpOption
	}{
		{"[a, z)", "a", []clientv3.OpOption{clientv3.WithRange("z")}},
		{"[a, c0): two ranges", "a", []clientv3.OpOption{clientv3.WithRange("c0")}},
		{"[c, e0)", "c", []clientv3.OpOption{clientv3.WithRange("e0")}},
		{"[a, b\\x00): one key past the split", "a", []clientv3.OpOption{clientv3.WithRange("b\x00")}},
		{"from key c", "c", []clientv3.OpOption{clientv3.WithFromKey()}},
		{"everything (from key)", "\x00", []clientv3.OpOption{clientv3.WithFromKey()}},
		{"everything (prefix \"\")", "", []clientv3.OpOption{clientv3.WithPrefix()}},
	}
	for _, tc := range cases {
		_, err := cli.Delete(tctx(t), tc.key, tc.opts...)
		wantCrossRange(t, "delete "+tc.what, err)
	}
	g, err := cli.Get(tctx(t), "", clientv3.WithPrefix())
	must(t, "get", err)
	wantKeys(t, "after refused deletes", g.Kvs, rangeKeys...)

	// Up to a split key is one range.
	d, err := cli.Delete(tctx(t), "a", clientv3.WithRange("b"))
	must(t, "delete [a, b)", err)
	if d.Deleted != 1 {
		t.Errorf("delete [a, b): deleted %d, want 1", d.Deleted)
	}
	d, err = cli.Delete(tctx(t), "f", clientv3.WithFromKey())
	must(t, "delete from f", err)
	if d.Deleted != 1 {
		t.Errorf("delete from f: deleted %d, want 1", d.Deleted)
	}
	g, err = cli.Get(tctx(t), "", clientv3.WithPrefix())
	must(t, "get", err)
	wantKeys(t, "after deletes of whole ranges", g.Kvs, "c", "e")
}
