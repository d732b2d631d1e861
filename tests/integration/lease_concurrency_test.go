package integration_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// TestConcurrencyMutexAcrossRanges: clientv3/concurrency mutexes whose
// keys live on different ranges, held by sessions (leases) of clients of
// different nodes: mutual exclusion holds, and a session closed without
// unlocking (its lease revoked) releases every lock it held on every range.
func TestConcurrencyMutexAcrossRanges(t *testing.T) {
	c, _ := newClusterClient(t)
	prefixes := []string{"a/lock", "e/lock", "g/lock"}
	var wg sync.WaitGroup
	var mu sync.Mutex
	holders := map[string]int{}
	counter := map[string]int{}
	for w := range 3 {
		cli := c.NodeClient(t, w)
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := concurrency.NewSession(cli, concurrency.WithTTL(5))
			if err != nil {
				t.Errorf("session: %v", err)
				return
			}
			defer s.Close()
			for i := range 5 {
				p := prefixes[(w+i)%len(prefixes)]
				m := concurrency.NewMutex(s, p)
				if err := m.Lock(tctx(t)); err != nil {
					t.Errorf("lock %s: %v", p, err)
					return
				}
				mu.Lock()
				holders[p]++
				if holders[p] != 1 {
					t.Errorf("%s held by %d sessions", p, holders[p])
				}
				counter[p]++
				mu.Unlock()
				mu.Lock()
				holders[p]--
				mu.Unlock()
				if err := m.Unlock(tctx(t)); err != nil {
					t.Errorf("unlock %s: %v", p, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}

	// A session holding locks on three ranges dies (its lease revoked by
	// Close without Unlock: Orphan then revoke): another session gets them.
	cli := c.NodeClient(t, 0)
	s1, err := concurrency.NewSession(cli, concurrency.WithTTL(60))
	must(t, "session", err)
	for _, p := range prefixes {
		must(t, "lock "+p, concurrency.NewMutex(s1, p).Lock(tctx(t)))
	}
	s2, err := concurrency.NewSession(c.NodeClient(t, 1), concurrency.WithTTL(60))
	must(t, "session 2", err)
	defer s2.Close()
	got := make(chan error, len(prefixes))
	for _, p := range prefixes {
		go func() { got <- concurrency.NewMutex(s2, p).Lock(tctx(t)) }()
	}
	select {
	case err := <-got:
		t.Fatalf("second session locked while the first holds every lock (err %v)", err)
	case <-time.After(300 * time.Millisecond):
	}
	_, err = cli.Revoke(tctx(t), s1.Lease())
	must(t, "revoke first session's lease", err)
	for _, p := range prefixes {
		r, err := cli.Get(tctx(t), p, clientv3.WithPrefix())
		must(t, "get", err)
		for _, kv := range r.Kvs {
			if kv.Lease == int64(s1.Lease()) {
				t.Fatalf("%s: key %s of the revoked session left", p, kv.Key)
			}
		}
	}
	for range prefixes {
		must(t, "lock after revoke", <-got)
	}
}

// TestConcurrencyElection: a campaign on one range, observers on another
// node, leadership passing when the leader's lease expires.
func TestConcurrencyElection(t *testing.T) {
	c, _ := newClusterClient(t)
	cli1, cli2 := c.NodeClient(t, 0), c.NodeClient(t, 1)
	s1, err := concurrency.NewSession(cli1, concurrency.WithTTL(2))
	must(t, "session 1", err)
	s2, err := concurrency.NewSession(cli2, concurrency.WithTTL(2))
	must(t, "session 2", err)
	defer s2.Close()
	e1 := concurrency.NewElection(s1, "e/election")
	e2 := concurrency.NewElection(s2, "e/election")
	must(t, "campaign 1", e1.Campaign(tctx(t), "one"))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	obs := e2.Observe(ctx)
	if r := <-obs; string(r.Kvs[0].Value) != "one" {
		t.Fatalf("observed leader %q, want one", r.Kvs[0].Value)
	}
	won := make(chan error, 1)
	go func() { won <- e2.Campaign(tctx(t), "two") }()
	select {
	case err := <-won:
		t.Fatalf("second campaign won while the first leads (err %v)", err)
	case <-time.After(300 * time.Millisecond):
	}
	// The first leader's session stops keeping its lease alive: when the
	// lease expires, the second campaign wins.
	s1.Orphan()
	must(t, "campaign 2 after the first lease expired", <-won)
	ldr, err := e2.Leader(tctx(t))
	must(t, "leader", err)
	if string(ldr.Kvs[0].Value) != "two" {
		t.Fatalf("leader %q, want two", ldr.Kvs[0].Value)
	}
	for r := range obs {
		if len(r.Kvs) > 0 && string(r.Kvs[0].Value) == "two" {
			break
		}
	}
	must(t, "resign", e2.Resign(tctx(t)))
}

// TestConcurrencySTM: software transactional memory over keys of one
// range (a Txn may not span ranges yet), with several clients.
func TestConcurrencySTM(t *testing.T) {
	c, _ := newClusterClient(t)
	cli := c.Client(t)
	keys := []string{"c/acct1", "c/acct2", "c/acct3"}
	for _, k := range keys {
		put(t, cli, k, "100")
	}
	var wg sync.WaitGroup
	for w := range 3 {
		cli := c.NodeClient(t, w)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 10 {
				from, to := keys[(w+i)%3], keys[(w+i+1)%3]
				_, err := concurrency.NewSTM(cli, func(s concurrency.STM) error {
					var a, b int
					fmt.Sscan(s.Get(from), &a)
					fmt.Sscan(s.Get(to), &b)
					s.Put(from, fmt.Sprint(a-1))
					s.Put(to, fmt.Sprint(b+1))
					return nil
				}, concurrency.WithAbortContext(tctx(t)))
				if err != nil {
					t.Errorf("stm: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	total := 0
	for _, k := range keys {
		r, err := cli.Get(tctx(t), k)
		must(t, "get", err)
		var v int
		fmt.Sscan(string(r.Kvs[0].Value), &v)
		total += v
	}
	if total != 300 {
		t.Fatalf("STM transfers lost money: total %d, want 300", total)
	}
}
