package system_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestListWatchSigkill: Kubernetes-style list-then-watch over a prefix that
// spans four ranges while writers change it and one node (each in turn) is
// SIGKILLed and restarted: the watcher, a client of every node that resumes
// elsewhere when its node dies, sees every acknowledged write exactly once,
// in revision order, and ends with the state a fresh list at its last
// revision shows.
func TestListWatchSigkill(t *testing.T) {
	splitKeys := []string{"w/b", "w/d", "w/f"}
	c := newCluster(t, clusterConfig{nodes: 3, splitKeys: splitKeys})
	cli := c.client()
	prefixes := []string{"w/a", "w/c", "w/e", "w/g"}

	lctx, lcancel := context.WithTimeout(context.Background(), opTimeout)
	list, err := cli.Get(lctx, "w/", clientv3.WithPrefix())
	lcancel()
	if err != nil {
		t.Fatal(err)
	}
	state := map[string]string{}
	seen := map[string]int{}
	var lastRev int64 = list.Header.Revision
	var order []string
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wch := c.client().Watch(ctx, "w/", clientv3.WithPrefix(), clientv3.WithRev(list.Header.Revision+1))
	var rmu sync.Mutex
	done := make(chan struct{})
	go func() {
		defer close(done)
		for wr := range wch {
			rmu.Lock()
			if err := wr.Err(); err != nil {
				order = append(order, "watch error: "+err.Error())
			}
			for _, e := range wr.Events {
				r := e.Kv.ModRevision
				if r < lastRev {
					order = append(order, fmt.Sprintf("event %s@%d after %d", e.Kv.Key, r, lastRev))
				}
				lastRev = r
				seen[fmt.Sprintf("%s@%d", e.Kv.Key, r)]++
				if e.Type == mvccpb.DELETE {
					delete(state, string(e.Kv.Key))
				} else {
					state[string(e.Kv.Key)] = string(e.Kv.Value)
				}
			}
			rmu.Unlock()
		}
	}()

	var mu sync.Mutex
	var acked []string
	var maxAcked int64
	unknown := 0
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			wcli := c.client()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				k := fmt.Sprintf("%s/%d", prefixes[(w+i)%len(prefixes)], i%5)
				pctx, pcancel := context.WithTimeout(context.Background(), 5*time.Second)
				r, err := wcli.Put(pctx, k, fmt.Sprintf("%d-%d", w, i))
				pcancel()
				mu.Lock()
				if err != nil {
					unknown++
				} else {
					acked = append(acked, fmt.Sprintf("%s@%d", k, r.Header.Revision))
					maxAcked = max(maxAcked, r.Header.Revision)
				}
				mu.Unlock()
			}
		}()
	}
	waitAcked := func(n int) {
		t.Helper()
		waitFor(t, startTimeout, fmt.Sprintf("%d acknowledged writes", n), func() error {
			mu.Lock()
			defer mu.Unlock()
			if len(acked) < n {
				return fmt.Errorf("%d acknowledged", len(acked))
			}
			return nil
		})
	}
	waitAcked(50)
	for i, n := range c.nodes {
		n.kill()
		mu.Lock()
		at := len(acked)
		mu.Unlock()
		waitAcked(at + 30)
		n.start()
		if err := n.awaitHealthy(startTimeout); err != nil {
			t.Fatalf("node %d after restart: %v", i+1, err)
		}
		mu.Lock()
		at = len(acked)
		mu.Unlock()
		waitAcked(at + 30)
	}
	close(stop)
	wg.Wait()
	waitFor(t, startTimeout, "the watch to reach the last acknowledged write", func() error {
		rmu.Lock()
		defer rmu.Unlock()
		if lastRev < maxAcked {
			return fmt.Errorf("watch at %d, last write at %d", lastRev, maxAcked)
		}
		return nil
	})
	cancel()
	<-done

	for _, o := range order {
		t.Error(o)
	}
	ackedSet := map[string]bool{}
	for _, a := range acked {
		ackedSet[a] = true
		if seen[a] != 1 {
			t.Errorf("acknowledged write %s seen %d times", a, seen[a])
		}
	}
	extra := 0
	for kr, n := range seen {
		if n > 1 {
			t.Errorf("event %s seen %d times", kr, n)
		}
		if !ackedSet[kr] {
			extra++
		}
	}
	if extra > unknown {
		t.Errorf("%d events of writes never acknowledged, only %d had an unknown outcome", extra, unknown)
	}
	fctx, fcancel := context.WithTimeout(context.Background(), opTimeout)
	defer fcancel()
	final, err := cli.Get(fctx, "w/", clientv3.WithPrefix(), clientv3.WithRev(lastRev))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{}
	for _, kv := range final.Kvs {
		want[string(kv.Key)] = string(kv.Value)
	}
	if fmt.Sprint(state) != fmt.Sprint(want) {
		t.Errorf("watcher's state %v, list at %d %v", state, lastRev, want)
	}
	t.Logf("%d acknowledged writes, %d unknown, %d events, 3 SIGKILLs", len(acked), unknown, len(seen))
}
