package main

import (
	"fmt"
	"strconv"
	"time"

	"github.com/spf13/pflag"

	"github.com/tesseradb/tessera/cmd/tessera/server"
)

// addAuthFlags adds etcd's auth flags (see docs/security.md).
func addAuthFlags(f *pflag.FlagSet, c *server.AuthConfig) {
	*c = server.DefaultAuthConfig()
	f.StringVar(&c.Token, "auth-token", c.Token, "specify auth token type: simple or jwt,pub-key=...,priv-key=...,sign-method=...[,ttl=...]")
	f.Var(secondsValue{&c.TokenTTL}, "auth-token-ttl", "the lifetime in seconds of the auth token")
	f.IntVar(&c.BcryptCost, "bcrypt-cost", c.BcryptCost, "specify bcrypt algorithm cost factor for auth password hashing")
}

// secondsValue is a duration given in whole seconds, as etcd's
// --auth-token-ttl.
type secondsValue struct{ d *time.Duration }

func (v secondsValue) String() string {
	if v.d == nil {
		return "0"
	}
	return strconv.FormatInt(int64(*v.d/time.Second), 10)
}

func (v secondsValue) Set(s string) error {
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return fmt.Errorf("--auth-token-ttl %q: want whole seconds: %w", s, err)
	}
	*v.d = time.Duration(n) * time.Second
	return nil
}

func (secondsValue) Type() string { return "uint" }
