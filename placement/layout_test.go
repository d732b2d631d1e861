package placement

import (
	"fmt"
	"testing"

	"github.com/tesseradb/tessera/proto/tesserapb"
)

func nodes(n int) []*tesserapb.NodeDescriptor {
	var out []*tesserapb.NodeDescriptor
	for i := 1; i <= n; i++ {
		out = append(out, &tesserapb.NodeDescriptor{NodeId: uint64(i), Name: fmt.Sprintf("n%d", i), PeerUrl: fmt.Sprintf("http://127.0.0.1:%d", 2380+i)})
	}
	return out
}

func TestInitialLayout(t *testing.T) {
	for _, c := range []struct {
		nodes     int
		split     []string
		wantSpans string
		wantReps  string
		wantMeta  int
	}{
		// Replicas as node/replica id: ids 1..n in round-robin order.
		{1, nil, `["" ""]`, "[n1/r1]", 1},
		{3, []string{"m"}, `["" "m"]["m" ""]`, "[n1/r1 n2/r2 n3/r3][n2/r1 n3/r2 n1/r3]", 3},
		{3, []string{"t", "d", "d", "m"}, `["" "d"]["d" "m"]["m" "t"]["t" ""]`, "[n1/r1 n2/r2 n3/r3][n2/r1 n3/r2 n1/r3][n3/r1 n1/r2 n2/r3][n1/r1 n2/r2 n3/r3]", 3},
		{4, []string{"k"}, `["" "k"]["k" ""]`, "[n1/r1 n2/r2 n3/r3][n2/r1 n3/r2 n4/r3]", 3},
		{5, nil, `["" ""]`, "[n1/r1 n2/r2 n3/r3]", 5},
	} {
		var split [][]byte
		for _, s := range c.split {
			split = append(split, []byte(s))
		}
		b, err := InitialLayout(nodes(c.nodes), split)
		if err != nil {
			t.Fatal(err)
		}
		var spans, reps string
		for i, r := range b.GetRanges() {
			spans += fmt.Sprintf("[%q %q]", r.GetStartKey(), r.GetEndKey())
			reps += replicaString(r)
			if r.GetRangeId() != uint64(i+2) || r.GetGeneration() != 1 || r.GetNextReplicaId() != uint64(len(r.GetReplicas())+1) {
				t.Errorf("range %d: id %d gen %d next replica id %d", i, r.GetRangeId(), r.GetGeneration(), r.GetNextReplicaId())
			}
		}
		if m := b.GetMeta(); m.GetNextReplicaId() != uint64(c.wantMeta+1) || m.GetReplicas()[0].GetReplicaId() != 1 {
			t.Errorf("%d nodes: meta %s next replica id %d", c.nodes, replicaString(m), m.GetNextReplicaId())
		}
		if spans != c.wantSpans || reps != c.wantReps || len(b.GetMeta().GetReplicas()) != c.wantMeta {
			t.Errorf("%d nodes, split %v: spans %s reps %s meta %v; want %s %s %d", c.nodes, c.split, spans, reps, b.GetMeta().GetReplicas(), c.wantSpans, c.wantReps, c.wantMeta)
		}
	}
	a, _ := InitialLayout(nodes(3), nil)
	b, _ := InitialLayout(nodes(3), nil)
	if a.GetClusterId() != b.GetClusterId() || a.GetClusterId() == 0 {
		t.Error("cluster id not deterministic")
	}
	if _, err := InitialLayout(nodes(3), [][]byte{{}}); err == nil {
		t.Error("empty split key accepted")
	}
	if _, err := InitialLayout(nil, nil); err == nil {
		t.Error("empty cluster accepted")
	}
}

func replicaString(d *tesserapb.RangeDescriptor) string {
	s := "["
	for i, r := range d.GetReplicas() {
		if i > 0 {
			s += " "
		}
		s += fmt.Sprintf("n%d/r%d", r.GetNodeId(), r.GetReplicaId())
	}
	return s + "]"
}
