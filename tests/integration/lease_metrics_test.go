package integration_test

import (
	"testing"
)

// TestLeaseMetrics: the meta leader counts grants, revocations, keep-alives,
// expiries and the keys they deleted, and observes the expiry lag.
func TestLeaseMetrics(t *testing.T) {
	c, cli := newClusterClient(t)
	leader := c.Endpoint(c.Leader(metaRange))
	revoked, err := cli.Grant(tctx(t), 60)
	must(t, "grant", err)
	_, err = cli.KeepAliveOnce(tctx(t), revoked.ID)
	must(t, "keep-alive", err)
	_, err = cli.Revoke(tctx(t), revoked.ID)
	must(t, "revoke", err)
	expiring, err := cli.Grant(tctx(t), 1)
	must(t, "grant", err)
	leaseKeys(t, cli, "metrics", expiring.ID)
	waitFor(t, "expiry", func() bool { return metricValue(t, leader, "tessera_lease_expired_total") >= 1 })
	for name, min := range map[string]float64{
		"tessera_lease_granted_total":            2,
		"tessera_lease_revoked_total":            1,
		"tessera_lease_keepalives_total":         1,
		"tessera_lease_expired_keys_total":       float64(len(rangeKeys)),
		"tessera_lease_expiry_lag_seconds_count": 1,
	} {
		if v := metricValue(t, leader, name); v < min {
			t.Errorf("%s on the meta leader = %v, want >= %v", name, v, min)
		}
	}
}
