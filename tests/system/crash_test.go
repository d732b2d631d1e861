package system_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestCrashRecovery: every acknowledged write survives SIGKILL of the whole
// cluster. 16 clients make 2,000 acknowledged puts (400 keys over 6 ranges,
// 5 puts each) while 4 more clients write fresh keys without pause; all three
// nodes are killed at once right after the 2,000th acknowledgement, with the
// last writes in flight, and restarted with the same flags. Then, through
// every node, linearizable and serializable reads must show every
// acknowledged put at its revision with its value and mod revision, the
// current state (the latest acknowledged put of each key), and no key that
// was never written.
func TestCrashRecovery(t *testing.T) {
	splitKeys := []string{"c", "h", "m", "r", "w"}
	c := newCluster(t, clusterConfig{nodes: 3, splitKeys: splitKeys})

	const (
		writers         = 16
		keys            = 400
		putsPerKey      = 5 // 2,000 acknowledged puts
		inflightWriters = 4
		writeTimeout    = 2 * time.Minute
	)
	keyOf := func(i int) string { return fmt.Sprintf("%c/crash/%04d", 'a'+i%26, i) }
	var allKeys []string
	for i := range keys {
		allKeys = append(allKeys, keyOf(i))
	}
	requireSpread(t, c.nodes[0], len(splitKeys)+1, allKeys)

	// Four clients of all three nodes share the writers.
	var clients []*clientv3.Client
	for range 4 {
		clients = append(clients, c.client())
	}
	var (
		mu       sync.Mutex
		acks     []ack                 // in acknowledgement order per key
		maybe    = map[string]string{} // writes with an unknown outcome
		retries  atomic.Int64
		inflight atomic.Int64
	)
	ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
	defer cancel()

	// In-flight writers: fresh keys, one put each, until the kill.
	stopInflight, cancelInflight := context.WithCancel(ctx)
	defer cancelInflight()
	var inflightWG sync.WaitGroup
	for w := range inflightWriters {
		inflightWG.Add(1)
		go func() {
			defer inflightWG.Done()
			cli := clients[w%len(clients)]
			for i := 0; stopInflight.Err() == nil; i++ {
				n := i*inflightWriters + w
				key, value := fmt.Sprintf("%c/inflight/%06d", 'a'+n%26, n), fmt.Sprintf("inflight-%d", n)
				opCtx, opCancel := context.WithTimeout(stopInflight, opTimeout)
				resp, err := cli.Put(opCtx, key, value)
				opCancel()
				mu.Lock()
				if err != nil {
					maybe[key] = value
				} else {
					acks = append(acks, ack{key: key, value: value, rev: resp.Header.Revision})
					inflight.Add(1)
				}
				mu.Unlock()
			}
		}()
	}

	// Main writers: writer w owns the keys i with i%writers == w and puts
	// each of them putsPerKey times; a failed put is retried with a new
	// value until one is acknowledged.
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cli := clients[w%len(clients)]
			for round := range putsPerKey {
				for i := w; i < keys; i += writers {
					key := keyOf(i)
					for attempt := 0; ; attempt++ {
						value := fmt.Sprintf("v%d.%d-%s", round, attempt, key)
						opCtx, opCancel := context.WithTimeout(ctx, opTimeout)
						resp, err := cli.Put(opCtx, key, value)
						opCancel()
						mu.Lock()
						if err == nil {
							acks = append(acks, ack{key: key, value: value, rev: resp.Header.Revision})
						} else {
							maybe[key] = value
						}
						mu.Unlock()
						if err == nil {
							break
						}
						retries.Add(1)
						if ctx.Err() != nil {
							errs <- fmt.Errorf("put %q: %w (last error)", key, err)
							return
						}
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("writers did not finish in %v: %v", writeTimeout, err)
	}
	writeTook := time.Since(start)

	// SIGKILL all three at once, with the in-flight writers still writing.
	c.killAll()
	cancelInflight()
	inflightWG.Wait()
	mu.Lock()
	defer mu.Unlock()
	t.Logf("%d puts acknowledged in %v (%d of them by the in-flight writers), %d failed puts retried, %d writes with unknown outcome; killed all nodes",
		len(acks), writeTook.Round(time.Millisecond), inflight.Load(), retries.Load(), len(maybe))
	if got := len(acks) - int(inflight.Load()); got != keys*putsPerKey {
		t.Fatalf("%d main puts acknowledged, want %d", got, keys*putsPerKey)
	}
	state := currentState(t, acks)
	for k := range state {
		delete(maybe, k) // a key written again after an unknown outcome
	}

	restartAt := time.Now()
	c.startAll()
	t.Logf("restarted, all nodes healthy in %v", time.Since(restartAt).Round(time.Millisecond))

	var current, history []want
	for _, a := range state {
		current = append(current, want{key: a.key, value: a.value, modRev: a.rev})
	}
	for _, a := range acks {
		history = append(history, want{key: a.key, value: a.value, modRev: a.rev, atRev: a.rev})
	}
	const catchUp = 60 * time.Second
	for _, n := range c.nodes {
		cli := n.client()
		for _, serializable := range []bool{false, true} {
			kind := "linearizable"
			if serializable {
				kind = "serializable"
			}
			waitFor(t, catchUp, fmt.Sprintf("%s scan of %s", kind, n.name), func() error {
				mismatch, err := checkScan(cli, state, maybe, serializable)
				if mismatch != nil && !serializable {
					t.Errorf("%s scan of %s: %v", kind, n.name, mismatch)
					return nil
				}
				return errorsJoin(mismatch, err)
			})
			for _, set := range []struct {
				name  string
				wants []want
			}{{"current state", current}, {"acknowledged puts at their revisions", history}} {
				wrong, took := checkReads(cli, set.wants, serializable, catchUp)
				for _, err := range wrong {
					t.Errorf("%s %s read of %s: %v", n.name, kind, set.name, err)
				}
				t.Logf("%s: %d %s reads of %s right in %v", n.name, len(set.wants), kind, set.name, took.Round(time.Millisecond))
			}
		}
	}

	// Revisions go on increasing across the crash: a read answers at or
	// above every acknowledged revision, and a new write gets a higher one.
	var maxRev int64
	for _, a := range acks {
		maxRev = max(maxRev, a.rev)
	}
	checkRevisionsAbove(t, c, maxRev)
}

// checkRevisionsAbove checks through every node that a linearizable read
// answers at a revision at or above rev and that a new write gets a
// revision above it.
func checkRevisionsAbove(t *testing.T, c *cluster, rev int64) {
	t.Helper()
	for _, n := range c.nodes {
		cli := n.client()
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		get, err := cli.Get(ctx, "a/after-restart")
		cancel()
		if err != nil {
			t.Fatalf("read through %s: %v", n.name, err)
		}
		if get.Header.Revision < rev {
			t.Errorf("read through %s answers at revision %d, below the acknowledged revision %d", n.name, get.Header.Revision, rev)
		}
		ctx, cancel = context.WithTimeout(context.Background(), opTimeout)
		put, err := cli.Put(ctx, "a/after-restart", n.name)
		cancel()
		if err != nil {
			t.Fatalf("write through %s: %v", n.name, err)
		}
		if put.Header.Revision <= rev {
			t.Errorf("write through %s got revision %d, not above the acknowledged revision %d", n.name, put.Header.Revision, rev)
		}
		rev = put.Header.Revision
	}
}
