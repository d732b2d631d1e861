package server

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/tesseradb/tessera/placement"
)

// TestFailedAuthRateLimit: failures are allowed up to the burst, then at
// the configured rate.
func TestFailedAuthRateLimit(t *testing.T) {
	cfg := DefaultAuthConfig()
	cfg.FailedAuthPerSecond, cfg.FailedAuthBurst = 1000, 3
	a := &nodeAuth{cfg: cfg, limLeft: cfg.FailedAuthBurst, limLast: time.Now()}
	for i := range 3 {
		if !a.allowFailure() {
			t.Fatalf("failure %d refused within the burst", i)
		}
	}
	if a.allowFailure() {
		t.Fatal("a fourth failure at once was allowed")
	}
	deadline := time.Now().Add(5 * time.Second)
	for !a.allowFailure() {
		if time.Now().After(deadline) {
			t.Fatal("the bucket never refilled")
		}
		time.Sleep(time.Millisecond) // the bucket refills with time: nothing else to wait on
	}
}

func TestAuthConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		mut func(*AuthConfig)
		ok  bool
	}{
		{func(*AuthConfig) {}, true},
		{func(c *AuthConfig) { c.Token = "jwt,pub-key=x,sign-method=RS256" }, true}, // keys are checked when loaded
		{func(c *AuthConfig) { c.Token = "plain" }, false},
		{func(c *AuthConfig) { c.BcryptCost = 3 }, false},
		{func(c *AuthConfig) { c.TokenTTL = 0 }, false},
	} {
		c := DefaultAuthConfig()
		tc.mut(&c)
		if err := c.Validate(); (err == nil) != tc.ok {
			t.Errorf("%+v: %v", c, err)
		}
	}
}

// TestSimpleTokenTTLRenewedOnUse: as etcd's simple tokens, a token stays
// valid --auth-token-ttl after its last use on a node; on a node it was
// never used on it expires TTL after it was issued; an expired token stays
// expired; a forged one is refused and not remembered.
func TestSimpleTokenTTLRenewedOnUse(t *testing.T) {
	const ttl = 300 * time.Second
	st := placement.NewAuthState()
	if err := st.UserAdd("alice", []byte("hash"), nil); err != nil {
		t.Fatal(err)
	}
	rec, err := st.Record()
	if err != nil {
		t.Fatal(err)
	}
	rec.TokenKey = []byte("0123456789abcdef0123456789abcdef")
	if st, err = placement.AuthStateFromRecord(rec); err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_000_000, 0)
	clock := func() time.Time { return now }
	cfg := DefaultAuthConfig()
	cfg.TokenTTL = ttl
	used := &nodeAuth{cfg: cfg, renewals: newTokenRenewals(ttl), now: clock}
	other := &nodeAuth{cfg: cfg, renewals: newTokenRenewals(ttl), now: clock}
	tok, err := used.issueToken(st, "alice")
	if err != nil {
		t.Fatal(err)
	}
	check := func(a *nodeAuth, what string, valid bool) {
		t.Helper()
		user, err := a.verifyToken(st, tok)
		if valid && (err != nil || user != "alice") {
			t.Fatalf("%s: %q, %v; want alice", what, user, err)
		}
		if !valid && !errors.Is(err, rpctypes.ErrGRPCInvalidAuthToken) {
			t.Fatalf("%s: %q, %v; want %v", what, user, err, rpctypes.ErrGRPCInvalidAuthToken)
		}
	}
	// Used every 200 s on one node: alive long after issue + TTL there.
	for range 5 {
		now = now.Add(200 * time.Second)
		check(used, fmt.Sprintf("used at +%s", now.Sub(time.Unix(1_000_000, 0))), true)
	}
	// Never used on the other node: expired TTL after issue.
	check(other, "unused node after issue+TTL", false)
	// Unused for a TTL on the first node: expired, and stays so.
	now = now.Add(ttl)
	check(used, "idle for a TTL", false)
	now = now.Add(-time.Second)
	check(used, "after it expired", false)

	// Every Authenticate gets its own token (as etcd's), renewed on its own.
	tok2, err := used.issueToken(st, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if tok2 == tok {
		t.Fatal("two tokens issued at once are equal")
	}

	// A forged token is refused before the renewal table sees it.
	before := used.renewals.size()
	for i := range 100 {
		forged := tok[:len(tok)-4] + fmt.Sprintf("%04d", i)
		if _, err := used.verifyToken(st, forged); !errors.Is(err, rpctypes.ErrGRPCInvalidAuthToken) {
			t.Fatalf("forged token: %v", err)
		}
	}
	if got := used.renewals.size(); got != before {
		t.Fatalf("forged tokens remembered: %d entries, want %d", got, before)
	}
}

// TestTokenRenewalsBounded: expired entries are swept as the table grows.
func TestTokenRenewalsBounded(t *testing.T) {
	r := newTokenRenewals(time.Second)
	now := time.Unix(0, 0)
	for i := range 10_000 {
		now = now.Add(10 * time.Millisecond)
		if !r.use(fmt.Sprint(i), now.Add(time.Second), now) {
			t.Fatalf("token %d refused", i)
		}
	}
	// Live at the end: the last second's tokens (100); the table may hold
	// up to twice what survived the last sweep.
	if n := r.size(); n > 400 {
		t.Fatalf("%d tokens remembered, want at most 400", n)
	}
}
