package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"testing"
)

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// sampleRanges is a cluster's ranges with a leaderless range and a range
// whose leader did not answer.
func sampleRanges() []rangeInfo {
	all := []replicaRef{{1, 1, "voter"}, {2, 2, "voter"}, {3, 3, "voter"}}
	return []rangeInfo{
		{ID: 1, Meta: true, StartKey: []byte{}, EndKey: []byte{}, Generation: 1, Replicas: all, Leader: 1, Term: 2, AppliedIndex: ptr[uint64](17),
			Reports: []replicaReport{{1, 1, 2, 17}}},
		{ID: 2, StartKey: []byte{}, EndKey: []byte("g"), Span: `["", "g")`, Generation: 1, Replicas: all, Leader: 2, Term: 3,
			AppliedIndex: ptr[uint64](1034), ResolvedRevision: ptr[int64](470620909530775552), CompactRevision: ptr[int64](0),
			Reports: []replicaReport{{2, 2, 3, 1034}}},
		{ID: 3, StartKey: []byte("g"), EndKey: []byte("n"), Span: `["g", "n")`, Generation: 1, Replicas: all, Term: 4,
			Reports: []replicaReport{{1, 0, 4, 9}}},
		{ID: 10, StartKey: []byte("n"), EndKey: []byte{}, Span: `["n", "")`, Generation: 1, Replicas: []replicaRef{{1, 3, "voter"}, {2, 1, "voter"}, {4, 5, "learner"}}, Leader: 3, Term: 12,
			Reports: []replicaReport{{1, 3, 12, 9}}},
	}
}

func TestWriteRangesTable(t *testing.T) {
	var b bytes.Buffer
	if err := writeRanges(&b, formatTable, sampleRanges()); err != nil {
		t.Fatal(err)
	}
	want := `RANGE  SPAN        REPLICAS      LEADER  TERM  APPLIED  RESOLVED
meta   -           1/1,2/2,3/3   1       2     17       -
2      ["", "g")   1/1,2/2,3/3   2       3     1034     2026-11-21T15:51:36.733Z
3      ["g", "n")  1/1,2/2,3/3   -       4     -        -
10     ["n", "")   1/3,2/1,4/5L  3       12    -        -

REPLICAS: node id/replica id of each replica (a learner ends in "L").
RESOLVED: no write at or below this revision can still appear in the range (the leader's view).
` + revisionLegend
	if b.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestWriteRangesJSON(t *testing.T) {
	var b bytes.Buffer
	if err := writeRanges(&b, formatJSON, sampleRanges()[1:3]); err != nil {
		t.Fatal(err)
	}
	want := `{
  "ranges": [
    {
      "range_id": 2,
      "meta": false,
      "start_key": "",
      "end_key": "Zw==",
      "span": "[\"\", \"g\")",
      "generation": 1,
      "replicas": [
        {
          "node_id": 1,
          "replica_id": 1,
          "type": "voter"
        },
        {
          "node_id": 2,
          "replica_id": 2,
          "type": "voter"
        },
        {
          "node_id": 3,
          "replica_id": 3,
          "type": "voter"
        }
      ],
      "leader": 2,
      "term": 3,
      "applied_index": 1034,
      "resolved_revision": 470620909530775552,
      "compact_revision": 0,
      "replica_reports": [
        {
          "node_id": 2,
          "leader": 2,
          "term": 3,
          "applied_index": 1034
        }
      ]
    },
    {
      "range_id": 3,
      "meta": false,
      "start_key": "Zw==",
      "end_key": "bg==",
      "span": "[\"g\", \"n\")",
      "generation": 1,
      "replicas": [
        {
          "node_id": 1,
          "replica_id": 1,
          "type": "voter"
        },
        {
          "node_id": 2,
          "replica_id": 2,
          "type": "voter"
        },
        {
          "node_id": 3,
          "replica_id": 3,
          "type": "voter"
        }
      ],
      "leader": 0,
      "term": 4,
      "applied_index": null,
      "resolved_revision": null,
      "compact_revision": null,
      "replica_reports": [
        {
          "node_id": 1,
          "leader": 0,
          "term": 4,
          "applied_index": 9
        }
      ]
    }
  ]
}
`
	if b.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", b.String(), want)
	}
	// It reads back as what was written, revisions exact.
	var back struct {
		Ranges []rangeInfo `json:"ranges"`
	}
	if err := json.Unmarshal(b.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back.Ranges, sampleRanges()[1:3]) {
		t.Errorf("read back %s", mustJSON(t, back.Ranges))
	}
	// No ranges: an empty list, not null.
	b.Reset()
	if err := writeRanges(&b, formatJSON, nil); err != nil {
		t.Fatal(err)
	}
	if got := b.String(); got != "{\n  \"ranges\": []\n}\n" {
		t.Errorf("no ranges: %q", got)
	}
}

func sampleNodes() []nodeStatus {
	return []nodeStatus{
		{ID: 1, Name: "node1", ClientURL: "http://127.0.0.1:2379", PeerURL: "http://127.0.0.1:2380", Healthy: true, Health: "healthy", Replicas: ptr(5), Leaders: ptr(3), MetaLeader: true, HasMeta: true},
		{ID: 2, Name: "n2", ClientURL: "http://127.0.0.1:12379", PeerURL: "http://127.0.0.1:12380", Healthy: true, Health: "healthy", Replicas: ptr(4), Leaders: ptr(0), Error: ""},
		{ID: 3, Name: "node3", PeerURL: "http://127.0.0.1:22380", Health: "unhealthy: no client URL known", Error: "no client URL known"},
		{ID: 11, Name: "node11", ClientURL: "http://127.0.0.1:32379", PeerURL: "http://127.0.0.1:32380", Health: "unhealthy: etcdserver: request timed out", Replicas: ptr(5), Leaders: ptr(1), HasMeta: true},
		{ID: 12, Name: "node12", ClientURL: "http://127.0.0.1:42379", PeerURL: "http://127.0.0.1:42380", Healthy: true, Health: "healthy", Error: "ranges from http://127.0.0.1:42379: Unimplemented"},
	}
}

func TestWriteStatusTable(t *testing.T) {
	var b bytes.Buffer
	if err := writeStatus(&b, formatTable, sampleNodes()); err != nil {
		t.Fatal(err)
	}
	want := `ID  NAME    CLIENT URL              REPLICAS  LEADERS  META     HEALTH
1   node1   http://127.0.0.1:2379   5         3        leader   healthy
2   n2      http://127.0.0.1:12379  4         0        -        healthy
3   node3   -                       -         -        -        unhealthy: no client URL known
11  node11  http://127.0.0.1:32379  5         1        replica  unhealthy: etcdserver: request timed out
12  node12  http://127.0.0.1:42379  -         -        -        healthy (ranges from http://127.0.0.1:42379: Unimplemented)
`
	if b.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestWriteStatusJSON(t *testing.T) {
	var b bytes.Buffer
	if err := writeStatus(&b, formatJSON, sampleNodes()[2:3]); err != nil {
		t.Fatal(err)
	}
	want := `{
  "nodes": [
    {
      "id": 3,
      "name": "node3",
      "client_url": "",
      "peer_url": "http://127.0.0.1:22380",
      "healthy": false,
      "health": "unhealthy: no client URL known",
      "replicas": null,
      "leaders": null,
      "meta_leader": false,
      "has_meta": false,
      "error": "no client URL known"
    }
  ]
}
`
	if b.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestParseFormat(t *testing.T) {
	for _, tt := range []struct {
		in      string
		want    format
		wantErr bool
	}{{"table", formatTable, false}, {"json", formatJSON, false}, {"simple", 0, true}, {"", 0, true}, {"JSON", 0, true}} {
		got, err := parseFormat(tt.in)
		if got != tt.want || (err != nil) != tt.wantErr {
			t.Errorf("parseFormat(%q) = %v, %v", tt.in, got, err)
		}
	}
}

func TestParseHealth(t *testing.T) {
	for _, tt := range []struct {
		status int
		body   string
		want   health
	}{
		{http.StatusOK, `{"health":"true","reason":""}`, health{ok: true}},
		{http.StatusOK, "{\"health\":\"true\",\"reason\":\"\"}\n", health{ok: true}},
		{http.StatusServiceUnavailable, `{"health":"false","reason":"context deadline exceeded"}`, health{reason: "context deadline exceeded"}},
		{http.StatusServiceUnavailable, `{"health":"true"}`, health{reason: `HTTP 503, health "true"`}},
		{http.StatusOK, `{"health":"false"}`, health{reason: `HTTP 200, health "false"`}},
		{http.StatusNotFound, `404 page not found`, health{reason: `HTTP 404: "404 page not found"`}},
	} {
		if got := parseHealth(tt.status, []byte(tt.body)); got != tt.want {
			t.Errorf("parseHealth(%d, %q) = %+v, want %+v", tt.status, tt.body, got, tt.want)
		}
	}
}

func TestRunUsageErrors(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"ranges", "-w", "yaml"}, `unknown output format "yaml"`},
		{[]string{"status", "extra"}, `unknown command "extra"`},
		{[]string{"nosuch"}, `unknown command "nosuch"`},
		{[]string{"--endpoints", "", "ranges"}, "no --endpoints"},
	} {
		var stdout, stderr bytes.Buffer
		code := run(t.Context(), tt.args, &stdout, &stderr)
		if code != 1 || !strings.Contains(stderr.String(), tt.want) {
			t.Errorf("tessctl %q: exit status %d, stderr %q; want 1 and %q", tt.args, code, stderr.String(), tt.want)
		}
	}
}
