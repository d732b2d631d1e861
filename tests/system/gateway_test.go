package system_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"
)

// gwAnswer is one HTTP answer of the gateway, normalized for comparison.
type gwAnswer struct {
	status int
	body   any
}

func (a gwAnswer) String() string {
	b, _ := json.Marshal(a.body)
	return fmt.Sprintf("%d %s", a.status, b)
}

// volatileFields differ between two servers for reasons other than
// behaviour: identities and revisions (Tessera's are timestamps).
var volatileFields = map[string]bool{
	"cluster_id": true, "member_id": true, "revision": true, "raft_term": true,
	"create_revision": true, "mod_revision": true, "compact_revision": true,
}

// normalize drops volatileFields at any depth.
func normalize(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := map[string]any{}
		for k, e := range x {
			if !volatileFields[k] {
				out[k] = normalize(e)
			}
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = normalize(e)
		}
		return out
	case string:
		// protojson puts a random non-breaking space into its error
		// messages, so that nobody matches them byte for byte.
		return strings.ReplaceAll(x, "\u00a0", " ")
	}
	return v
}

// gwPost sends body to base+path as curl -X POST -d does and decodes the
// JSON answer.
func gwPost(t *testing.T, base, path, body string) (int, map[string]any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded") // curl -d's
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("POST %s: read: %v", path, err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("POST %s: answer %q is not JSON: %v", path, raw, err)
	}
	return resp.StatusCode, m
}

// revisionOf digs a string revision out of a decoded answer, e.g.
// ("kvs", 0, "create_revision").
func revisionOf(t *testing.T, v any, path ...any) string {
	t.Helper()
	for _, p := range path {
		switch k := p.(type) {
		case string:
			v = v.(map[string]any)[k]
		case int:
			v = v.([]any)[k]
		}
	}
	s, ok := v.(string)
	if !ok {
		t.Fatalf("no revision at %v", path)
	}
	return s
}

// gatewayScript runs the curl examples of etcd's gateway guide
// (dev-guide/api_grpc_gateway: put, range, prefix range, watch, txn) and
// more of the gateway (delete, compaction, errors, status, member list,
// lease, auth) against one server. Steps that need a revision take it from
// the server's own earlier answers, as a script would. It returns the
// answers by step name; unimplemented lists the steps answered with gRPC
// Unimplemented.
func gatewayScript(t *testing.T, base string) (answers map[string]gwAnswer, order []string) {
	t.Helper()
	answers = map[string]gwAnswer{}
	record := func(name string, status int, body map[string]any) {
		answers[name] = gwAnswer{status, normalize(body)}
		order = append(order, name)
	}

	// The watch of the guide: opened first, in the background, like
	// `curl ... /v3/watch ... &`.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	wreq, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v3/watch", strings.NewReader(`{"create_request": {"key":"Zm9v"} }`))
	if err != nil {
		t.Fatal(err)
	}
	wresp, err := http.DefaultClient.Do(wreq)
	if err != nil {
		t.Fatalf("watch: %v", err)
	}
	defer wresp.Body.Close()
	lines := bufio.NewScanner(wresp.Body)
	lines.Buffer(nil, 1<<20)
	nextLine := func(what string) map[string]any {
		t.Helper()
		if !lines.Scan() {
			t.Fatalf("watch stream ended before %s: %v", what, lines.Err())
		}
		var m map[string]any
		if err := json.Unmarshal(lines.Bytes(), &m); err != nil {
			t.Fatalf("watch line %q: %v", lines.Bytes(), err)
		}
		return m
	}
	record("watch created", wresp.StatusCode, nextLine("created"))

	st, put := gwPost(t, base, "/v3/kv/put", `{"key": "Zm9v", "value": "YmFy"}`)
	record("put foo", st, put)
	record("watch event", wresp.StatusCode, nextLine("the put's event"))

	st, rng := gwPost(t, base, "/v3/kv/range", `{"key": "Zm9v"}`)
	record("range foo", st, rng)
	createRev := revisionOf(t, rng, "kvs", 0, "create_revision")
	st, body := gwPost(t, base, "/v3/kv/range", `{"key": "Zm9v", "range_end": "Zm9w"}`)
	record("range prefix foo", st, body)

	// Txn examples: the guide's createRevision "2" is the key's create
	// revision in a fresh etcd; here it is the server's own.
	st, body = gwPost(t, base, "/v3/kv/txn", `{"compare":[{"target":"CREATE","key":"Zm9v","createRevision":"`+createRev+`"}],"success":[{"requestPut":{"key":"Zm9v","value":"YmFy"}}]}`)
	record("txn create-revision put", st, body)
	st, body = gwPost(t, base, "/v3/kv/txn", `{"compare":[{"version":"4","result":"EQUAL","target":"VERSION","key":"Zm9v"}],"success":[{"requestRange":{"key":"Zm9v"}}],"failure":[{"requestRange":{"key":"Zm9v"}}]}`)
	record("txn version range", st, body)

	// Beyond the guide: more keys, a prefix delete with prev_kv, count.
	for _, kv := range [][2]string{{"Zm9vMQ==", "dmFsMQ=="}, {"Zm9vMg==", "dmFsMg=="}} {
		st, body = gwPost(t, base, "/v3/kv/put", `{"key": "`+kv[0]+`", "value": "`+kv[1]+`", "prev_kv": true}`)
		record("put "+kv[0], st, body)
	}
	st, body = gwPost(t, base, "/v3/kv/range", `{"key": "Zm9v", "range_end": "Zm9w", "count_only": true}`)
	record("count prefix foo", st, body)
	st, del := gwPost(t, base, "/v3/kv/deleterange", `{"key": "Zm9vMQ==", "range_end": "Zm9w", "prev_kv": true}`)
	record("deleterange foo1..", st, del)

	// Errors: etcd's gRPC errors as the gateway's JSON (code, message).
	st, body = gwPost(t, base, "/v3/kv/range", `{"key": "Zm9v", "revision": "9223372036854775000"}`)
	record("range future revision", st, body)
	st, body = gwPost(t, base, "/v3/kv/put", `{"value": "YmFy"}`)
	record("put empty key", st, body)
	st, body = gwPost(t, base, "/v3/kv/range", `{"key": 12}`)
	record("range bad JSON", st, body)

	delRev := revisionOf(t, del, "header", "revision")
	st, body = gwPost(t, base, "/v3/kv/compaction", `{"revision": "`+delRev+`", "physical": true}`)
	record("compaction", st, body)
	st, body = gwPost(t, base, "/v3/kv/range", `{"key": "Zm9v", "revision": "`+createRev+`"}`)
	record("range compacted revision", st, body)

	// Status and member list: the values differ (sizes, versions, ids,
	// one member against three); the fields are compared.
	st, body = gwPost(t, base, "/v3/maintenance/status", `{}`)
	record("maintenance status (fields)", st, fieldSet(body))
	st, body = gwPost(t, base, "/v3/cluster/member/list", `{}`)
	var member map[string]any
	if ms, _ := body["members"].([]any); len(ms) > 0 {
		member, _ = ms[0].(map[string]any)
	}
	record("member list (fields of a member)", st, fieldSet(member))
	return answers, order
}

// fieldSet is the set of m's fields, as a JSON object of true values.
func fieldSet(m map[string]any) map[string]any {
	out := map[string]any{}
	for k := range m {
		if k != "header" {
			out[k] = true
		}
	}
	return out
}

// TestGatewayCurlExamples runs the curl examples of etcd's gateway guide
// and more gateway requests against a Tessera cluster and against etcd,
// and compares the answers (status and JSON, revisions and ids aside).
// Lease and Auth paths are checked on their own (status and fields, as
// their ids and TTLs differ).
func TestGatewayCurlExamples(t *testing.T) {
	bin := etcdBinary(t)
	etcdURL := startEtcd(t, bin)
	c := newCluster(t, clusterConfig{nodes: 3, splitKeys: []string{"foo1", "g"}})
	// Through a node that leads nothing in particular: node 3.
	tessURL := c.nodes[2].clientURL

	want, order := gatewayScript(t, etcdURL)
	got, _ := gatewayScript(t, tessURL)
	for _, step := range order {
		w, g := want[step], got[step]
		if !reflect.DeepEqual(w, g) {
			t.Errorf("%s:\n  etcd:    %v\n  tessera: %v", step, w, g)
		} else {
			t.Logf("%s: %v", step, g)
		}
	}

	// /v3beta/ is served as /v3/ (etcd's backward-compatible prefix).
	st, body := gwPost(t, tessURL, "/v3beta/kv/range", `{"key": "Zm9v"}`)
	if st != http.StatusOK || body["count"] != "1" {
		t.Errorf("/v3beta/kv/range: %d %v", st, body)
	}

	// Lease and Auth: what etcd answers (same status, same fields).
	for _, p := range []struct{ path, body string }{
		{"/v3/lease/grant", `{"TTL": 60}`},
		{"/v3/lease/leases", `{}`},
		{"/v3/lease/timetolive", `{"ID": 12345}`},
		{"/v3/lease/revoke", `{"ID": 12345}`},
		{"/v3/auth/status", `{}`},
		{"/v3/auth/user/list", `{}`},
	} {
		st, body := gwPost(t, tessURL, p.path, p.body)
		est, ebody := gwPost(t, etcdURL, p.path, p.body)
		if st != est || !sameKeys(body, ebody) {
			t.Errorf("%s:\n  etcd:    %d %v\n  tessera: %d %v", p.path, est, ebody, st, body)
		} else {
			t.Logf("%s: %d %v", p.path, st, body)
		}
	}
}

func sameKeys(a, b map[string]any) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if _, ok := b[k]; !ok {
			return false
		}
	}
	return true
}
