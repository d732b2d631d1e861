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
		{1, nil, `["" ""]`, "[1]", 1},
		{3, []string{"m"}, `["" "m"]["m" ""]`, "[1 2 3][1 2 3]", 3},
		{3, []string{"t", "d", "d", "m"}, `["" "d"]["d" "m"]["m" "t"]["t" ""]`, "[1 2 3][1 2 3][1 2 3][1 2 3]", 3},
		{4, []string{"k"}, `["" "k"]["k" ""]`, "[1 2 3][2 3 4]", 3},
		{5, nil, `["" ""]`, "[1 2 3]", 5},
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
			reps += fmt.Sprint(r.GetReplicas())
			if r.GetRangeId() != uint64(i+2) || r.GetGeneration() != 1 {
				t.Errorf("range %d: id %d gen %d", i, r.GetRangeId(), r.GetGeneration())
			}
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
