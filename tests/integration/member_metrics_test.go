package integration_test

import (
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/tesseradb/tessera/tests/testcluster"
)

// TestMembershipMetrics: every node counts its heartbeats, and the meta
// leader (only it) reports the three nodes live.
func TestMembershipMetrics(t *testing.T) {
	c := newCluster(t)
	hc := &http.Client{Timeout: opTimeout}
	t.Cleanup(hc.CloseIdleConnections)
	sample := func(body, series string) float64 {
		m := regexp.MustCompile("(?m)^" + regexp.QuoteMeta(series) + ` (\S+)$`).FindStringSubmatch(body)
		if m == nil {
			return -1
		}
		v, _ := strconv.ParseFloat(m[1], 64)
		return v
	}
	check := func() error {
		live, reporters := 0.0, 0
		for _, ep := range c.Endpoints() {
			resp, err := hc.Get(ep + "/metrics")
			if err != nil {
				return err
			}
			b, err := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if err != nil {
				return err
			}
			body := string(b)
			if v := sample(body, `tessera_membership_heartbeats_total{result="ok"}`); v < 1 {
				return fmt.Errorf("%s: heartbeats ok = %v", ep, v)
			}
			if v := sample(body, `tessera_placement_nodes{liveness="live"}`); v > 0 {
				live += v
				reporters++
			}
		}
		if live != 3 || reporters != 1 {
			return fmt.Errorf("live nodes reported: %v by %d nodes, want 3 by the meta leader alone", live, reporters)
		}
		return nil
	}
	var last error
	for deadline := time.Now().Add(testcluster.ReadyTimeout); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) { // poll /metrics
		if last = check(); last == nil {
			return
		}
	}
	t.Fatal(last)
}
