package server

import (
	"sync"
	"time"
)

// tokenRenewals gives simple tokens etcd's TTL: a token expires
// --auth-token-ttl after its last use on this node, not after it was issued.
//
// etcd keeps each simple token in every member's memory with a deadline that
// each use on that member pushes TTL ahead (auth/simple_token.go's
// resetSimpleToken); a token used on one member only still expires on the
// others TTL after it was assigned. Tessera's tokens are signed and carry
// their issue deadline, so any node verifies them without shared state; a
// node remembers, for each token used on it, the deadline its last use set,
// and accepts a token past its own deadline until that one. The same
// per-node outcome as etcd's, with no token state replicated.
//
// Memory is one entry per token used on the node within a TTL (etcd keeps
// one per token issued); expired entries are dropped when the table has
// doubled since the last sweep, so the work is amortized per use.
type tokenRenewals struct {
	ttl time.Duration

	mu        sync.Mutex
	until     map[string]time.Time // token -> deadline set by its last use here
	swept     int                  // size of until after the last sweep
	sweepSize int                  // minimum size before a sweep (64)
}

func newTokenRenewals(ttl time.Duration) *tokenRenewals {
	return &tokenRenewals{ttl: ttl, until: map[string]time.Time{}, sweepSize: 64}
}

// use checks a token whose signature is valid and whose own deadline is
// issued: it is live when either that deadline or the one its last use here
// set is ahead of now. A live token's deadline on this node becomes now+TTL.
func (r *tokenRenewals) use(tok string, issued, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	deadline := issued
	if d, ok := r.until[tok]; ok && d.After(deadline) {
		deadline = d
	}
	if !now.Before(deadline) {
		delete(r.until, tok)
		return false
	}
	r.until[tok] = now.Add(r.ttl)
	if n := len(r.until); n >= r.sweepSize && n >= 2*r.swept {
		for t, d := range r.until {
			if !now.Before(d) {
				delete(r.until, t)
			}
		}
		r.swept = len(r.until)
	}
	return true
}

// size returns the number of tokens remembered.
func (r *tokenRenewals) size() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.until)
}
