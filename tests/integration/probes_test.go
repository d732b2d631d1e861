package integration_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.etcd.io/etcd/api/v3/version"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tesseradb/tessera/cmd/buildinfo"
)

// httpGet fetches url and returns its status code and body.
func httpGet(t *testing.T, method, url string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	httpc := &http.Client{Timeout: opTimeout}
	defer httpc.CloseIdleConnections()
	resp, err := httpc.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	return resp.StatusCode, string(b)
}

// etcd's /version, /livez and /readyz (with ?verbose, ?exclude and one
// check's path), and /readyz failing with the check that failed once a
// node's ranges lose their quorum while /livez still answers.
func TestHTTPProbes(t *testing.T) {
	c := newCluster(t)
	ep := c.Endpoint(0)

	code, body := httpGet(t, http.MethodGet, ep+"/version")
	var v map[string]string
	if err := json.Unmarshal([]byte(body), &v); code != http.StatusOK || err != nil {
		t.Fatalf("/version: %d %q: %v", code, body, err)
	}
	want := map[string]string{
		"etcdserver":  version.Version,
		"etcdcluster": version.Cluster(version.Version) + ".0",
		"storage":     buildinfo.StorageVersion,
		"tessera":     buildinfo.Version,
	}
	for k, w := range want {
		if v[k] != w {
			t.Errorf("/version %s = %q, want %q (body %q)", k, v[k], w, body)
		}
	}

	for _, tc := range []struct {
		path string
		code int
		body string
	}{
		{"/livez", 200, "ok\n"},
		{"/livez?verbose", 200, "[+]serializable_read ok\nok\n"},
		{"/readyz", 200, "ok\n"},
		{"/readyz?verbose", 200, "[+]data_corruption ok\n[+]serializable_read ok\n[+]linearizable_read ok\n[+]non_learner ok\nok\n"},
		{"/readyz?verbose&exclude=linearizable_read&exclude=non_learner", 200, "[+]data_corruption ok\n[+]serializable_read ok\nok\n"},
		{"/readyz/linearizable_read?verbose", 200, "[+]linearizable_read ok\nok\n"},
		{"/livez/serializable_read", 200, "ok\n"},
		{"/health", 200, "{\"health\":\"true\",\"reason\":\"\"}\n"},
	} {
		if code, body := httpGet(t, http.MethodGet, ep+tc.path); code != tc.code || body != tc.body {
			t.Errorf("GET %s: %d %q, want %d %q", tc.path, code, body, tc.code, tc.body)
		}
	}
	if code, _ := httpGet(t, http.MethodPost, ep+"/readyz"); code != http.StatusMethodNotAllowed {
		t.Errorf("POST /readyz: %d, want 405", code)
	}
	if code, _ := httpGet(t, http.MethodGet, ep+"/readyz/no_such_check"); code != http.StatusNotFound {
		t.Errorf("GET /readyz/no_such_check: %d, want 404", code)
	}

	// Two of three nodes down: no range has a quorum. Node 0 is not ready
	// (and says which check failed, without ?verbose) but is alive.
	c.Stop(1)
	c.Stop(2)
	code, body = httpGet(t, http.MethodGet, ep+"/readyz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "[-]linearizable_read failed") || !strings.Contains(body, "[+]data_corruption ok") {
		t.Errorf("/readyz without a quorum: %d %q; want 503 naming linearizable_read", code, body)
	}
	if code, body := httpGet(t, http.MethodGet, ep+"/readyz?exclude=linearizable_read&exclude=data_corruption&exclude=serializable_read"); code != 200 || body != "ok\n" {
		t.Errorf("/readyz without a quorum, failing checks excluded: %d %q", code, body)
	}
	if code, body := httpGet(t, http.MethodGet, ep+"/livez"); code != 200 || body != "ok\n" {
		t.Errorf("/livez without a quorum: %d %q; want 200 ok (the process serves)", code, body)
	}
}

// etcdctl endpoint status shows Tessera's version, its storage version, a
// quota and the meta group's raft state; etcdctl downgrade answers as etcd
// does for a target it refuses.
func TestEndpointStatusAndDowngrade(t *testing.T) {
	c, cli := newClusterClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	for i := range c.Size() {
		st, err := cli.Status(ctx, c.Endpoint(i))
		if err != nil {
			t.Fatalf("node %d: status: %v", i+1, err)
		}
		if st.Version != buildinfo.ServerVersion() || !strings.HasPrefix(st.Version, version.Version+"+tessera.") {
			t.Errorf("node %d: version %q, want %q", i+1, st.Version, buildinfo.ServerVersion())
		}
		if st.StorageVersion != buildinfo.StorageVersion {
			t.Errorf("node %d: storage version %q", i+1, st.StorageVersion)
		}
		if st.DbSize <= 0 || st.DbSizeQuota < st.DbSize {
			t.Errorf("node %d: db size %d, quota %d: want a size and a quota above it", i+1, st.DbSize, st.DbSizeQuota)
		}
		if st.RaftTerm == 0 || st.RaftIndex == 0 || st.RaftAppliedIndex == 0 || st.RaftAppliedIndex > st.RaftIndex || st.Leader == 0 {
			t.Errorf("node %d: raft term %d index %d applied %d leader %d: want the meta group's", i+1, st.RaftTerm, st.RaftIndex, st.RaftAppliedIndex, st.Leader)
		}
	}

	// The data dir's size is measured with no quota set (its help says
	// it is the data dir's size).
	waitMetric := func(name string) {
		t.Helper()
		deadline := time.Now().Add(opTimeout)
		for {
			_, body := httpGet(t, http.MethodGet, c.Endpoint(0)+"/metrics")
			for _, line := range strings.Split(body, "\n") {
				if v, ok := strings.CutPrefix(line, name+" "); ok && v != "0" {
					return
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("no non-zero %s in /metrics", name)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitMetric("tessera_disk_data_dir_bytes")

	for _, tc := range []struct {
		action  clientv3.DowngradeAction
		version string
		err     error
	}{
		{clientv3.DowngradeValidate, "3.6", rpctypes.ErrInvalidDowngradeTargetVersion},
		{clientv3.DowngradeValidate, "3.6.0", rpctypes.ErrInvalidDowngradeTargetVersion},
		{clientv3.DowngradeValidate, "not-a-version", rpctypes.ErrWrongDowngradeVersionFormat},
		{clientv3.DowngradeEnable, "3.6", rpctypes.ErrInvalidDowngradeTargetVersion},
		{clientv3.DowngradeCancel, "", nil},
	} {
		resp, err := cli.Downgrade(ctx, tc.action, tc.version)
		switch {
		case tc.err != nil && !errors.Is(err, tc.err):
			t.Errorf("downgrade %v %q: %v, want %v", tc.action, tc.version, err, tc.err)
		case tc.err == nil && (err != nil || resp.Version != version.Cluster(version.Version)):
			t.Errorf("downgrade %v: %v, %v; want success with cluster version %s", tc.action, resp, err, version.Cluster(version.Version))
		}
	}
}
