package integration_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// listWatcher is a Kubernetes-style reader: it lists at R, watches from R+1
// and applies the events to its copy of the state.
type listWatcher struct {
	state   map[string]string
	lastRev int64
	seen    map[string]int // "key@rev" -> times seen
	errs    []string
}

func (lw *listWatcher) apply(e *mvccpb.Event) {
	k := string(e.Kv.Key)
	rev := e.Kv.ModRevision
	if rev < lw.lastRev {
		lw.errs = append(lw.errs, fmt.Sprintf("event %s@%d after revision %d", k, rev, lw.lastRev))
	}
	lw.lastRev = rev
	lw.seen[fmt.Sprintf("%s@%d", k, rev)]++
	if e.Type == mvccpb.DELETE {
		delete(lw.state, k)
	} else {
		lw.state[k] = string(e.Kv.Value)
	}
}

// TestListWatchConsistency: writers change keys spread over every range
// while a reader lists and then watches; leaders move and a node is stopped
// and restarted meanwhile. In the end the reader's state equals a fresh
// list, it saw every acknowledged write exactly once, in revision order, and
// nothing else but writes whose outcome was unknown.
func TestListWatchConsistency(t *testing.T) {
	c, cli := newClusterClient(t)
	for i, p := range rangeKeys {
		put(t, cli, fmt.Sprintf("%s/seed", p), fmt.Sprint(i))
	}
	lr, err := cli.Get(tctx(t), "", clientv3.WithPrefix())
	must(t, "list", err)
	lw := &listWatcher{state: map[string]string{}, seen: map[string]int{}, lastRev: lr.Header.Revision}
	for _, kv := range lr.Kvs {
		lw.state[string(kv.Key)] = string(kv.Value)
	}
	// The reader's client knows every node: when its node goes away it
	// resumes elsewhere from the last revision it got, as clientv3 does.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wch := cli.Watch(ctx, "", clientv3.WithPrefix(), clientv3.WithRev(lr.Header.Revision+1))
	var readerDone sync.WaitGroup
	var readerMu sync.Mutex
	readerDone.Add(1)
	go func() {
		defer readerDone.Done()
		for wr := range wch {
			readerMu.Lock()
			if err := wr.Err(); err != nil {
				lw.errs = append(lw.errs, "watch error: "+err.Error())
			}
			for _, e := range wr.Events {
				lw.apply(e)
			}
			readerMu.Unlock()
		}
	}()

	type write struct {
		key string
		rev int64
	}
	var mu sync.Mutex
	var acked []write
	unknown := map[string]bool{} // key@value of writes with unknown outcome
	stop := make(chan struct{})
	var writers sync.WaitGroup
	for w := 0; w < 4; w++ {
		writers.Add(1)
		go func() {
			defer writers.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				k := fmt.Sprintf("%s/k%d", rangeKeys[rng.IntN(len(rangeKeys))], rng.IntN(6))
				wctx, wcancel := context.WithTimeout(context.Background(), 5*time.Second)
				if rng.IntN(4) == 0 {
					r, err := cli.Delete(wctx, k)
					wcancel()
					mu.Lock()
					switch {
					case err != nil:
						unknown[k+"@delete"] = true
					case r.Deleted > 0:
						acked = append(acked, write{k, r.Header.Revision})
					}
					mu.Unlock()
					continue
				}
				v := fmt.Sprintf("w%d-%d", w, i)
				r, err := cli.Put(wctx, k, v)
				wcancel()
				mu.Lock()
				if err != nil {
					unknown[k+"@"+v] = true
				} else {
					acked = append(acked, write{k, r.Header.Revision})
				}
				mu.Unlock()
			}
		}()
	}
	waitWrites := func(n int) {
		t.Helper()
		deadline := time.Now().Add(opTimeout)
		for {
			mu.Lock()
			got := len(acked)
			mu.Unlock()
			if got >= n {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("writers made %d writes, want %d", got, n)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	waitWrites(100)
	for round := 0; round < 2; round++ {
		for _, g := range dataRanges {
			c.TransferLeader(g, (int(g)+round)%c.Size())
		}
		c.TransferLeader(metaRange, round%c.Size())
	}
	waitWrites(250)
	// Stop the node leading the most ranges, then bring it back.
	victim := c.Leader(dataRanges[0])
	c.Stop(victim)
	mu.Lock()
	n := len(acked)
	mu.Unlock()
	waitWrites(n + 100)
	c.Restart(victim)
	c.WaitReady(t)
	mu.Lock()
	n = len(acked)
	mu.Unlock()
	waitWrites(n + 100)
	close(stop)
	writers.Wait()

	deadline := time.Now().Add(opTimeout)
	for {
		readerMu.Lock()
		caught := lw.lastRev
		readerMu.Unlock()
		var maxAcked int64
		for _, w := range acked {
			maxAcked = max(maxAcked, w.rev)
		}
		if caught >= maxAcked {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the watch reached revision %d, the last acknowledged write is at %d", caught, maxAcked)
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	readerDone.Wait()

	for _, e := range lw.errs {
		t.Error(e)
	}
	for _, w := range acked {
		if n := lw.seen[fmt.Sprintf("%s@%d", w.key, w.rev)]; n != 1 {
			t.Errorf("acknowledged write %s@%d seen %d times", w.key, w.rev, n)
		}
	}
	ackedSet := map[string]bool{}
	for _, w := range acked {
		ackedSet[fmt.Sprintf("%s@%d", w.key, w.rev)] = true
	}
	extra := 0
	for kr, n := range lw.seen {
		if n > 1 {
			t.Errorf("event %s seen %d times", kr, n)
		}
		if !ackedSet[kr] {
			extra++
		}
	}
	if extra > len(unknown) {
		t.Errorf("%d events of writes never acknowledged, only %d writes had an unknown outcome", extra, len(unknown))
	}
	// The reader's state is the state at the last revision it saw.
	final, err := cli.Get(tctx(t), "", clientv3.WithPrefix(), clientv3.WithRev(lw.lastRev))
	must(t, "list at the reader's revision", err)
	want := map[string]string{}
	for _, kv := range final.Kvs {
		want[string(kv.Key)] = string(kv.Value)
	}
	if fmt.Sprint(lw.state) != fmt.Sprint(want) {
		t.Errorf("reader's state after watching:\n %v\nfresh list at %d:\n %v", lw.state, lw.lastRev, want)
	}
	t.Logf("%d acknowledged writes, %d with unknown outcome, %d events watched", len(acked), len(unknown), len(lw.seen))
}
