package integration_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestAnyNodeAccess writes through each node and reads through each node,
// on every range: a linearizable read anywhere sees a write acknowledged
// anywhere, with the revision the write returned; txns and deletes work
// through every node too.
func TestAnyNodeAccess(t *testing.T) {
	c := newCluster(t)
	clients := []*clientv3.Client{c.NodeClient(t, 0), c.NodeClient(t, 1), c.NodeClient(t, 2)}
	for w, wc := range clients {
		for _, p := range rangeKeys {
			k := fmt.Sprintf("%s/any/%d", p, w)
			rev := put(t, wc, k, fmt.Sprint(w))
			for r, rc := range clients {
				g, err := rc.Get(tctx(t), k)
				must(t, "get", err)
				if len(g.Kvs) != 1 || string(g.Kvs[0].Value) != fmt.Sprint(w) || g.Kvs[0].ModRevision != rev {
					t.Errorf("%s written on node %d at %d, read on node %d: %s", k, w, rev, r, fmtKVs(g.Kvs))
				}
				if g.Header.Revision < rev {
					t.Errorf("read on node %d at %d, before the write at %d acknowledged by node %d", r, g.Header.Revision, rev, w)
				}
			}
			tr, err := wc.Txn(tctx(t)).If(clientv3.Compare(clientv3.ModRevision(k), "=", rev)).Then(clientv3.OpPut(k, "txn")).Commit()
			must(t, "txn", err)
			if !tr.Succeeded {
				t.Errorf("txn on node %d did not see %s at %d", w, k, rev)
			}
		}
	}
	// Each node sees everything, over all ranges at once.
	var want []string
	for _, p := range rangeKeys {
		for w := range clients {
			want = append(want, fmt.Sprintf("%s/any/%d", p, w))
		}
	}
	for r, rc := range clients {
		g, err := rc.Get(tctx(t), "", clientv3.WithPrefix())
		must(t, "get", err)
		wantKeys(t, fmt.Sprintf("all keys on node %d", r), g.Kvs, want...)
		for _, kv := range g.Kvs {
			if string(kv.Value) != "txn" || kv.Version != 2 {
				t.Errorf("node %d: %s", r, fmtKVs(g.Kvs))
				break
			}
		}
	}
	for w, wc := range clients {
		d, err := wc.Delete(tctx(t), rangeKeys[w]+"/any/", clientv3.WithPrefix())
		must(t, "delete", err)
		if d.Deleted != 3 {
			t.Errorf("delete through node %d deleted %d, want 3", w, d.Deleted)
		}
	}
}

// TestMemberList checks etcd's Cluster.MemberList: every node, with its name
// and URLs.
func TestMemberList(t *testing.T) {
	c, cli := newClusterClient(t)
	resp, err := cli.MemberList(tctx(t))
	must(t, "member list", err)
	if len(resp.Members) != 3 {
		t.Fatalf("%d members, want 3: %v", len(resp.Members), resp.Members)
	}
	var got, want []string
	for i, m := range resp.Members {
		got = append(got, fmt.Sprintf("%s %v", m.Name, m.ClientURLs))
		want = append(want, fmt.Sprintf("node%d [%s]", i+1, c.Endpoint(i)))
		if len(m.PeerURLs) != 1 || m.ID == 0 {
			t.Errorf("member %d: %v", i, m)
		}
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("members %q, want %q", got, want)
	}
}

// TestHealthAndMetrics checks /health and /metrics on every node's client
// port.
func TestHealthAndMetrics(t *testing.T) {
	c := newCluster(t)
	hc := &http.Client{Timeout: opTimeout}
	t.Cleanup(hc.CloseIdleConnections)
	for i, ep := range c.Endpoints() {
		resp, err := hc.Get(ep + "/health")
		must(t, "GET /health", err)
		var body struct{ Health string }
		err = json.NewDecoder(resp.Body).Decode(&body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK || err != nil || body.Health != "true" {
			t.Errorf("node %d /health: %s %+v %v", i, resp.Status, body, err)
		}
		resp, err = hc.Get(ep + "/metrics")
		must(t, "GET /metrics", err)
		b, err := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK || err != nil || !strings.Contains(string(b), "tessera_") {
			t.Errorf("node %d /metrics: %s, %d bytes, no tessera_ metric (%v)", i, resp.Status, len(b), err)
		}
	}
}

// traffic writes to every range from several goroutines, each through its
// own node, until stopped; it records every acknowledged write and every
// error.
type traffic struct {
	stop chan struct{}
	wg   sync.WaitGroup
	mu   struct {
		sync.Mutex
		acks [][]ack // per writer, in order
		errs []putError
	}
}

// putError is a put that failed.
type putError struct {
	writer int
	value  string
	err    error
}

// ack is one acknowledged write: key, value, revision, and when the request
// started and ended.
type ack struct {
	key, value string
	rev        int64
	start, end time.Time
}

func startTraffic(t *testing.T, clients []*clientv3.Client, writersPerRange int) *traffic {
	tr := &traffic{stop: make(chan struct{})}
	n := len(rangeKeys) * writersPerRange
	tr.mu.acks = make([][]ack, n)
	for w := range n {
		cli := clients[w%len(clients)]
		key := fmt.Sprintf("%s/traffic/%d", rangeKeys[w%len(rangeKeys)], w)
		tr.wg.Add(1)
		go func() {
			defer tr.wg.Done()
			for i := 0; ; i++ {
				select {
				case <-tr.stop:
					return
				default:
				}
				v := fmt.Sprint(i)
				ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
				start := time.Now()
				resp, err := cli.Put(ctx, key, v)
				end := time.Now()
				cancel()
				tr.mu.Lock()
				if err != nil {
					tr.mu.errs = append(tr.mu.errs, putError{writer: w, value: v, err: fmt.Errorf("put %s=%s by writer %d: %w", key, v, w, err)})
				} else {
					tr.mu.acks[w] = append(tr.mu.acks[w], ack{key: key, value: v, rev: resp.Header.Revision, start: start, end: end})
				}
				tr.mu.Unlock()
			}
		}()
	}
	t.Cleanup(tr.halt)
	return tr
}

// halt stops the writers and waits for them.
func (tr *traffic) halt() {
	select {
	case <-tr.stop:
	default:
		close(tr.stop)
	}
	tr.wg.Wait()
}

// count returns the number of acknowledged writes so far.
func (tr *traffic) count() int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	n := 0
	for _, a := range tr.mu.acks {
		n += len(a)
	}
	return n
}

// waitWrites waits until n more writes than now were acknowledged.
func (tr *traffic) waitWrites(t *testing.T, n int) {
	t.Helper()
	target := tr.count() + n
	deadline := time.Now().Add(opTimeout)
	for tr.count() < target {
		if time.Now().After(deadline) {
			t.Fatalf("traffic stalled: %d writes acknowledged, waiting for %d", tr.count(), target)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// check halts the traffic and verifies it: no error (unless allowErrors:
// then a failed put may or may not have taken effect, as etcd allows for a
// request in flight when its leader stops), revisions increasing along each
// writer, every pair of writes ordered in real time ordered by revision, and
// each key's stored history exactly the acknowledged puts, each once, at
// its acknowledged revision (plus failed ones that took effect).
func (tr *traffic) check(t *testing.T, cli *clientv3.Client, allowErrors bool) {
	t.Helper()
	tr.halt()
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if allowErrors {
		t.Logf("%d writes failed (allowed)", len(tr.mu.errs))
	} else {
		for i, e := range tr.mu.errs {
			if i == 10 {
				t.Errorf("... %d errors in all", len(tr.mu.errs))
				break
			}
			t.Errorf("write failed: %v", e.err)
		}
	}
	var all []ack
	for w, acks := range tr.mu.acks {
		for i := 1; i < len(acks); i++ {
			if acks[i].rev <= acks[i-1].rev {
				t.Errorf("writer %d: revision %d after %d", w, acks[i].rev, acks[i-1].rev)
			}
		}
		all = append(all, acks...)
		if len(acks) == 0 {
			t.Errorf("writer %d: no write acknowledged", w)
			continue
		}
		failed := map[string]bool{}
		for _, e := range tr.mu.errs {
			if e.writer == w {
				failed[e.value] = true
			}
		}
		checkHistory(t, cli, acks[0].key, acks, failed)
	}
	checkRealTimeOrder(t, all)
}

// checkHistory walks key's stored versions back from the newest and fails t
// unless they are exactly the acknowledged puts, each once at its revision,
// plus puts that failed (failed values) and took effect anyway.
func checkHistory(t *testing.T, cli *clientv3.Client, key string, acks []ack, failed map[string]bool) {
	t.Helper()
	var hist []*mvccpb.KeyValue
	rev := int64(0)
	for {
		var opts []clientv3.OpOption
		if rev > 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		g, err := cli.Get(tctx(t), key, opts...)
		must(t, "get history of "+key, err)
		if len(g.Kvs) == 0 {
			break
		}
		hist = append(hist, g.Kvs[0])
		if g.Kvs[0].Version <= 1 {
			break
		}
		rev = g.Kvs[0].ModRevision - 1
	}
	slices.Reverse(hist)
	acked := map[string]int64{}
	for _, a := range acks {
		acked[a.value] = a.rev
	}
	seen := map[string]bool{}
	var problems, lines []string
	for _, kv := range hist {
		v := string(kv.Value)
		ackRev, isAcked := acked[v]
		note, bad := "", true
		switch {
		case seen[v]:
			note = "DUPLICATE: this put was already applied"
		case isAcked && ackRev != kv.ModRevision:
			note = fmt.Sprintf("acknowledged at %d instead", ackRev)
		case !isAcked && !failed[v]:
			note = "from no put"
		case !isAcked:
			note, bad = "(a failed put that took effect)", false
		default:
			bad = false
		}
		if bad {
			problems = append(problems, fmt.Sprintf("version %d %q: %s", kv.Version, v, note))
		}
		seen[v] = true
		if note != "" {
			lines = append(lines, fmt.Sprintf("  version %d: %q at %d %s", kv.Version, kv.Value, kv.ModRevision, note))
		}
	}
	for _, a := range acks {
		if !seen[a.value] {
			problems = append(problems, fmt.Sprintf("acknowledged put %q at %d is not in the history", a.value, a.rev))
		}
	}
	if len(problems) > 0 {
		t.Errorf("%s: history does not match the acknowledged puts (%d acknowledged, %d failed): %s\n%s",
			key, len(acks), len(failed), strings.Join(problems, "; "), strings.Join(lines, "\n"))
	}
}

// checkRealTimeOrder fails t if a write acknowledged before another started
// has the larger revision (revisions must follow real time across ranges and
// nodes).
func checkRealTimeOrder(t *testing.T, all []ack) {
	t.Helper()
	slices.SortFunc(all, func(a, b ack) int { return a.end.Compare(b.end) })
	bad := 0
	for i, a := range all {
		for _, b := range all[i+1:] {
			if a.end.Before(b.start) && a.rev >= b.rev {
				if bad < 5 {
					t.Errorf("%s=%s acknowledged at revision %d before %s=%s started, which got revision %d", a.key, a.value, a.rev, b.key, b.value, b.rev)
				}
				bad++
			}
		}
	}
	if bad > 5 {
		t.Errorf("%d pairs of writes out of real-time order", bad)
	}
}

// TestLeaderTransferDuringTraffic moves the leadership of every range and of
// the meta group (the TSO) around all nodes while writers hammer every range
// through every node: no write may fail, and revisions keep following real
// time.
func TestLeaderTransferDuringTraffic(t *testing.T) {
	c := newCluster(t)
	clients := []*clientv3.Client{c.NodeClient(t, 0), c.NodeClient(t, 1), c.NodeClient(t, 2)}
	tr := startTraffic(t, clients, 1)
	tr.waitWrites(t, 20)
	groups := append([]uint64{metaRange}, dataRanges...)
	for round := range 3 {
		for _, g := range groups {
			to := (c.Leader(g) + 1 + round%2) % 3
			c.TransferLeader(g, to)
			tr.waitWrites(t, 4)
		}
	}
	tr.waitWrites(t, 20)
	tr.check(t, c.Client(t), false)
}

// TestNodeRestart restarts each node in turn, then the whole cluster: the
// data survives with the same revisions and versions, history stays
// readable, a restarted node serves reads and writes, and new writes get
// larger revisions than every earlier one.
func TestNodeRestart(t *testing.T) {
	c, cli := newClusterClient(t)
	m := &model{}
	for round := range 3 {
		for _, p := range rangeKeys {
			for _, k := range []string{p, p + "/x"} {
				v := fmt.Sprintf("%s#%d", k, round)
				m.put(k, v, put(t, cli, k, v))
			}
		}
	}
	d, err := cli.Delete(tctx(t), "e/x")
	must(t, "delete", err)
	m.del("e/x", d.Header.Revision)
	mid := m.writes[len(m.writes)/2].rev
	last := d.Header.Revision

	verify := func(what string, node int) {
		t.Helper()
		nc := c.NodeClient(t, node)
		g, err := nc.Get(tctx(t), "", clientv3.WithPrefix())
		must(t, what+": get", err)
		wantKVs(t, what+": current", g.Kvs, m.at(last, "", ""))
		g, err = nc.Get(tctx(t), "", clientv3.WithPrefix(), clientv3.WithRev(mid))
		must(t, what+": historical get", err)
		wantKVs(t, what+": at the middle write", g.Kvs, m.at(mid, "", ""))
		for _, p := range rangeKeys {
			k := p + "/after-restart"
			r := put(t, nc, k, what)
			if r <= last {
				t.Errorf("%s: write after restart at %d <= earlier write %d", what, r, last)
			}
			m.put(k, what, r)
			last = r
		}
	}
	for node := range 3 {
		c.Restart(node)
		c.WaitReady(t)
		verify(fmt.Sprintf("restart of node %d", node), node)
	}

	for node := range 3 {
		c.Stop(node)
	}
	for node := range 3 {
		c.Restart(node)
	}
	c.WaitReady(t)
	for node := range 3 {
		verify(fmt.Sprintf("after a full restart, node %d", node), node)
	}
}

// TestRestartLeaderDuringTraffic restarts the node that leads every range
// and the TSO while writers keep writing through the other nodes: a put in
// flight may fail (as in etcd when the leader stops), but no put is applied
// twice or lost once acknowledged, and real-time order holds.
func TestRestartLeaderDuringTraffic(t *testing.T) {
	c := newCluster(t)
	tr := startTraffic(t, []*clientv3.Client{c.NodeClient(t, 1), c.NodeClient(t, 2)}, 1)
	for range 3 {
		// Every data range and the TSO led by node 0; writers use nodes
		// 1 and 2.
		for _, g := range append([]uint64{metaRange}, dataRanges...) {
			c.TransferLeader(g, 0)
		}
		tr.waitWrites(t, 20)
		c.Restart(0)
		tr.waitWrites(t, 20)
		c.WaitReady(t)
	}
	tr.waitWrites(t, 20)
	tr.check(t, c.Client(t), true)
}

// TestRevisionOrderAcrossRanges checks that revisions follow real time
// across ranges and nodes: a put acknowledged on one range has a smaller
// revision than any put started later on another range, through any node;
// and a read started after a put was acknowledged sees it.
func TestRevisionOrderAcrossRanges(t *testing.T) {
	c := newCluster(t)
	clients := []*clientv3.Client{c.NodeClient(t, 0), c.NodeClient(t, 1), c.NodeClient(t, 2)}

	// Sequential: each put starts after the previous one's ack.
	var prev int64
	for i := range 48 {
		p := rangeKeys[i%len(rangeKeys)]
		cli := clients[(i/len(rangeKeys))%len(clients)]
		k := fmt.Sprintf("%s/seq", p)
		r := put(t, cli, k, fmt.Sprint(i))
		if r <= prev {
			t.Errorf("put #%d on %s: revision %d <= the previous put's %d (another range)", i, p, r, prev)
		}
		prev = r
		// A read through another node, of another range too, is at or
		// after it and sees it.
		g, err := clients[(i+1)%len(clients)].Get(tctx(t), "", clientv3.WithPrefix())
		must(t, "get", err)
		if g.Header.Revision < r {
			t.Errorf("read after put #%d at %d: header revision %d", i, r, g.Header.Revision)
		}
		found := false
		for _, kv := range g.Kvs {
			if string(kv.Key) == k {
				found = kv.ModRevision == r && string(kv.Value) == fmt.Sprint(i)
			}
		}
		if !found {
			t.Errorf("read after put #%d (%s at %d) does not see it: %s", i, k, r, fmtKVs(g.Kvs))
		}
	}

	// Concurrent: writers on every range through every node; every pair
	// ordered in real time must be ordered by revision.
	tr := startTraffic(t, clients, 2)
	tr.waitWrites(t, 300)
	tr.check(t, clients[0], false)
}
