package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/tesseradb/tessera/proto/tesserapb"
)

func sampleNodeTable() *tesserapb.NodesResponse {
	return &tesserapb.NodesResponse{LeaderNode: 1, Nodes: []*tesserapb.NodeInfo{
		{Node: &tesserapb.NodeRecord{NodeId: 1, Name: "n1", PeerUrls: []string{"http://h:2380"}, ClientUrls: []string{"http://h:2379"}, GossipAddr: "h:7946"},
			Liveness: "live", Gossip: "alive", HeartbeatAgeMs: 120, Replicas: 3, Leaders: 2, Bytes: 4096},
		{Node: &tesserapb.NodeRecord{NodeId: 4, PeerUrls: []string{"http://h4:2380"}, IsLearner: true}, Liveness: "dead", Gossip: "unknown", HeartbeatAgeMs: -1},
	}}
}

// TestWriteNodes: the table and the JSON of tessctl nodes (snake_case
// fields, an unstarted learner).
func TestWriteNodes(t *testing.T) {
	var b bytes.Buffer
	if err := writeNodes(&b, formatTable, nodeRows(sampleNodeTable())); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(b.String(), "\n")
	want := []string{
		"ID  NAME                   PEER URL        CLIENT URL     STATE   LIVENESS  REPLICAS  LEADERS  BYTES",
		"1   n1                     http://h:2380   http://h:2379  active  live      3         2        4096",
		"4   (unstarted) (learner)  http://h4:2380  -              active  dead      0         0        0",
	}
	for i, w := range want {
		if strings.TrimRight(lines[i], " ") != w {
			t.Errorf("line %d:\n got %q\nwant %q", i, lines[i], w)
		}
	}
	b.Reset()
	if err := writeNodes(&b, formatJSON, nodeRows(sampleNodeTable())); err != nil {
		t.Fatal(err)
	}
	var v struct {
		Nodes []map[string]any `json:"nodes"`
	}
	if err := json.Unmarshal(b.Bytes(), &v); err != nil {
		t.Fatal(err)
	}
	n := v.Nodes[0]
	for k, w := range map[string]any{"id": 1.0, "name": "n1", "gossip_addr": "h:7946", "liveness": "live", "heartbeat_age_ms": 120.0, "replicas": 3.0, "leaders": 2.0, "bytes": 4096.0, "learner": false, "state": "active"} {
		if n[k] != w {
			t.Errorf("json %s = %v, want %v", k, n[k], w)
		}
	}
	if u, ok := n["peer_urls"].([]any); !ok || len(u) != 1 {
		t.Errorf("json peer_urls = %v", n["peer_urls"])
	}
	if u, ok := v.Nodes[1]["client_urls"].([]any); !ok || len(u) != 0 {
		t.Errorf("unstarted node's client_urls = %v, want []", v.Nodes[1]["client_urls"])
	}
}
