package server

import (
	"testing"
	"time"
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
