package server

import (
	"strings"
	"testing"

	"github.com/tesseradb/tessera/proto/tesserapb"
)

// TestJoinLayout: a joining node's checks against the cluster's node table.
func TestJoinLayout(t *testing.T) {
	table := &tesserapb.NodeTableResponse{
		Bootstrap: &tesserapb.ClusterBootstrap{ClusterId: 7, Meta: &tesserapb.RangeDescriptor{RangeId: 1}},
		Nodes: []*tesserapb.NodeRecord{
			{NodeId: 1, Name: "a", PeerUrls: []string{"http://h:1"}, ClientUrls: []string{"http://h:11"}},
			{NodeId: 2, Name: "b", PeerUrls: []string{"http://h:2"}},
			{NodeId: 3, Name: "c", PeerUrls: []string{"http://h:3"}, State: tesserapb.NodeRecord_REMOVED},
			{NodeId: 4, PeerUrls: []string{"http://h:4"}},
		},
	}
	initial := func(spec ...string) []*tesserapb.NodeDescriptor {
		var out []*tesserapb.NodeDescriptor
		for _, s := range spec {
			name, u, _ := strings.Cut(s, "=")
			out = append(out, &tesserapb.NodeDescriptor{Name: name, PeerUrl: u})
		}
		return out
	}
	full := initial("a=http://h:1", "b=http://h:2", "d=http://h:4")
	for _, c := range []struct {
		name, self, url string
		initial         []*tesserapb.NodeDescriptor
		wantErr         string
	}{
		{"joins", "d", "http://h:4", full, ""},
		{"not added", "d", "http://h:5", initial("a=http://h:1", "b=http://h:2", "d=http://h:5"), "the cluster has no member with peer URL http://h:5 (add it first: etcdctl member add d --peer-urls=http://h:5"},
		{"a removed member's URL", "c", "http://h:3", initial("a=http://h:1", "b=http://h:2", "c=http://h:3"), "no member with peer URL http://h:3"},
		{"started under another name", "e", "http://h:2", initial("a=http://h:1", "e=http://h:2", "d=http://h:4"), `is named "b", not "e"`},
		{"name taken", "a", "http://h:4", initial("a=http://h:1", "b=http://h:2", "a=http://h:4"), `member 1 already has the name "a"`},
		{"initial cluster names a stranger", "d", "http://h:4", initial("a=http://h:1", "x=http://h:9", "d=http://h:4"), "--initial-cluster has x=http://h:9, which is not a member"},
		{"initial cluster misses a member", "d", "http://h:4", initial("a=http://h:1", "d=http://h:4"), "--initial-cluster lists 2 members, the cluster has 3"},
	} {
		b, id, err := joinLayout(table, c.initial, c.self, c.url)
		if c.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("%s: %v, want %q", c.name, err, c.wantErr)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if id != 4 || b.GetClusterId() != 7 || len(b.GetNodes()) != 3 || b.GetNodes()[2].GetName() != "d" || b.GetNodes()[0].GetClientUrl() != "" {
			t.Errorf("%s: id %d, layout %v", c.name, id, b)
		}
		if selfInLayout(b, "d", 3) != 4 {
			t.Errorf("%s: a restart would not find its id 4", c.name)
		}
	}
}
