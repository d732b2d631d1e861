package integration_test

// Leases over many ranges, after etcd's tests/integration/v3_lease_test.go
// (its tests as the list; these are Tessera's own). The keys of one lease
// live on all four data ranges.

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tesseradb/tessera/cmd/tessera/server"
	"github.com/tesseradb/tessera/tests/testcluster"
)

// leaseKeys puts one key per data range attached to lease id and returns
// them in key order.
func leaseKeys(t testing.TB, cli *clientv3.Client, prefix string, id clientv3.LeaseID) []string {
	t.Helper()
	var keys []string
	for _, r := range rangeKeys {
		k := r + "/" + prefix
		_, err := cli.Put(tctx(t), k, "v", clientv3.WithLease(id))
		must(t, "put "+k+" with lease", err)
		keys = append(keys, k)
	}
	return keys
}

// leasedKeys returns every key attached to lease id, read at once from the
// whole keyspace.
func leasedKeys(t testing.TB, cli *clientv3.Client, id clientv3.LeaseID) []string {
	t.Helper()
	resp, err := cli.Get(tctx(t), "", clientv3.WithFromKey())
	must(t, "get all", err)
	var out []string
	for _, kv := range resp.Kvs {
		if kv.Lease == int64(id) {
			out = append(out, string(kv.Key))
		}
	}
	return out
}

// TestLeaseGrantRevoke: grants (chosen and picked ids, duplicates, TTL
// limits), TimeToLive with keys across ranges, Leases, Revoke deleting the
// keys on every range, and a revoked id granted again.
func TestLeaseGrantRevoke(t *testing.T) {
	_, cli := newClusterClient(t)
	raw := pb.NewLeaseClient(cli.ActiveConnection())

	g, err := cli.Grant(tctx(t), 60)
	must(t, "grant", err)
	if g.ID <= 0 || g.TTL != 60 {
		t.Fatalf("grant: id %d ttl %d, want a positive id and ttl 60", g.ID, g.TTL)
	}
	const chosen = 0x7e57
	g2, err := raw.LeaseGrant(tctx(t), &pb.LeaseGrantRequest{ID: chosen, TTL: 60})
	must(t, "grant chosen id", err)
	if g2.ID != chosen {
		t.Fatalf("grant chosen id: got %x", g2.ID)
	}
	_, err = raw.LeaseGrant(tctx(t), &pb.LeaseGrantRequest{ID: chosen, TTL: 60})
	wantErr(t, "grant duplicate id", err, rpctypes.ErrGRPCLeaseExist)
	_, err = raw.LeaseGrant(tctx(t), &pb.LeaseGrantRequest{TTL: 9_000_000_001})
	wantErr(t, "grant too large ttl", err, rpctypes.ErrGRPCLeaseTTLTooLarge)
	small, err := cli.Grant(tctx(t), 0)
	must(t, "grant ttl 0", err)
	if small.TTL < 1 {
		t.Fatalf("grant ttl 0: ttl %d, want the minimum TTL (>= 1)", small.TTL)
	}

	keys := leaseKeys(t, cli, "k", g.ID)
	ttl, err := cli.TimeToLive(tctx(t), g.ID, clientv3.WithAttachedKeys())
	must(t, "timetolive", err)
	var got []string
	for _, k := range ttl.Keys {
		got = append(got, string(k))
	}
	slices.Sort(got)
	if !slices.Equal(got, keys) || ttl.GrantedTTL != 60 || ttl.TTL <= 0 || ttl.TTL > 60 {
		t.Fatalf("timetolive: keys %q ttl %d granted %d, want keys %q, 0 < ttl <= 60, granted 60", got, ttl.TTL, ttl.GrantedTTL, keys)
	}
	ls, err := cli.Leases(tctx(t))
	must(t, "leases", err)
	var ids []clientv3.LeaseID
	for _, l := range ls.Leases {
		ids = append(ids, l.ID)
	}
	for _, want := range []clientv3.LeaseID{g.ID, chosen, small.ID} {
		if !slices.Contains(ids, want) {
			t.Fatalf("leases %v lack %x", ids, want)
		}
	}
	gr, err := cli.Get(tctx(t), keys[2])
	must(t, "get leased key", err)
	if len(gr.Kvs) != 1 || gr.Kvs[0].Lease != int64(g.ID) {
		t.Fatalf("get leased key: %v, want lease %x", gr.Kvs, g.ID)
	}

	_, err = cli.Revoke(tctx(t), g.ID)
	must(t, "revoke", err)
	if left := leasedKeys(t, cli, g.ID); len(left) > 0 {
		t.Fatalf("keys left after revoke: %q", left)
	}
	for _, k := range keys {
		gr, err := cli.Get(tctx(t), k)
		must(t, "get", err)
		if len(gr.Kvs) != 0 {
			t.Fatalf("%s readable after revoke: %v", k, gr.Kvs)
		}
	}
	_, err = cli.Revoke(tctx(t), g.ID)
	wantErr(t, "revoke again", err, rpctypes.ErrGRPCLeaseNotFound)
	_, err = cli.Put(tctx(t), "c/after", "v", clientv3.WithLease(g.ID))
	wantErr(t, "put with revoked lease", err, rpctypes.ErrGRPCLeaseNotFound)
	ttl, err = cli.TimeToLive(tctx(t), g.ID)
	must(t, "timetolive of revoked", err)
	if ttl.TTL != -1 {
		t.Fatalf("timetolive of revoked lease: ttl %d, want -1", ttl.TTL)
	}
	ka, err := cli.KeepAliveOnce(tctx(t), g.ID)
	wantErr(t, "keep-alive of revoked lease", err, rpctypes.ErrGRPCLeaseNotFound)
	_ = ka

	// etcd lets a client grant a revoked id again: the ranges that saw it
	// revoked must accept the new grant.
	_, err = raw.LeaseGrant(tctx(t), &pb.LeaseGrantRequest{ID: int64(g.ID), TTL: 60})
	must(t, "grant revoked id again", err)
	again := leaseKeys(t, cli, "again", g.ID)
	if left := leasedKeys(t, cli, g.ID); !slices.Equal(left, again) {
		t.Fatalf("keys of the new grant: %q, want %q", left, again)
	}

	// A plain put detaches a key; ignore_lease keeps it.
	_, err = cli.Put(tctx(t), again[0], "w")
	must(t, "put without lease", err)
	_, err = cli.Put(tctx(t), again[1], "w", clientv3.WithIgnoreLease())
	must(t, "put ignore_lease", err)
	// TimeToLive lists the keys from the ranges' lease indexes: the
	// detached key is gone from them, the others stay.
	ttl, err = cli.TimeToLive(tctx(t), g.ID, clientv3.WithAttachedKeys())
	must(t, "timetolive after detaching", err)
	got = got[:0]
	for _, k := range ttl.Keys {
		got = append(got, string(k))
	}
	slices.Sort(got)
	if want := leasedKeys(t, cli, g.ID); !slices.Equal(got, want) || slices.Contains(got, again[0]) || len(got) != len(again)-1 {
		t.Fatalf("timetolive after detaching %s: keys %q, want %q", again[0], got, want)
	}
	_, err = cli.Revoke(tctx(t), g.ID)
	must(t, "revoke new grant", err)
	gr, err = cli.Get(tctx(t), "", clientv3.WithFromKey())
	must(t, "get all", err)
	wantKeys(t, "after revoking the new grant", gr.Kvs, again[0])
}

// TestLeaseExpiry: a lease that is not kept alive expires, and its keys on
// all four ranges are deleted as normal delete events with prev_kv.
func TestLeaseExpiry(t *testing.T) {
	_, cli := newClusterClient(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wc := cli.Watch(ctx, "", clientv3.WithFromKey(), clientv3.WithPrevKV())

	g, err := cli.Grant(tctx(t), 1)
	must(t, "grant", err)
	granted := time.Now()
	keys := leaseKeys(t, cli, "exp", g.ID)
	deleted := map[string]bool{}
	timeout := time.After(opTimeout)
	for len(deleted) < len(keys) {
		select {
		case wr := <-wc:
			must(t, "watch", wr.Err())
			for _, ev := range wr.Events {
				if ev.Type != mvccpb.DELETE {
					continue
				}
				if ev.PrevKv == nil || ev.PrevKv.Lease != int64(g.ID) {
					t.Fatalf("delete event of %s: prev_kv %v, want lease %x", ev.Kv.Key, ev.PrevKv, g.ID)
				}
				deleted[string(ev.Kv.Key)] = true
			}
		case <-timeout:
			t.Fatalf("expiry: deleted %v of %q", deleted, keys)
		}
	}
	if d := time.Since(granted); d < time.Second {
		t.Fatalf("lease of TTL 1s expired after %v", d)
	}
	if left := leasedKeys(t, cli, g.ID); len(left) > 0 {
		t.Fatalf("keys left after expiry: %q", left)
	}
	ttl, err := cli.TimeToLive(tctx(t), g.ID)
	must(t, "timetolive", err)
	if ttl.TTL != -1 {
		t.Fatalf("timetolive after expiry: %d, want -1", ttl.TTL)
	}
}

// TestLeaseKeepAlive: many leases on one keep-alive stream outlive their
// TTL several times over; once the keep-alives stop, they expire.
func TestLeaseKeepAlive(t *testing.T) {
	c, cli := newClusterClient(t)
	// A client of a node that does not lead the meta group: its
	// keep-alives are relayed.
	meta := c.Leader(metaRange)
	other := c.NodeClient(t, (meta+1)%c.Size())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var ids []clientv3.LeaseID
	var keys []string
	for i := range 5 {
		// TTL 2 s: clientv3 renews every third of it, and under -race on
		// two shared cores one renewal round trip can take most of a
		// second (with TTL 1 s this flaked on main).
		g, err := other.Grant(tctx(t), 2)
		must(t, "grant", err)
		ids = append(ids, g.ID)
		keys = append(keys, leaseKeys(t, other, fmt.Sprint("ka", i), g.ID)...)
		ch, err := other.KeepAlive(ctx, g.ID)
		must(t, "keep-alive", err)
		go func() {
			for range ch {
			}
		}()
	}
	// Three TTLs: without the keep-alives every key would be gone.
	deadline := time.Now().Add(6 * time.Second)
	for time.Now().Before(deadline) {
		for _, id := range ids {
			if n := len(leasedKeys(t, cli, id)); n != len(rangeKeys) {
				t.Fatalf("lease %x kept alive has %d keys, want %d", id, n, len(rangeKeys))
			}
		}
	}
	cancel()
	for _, id := range ids {
		waitFor(t, fmt.Sprintf("lease %x to expire", id), func() bool { return len(leasedKeys(t, cli, id)) == 0 })
	}
}

// waitFor polls cond until it holds or the test's deadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(opTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: timed out", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestLeaseRevokeRacesPuts: rounds of puts with a lease on random ranges
// racing its revoke. Every put either fails with "lease not found" or its
// key is deleted: once all are done, no key of the lease is left anywhere.
func TestLeaseRevokeRacesPuts(t *testing.T) {
	_, cli := newClusterClient(t)
	rounds := 20
	if testing.Short() {
		rounds = 5
	}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 13))
	t.Logf("seed-free randomized rounds: %d", rounds)
	for round := range rounds {
		g, err := cli.Grant(tctx(t), 60)
		must(t, "grant", err)
		var wg sync.WaitGroup
		var mu sync.Mutex
		var ok, refused int
		for w := range 8 {
			prefix := rangeKeys[rng.IntN(len(rangeKeys))]
			delay := time.Duration(rng.IntN(20)) * time.Millisecond
			wg.Add(1)
			go func() {
				defer wg.Done()
				time.Sleep(delay)
				for i := range 5 {
					_, err := cli.Put(tctx(t), fmt.Sprintf("%s/race%d/%d/%d", prefix, round, w, i), "v", clientv3.WithLease(g.ID))
					mu.Lock()
					switch {
					case err == nil:
						ok++
					case errIs(err, rpctypes.ErrGRPCLeaseNotFound):
						refused++
					default:
						t.Errorf("put with lease: %v", err)
					}
					mu.Unlock()
				}
			}()
		}
		time.Sleep(time.Duration(rng.IntN(30)) * time.Millisecond)
		_, err = cli.Revoke(tctx(t), g.ID)
		must(t, "revoke", err)
		wg.Wait()
		if left := leasedKeys(t, cli, g.ID); len(left) > 0 {
			t.Fatalf("round %d: orphaned keys of revoked lease %x: %q (puts ok %d, refused %d)", round, g.ID, left, ok, refused)
		}
		t.Logf("round %d: puts ok %d, refused %d", round, ok, refused)
	}
}

// TestLeaseKeepAliveAcrossMetaLeaderLoss: a lease kept alive through a
// node that does not lead the meta group outlives the loss of the meta
// leader (the lease's owner) by several TTLs: the new leader extends every
// lease on promotion and the keep-alives move to it.
func TestLeaseKeepAliveAcrossMetaLeaderLoss(t *testing.T) {
	c, _ := newClusterClient(t)
	owner := c.Leader(metaRange)
	via := (owner + 1) % c.Size()
	cli := c.NodeClient(t, via)
	g, err := cli.Grant(tctx(t), 2)
	must(t, "grant", err)
	keys := leaseKeys(t, cli, "owner", g.ID)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := cli.KeepAlive(ctx, g.ID)
	must(t, "keep-alive", err)
	go func() {
		for range ch {
		}
	}()
	c.Stop(owner)
	newOwner := c.Leader(metaRange)
	if newOwner == owner {
		t.Fatalf("meta leader still node %d", owner)
	}
	// Three TTLs after the loss every key must still be there.
	deadline := time.Now().Add(6 * time.Second)
	for time.Now().Before(deadline) {
		if got := leasedKeys(t, cli, g.ID); !slices.Equal(got, keys) {
			t.Fatalf("keys of a lease kept alive across the meta leader's loss: %q, want %q", got, keys)
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.Restart(owner)
	c.WaitReady(t)
	ttl, err := cli.TimeToLive(tctx(t), g.ID)
	must(t, "timetolive", err)
	if ttl.TTL <= 0 {
		t.Fatalf("lease kept alive: ttl %d", ttl.TTL)
	}
}

// TestLeaseSurvivesFullRestart: leases and their keys survive a restart of
// every node, and still expire afterwards.
func TestLeaseSurvivesFullRestart(t *testing.T) {
	c, cli := newClusterClient(t)
	long, err := cli.Grant(tctx(t), 3600)
	must(t, "grant", err)
	short, err := cli.Grant(tctx(t), 3)
	must(t, "grant", err)
	longKeys := leaseKeys(t, cli, "long", long.ID)
	leaseKeys(t, cli, "short", short.ID)
	for i := range c.Size() {
		c.Stop(i)
	}
	for i := range c.Size() {
		c.Restart(i)
	}
	c.WaitReady(t)
	cli2 := c.Client(t)
	ttl, err := cli2.TimeToLive(tctx(t), long.ID, clientv3.WithAttachedKeys())
	must(t, "timetolive after restart", err)
	if ttl.TTL <= 0 || ttl.GrantedTTL != 3600 || len(ttl.Keys) != len(longKeys) {
		t.Fatalf("lease after restart: ttl %d granted %d keys %q", ttl.TTL, ttl.GrantedTTL, ttl.Keys)
	}
	waitFor(t, "short lease to expire after the restart", func() bool { return len(leasedKeys(t, cli2, short.ID)) == 0 })
	if got := leasedKeys(t, cli2, long.ID); !slices.Equal(got, longKeys) {
		t.Fatalf("long lease keys: %q, want %q", got, longKeys)
	}
	_, err = cli2.Revoke(tctx(t), long.ID)
	must(t, "revoke after restart", err)
	if got := leasedKeys(t, cli2, long.ID); len(got) > 0 {
		t.Fatalf("keys left: %q", got)
	}
}

// TestLeaseBadInput: etcd's errors for bad lease requests, and the node
// keeps serving.
func TestLeaseBadInput(t *testing.T) {
	_, cli := newClusterClient(t)
	raw := pb.NewLeaseClient(cli.ActiveConnection())
	_, err := raw.LeaseRevoke(tctx(t), &pb.LeaseRevokeRequest{ID: 424242})
	wantErr(t, "revoke unknown", err, rpctypes.ErrGRPCLeaseNotFound)
	_, err = cli.Put(tctx(t), "a/x", "v", clientv3.WithLease(424242))
	wantErr(t, "put unknown lease", err, rpctypes.ErrGRPCLeaseNotFound)
	_, err = cli.Txn(tctx(t)).Then(clientv3.OpPut("e/x", "v", clientv3.WithLease(424242))).Commit()
	wantErr(t, "txn put unknown lease", err, rpctypes.ErrGRPCLeaseNotFound)
	// A put on the branch that does not run names no lease that matters.
	_, err = cli.Txn(tctx(t)).If(clientv3.Compare(clientv3.Version("e/x"), ">", 5)).
		Then(clientv3.OpPut("e/x", "v", clientv3.WithLease(424242))).Else(clientv3.OpPut("e/y", "v")).Commit()
	must(t, "txn with unknown lease on the branch not taken", err)
	_, err = cli.Put(tctx(t), "a/x", "v", clientv3.WithLease(424242), clientv3.WithIgnoreLease())
	wantErr(t, "put with lease and ignore_lease", err, rpctypes.ErrGRPCLeaseProvided)
	_, err = raw.LeaseGrant(tctx(t), &pb.LeaseGrantRequest{TTL: -5})
	must(t, "grant negative ttl (raised to the minimum, as etcd)", err)

	// Keep-alive of an unknown lease answers TTL 0; the stream goes on.
	s, err := raw.LeaseKeepAlive(tctx(t))
	must(t, "keep-alive stream", err)
	must(t, "send", s.Send(&pb.LeaseKeepAliveRequest{ID: 424242}))
	resp, err := s.Recv()
	must(t, "recv", err)
	if resp.TTL != 0 || resp.ID != 424242 {
		t.Fatalf("keep-alive of unknown lease: %v, want TTL 0", resp)
	}
	g, err := cli.Grant(tctx(t), 60)
	must(t, "grant", err)
	must(t, "send", s.Send(&pb.LeaseKeepAliveRequest{ID: int64(g.ID)}))
	resp, err = s.Recv()
	must(t, "recv", err)
	if resp.TTL != 60 {
		t.Fatalf("keep-alive: %v, want TTL 60", resp)
	}
	must(t, "close send", s.CloseSend())
	_, err = cli.Put(tctx(t), "g/x", "v", clientv3.WithLease(g.ID))
	must(t, "node still serves", err)
}

// TestLeaseIndexMovesWithSnapshot: a replica that caught up by snapshot (its
// log was truncated while it was down) holds the range's lease index: as
// the range's leader it lists a lease's keys for TimeToLive, and its
// revocation deletes every one of them.
func TestLeaseIndexMovesWithSnapshot(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Nodes: 3, SplitKeys: splitKeys, Configure: func(cfg *server.Config) {
		cfg.RaftLogTruncateThreshold = 16
	}})
	c.WaitReady(t)
	cli := c.Client(t)
	g, err := cli.Grant(tctx(t), 3600)
	must(t, "grant", err)
	const rangeOfC = 3 // ["b", "d")
	c.TransferLeader(rangeOfC, 0)
	c.Stop(2)
	var want []string
	for i := 0; i < 60; i++ {
		k := fmt.Sprintf("c/l%02d", i)
		_, err := cli.Put(tctx(t), k, "v", clientv3.WithLease(g.ID))
		must(t, "put "+k, err)
		if i%5 == 0 {
			// Detached again: not in the index.
			_, err = cli.Put(tctx(t), k, "w")
			must(t, "detach "+k, err)
			continue
		}
		want = append(want, k)
	}
	c.Restart(2)
	c.WaitReady(t)
	c.TransferLeader(rangeOfC, 2)
	if l := c.Leader(rangeOfC); l != 2 {
		t.Fatalf("range %d led by node index %d, want 2", rangeOfC, l)
	}
	if n := metricValue(t, c.Endpoint(2), "tessera_raft_snapshots_applied_total"); n < 1 {
		t.Fatalf("node 2 applied %v snapshots: it did not catch up by snapshot, the test did not test it", n)
	}
	ttl, err := c.NodeClient(t, 2).TimeToLive(tctx(t), g.ID, clientv3.WithAttachedKeys())
	must(t, "timetolive", err)
	var got []string
	for _, k := range ttl.Keys {
		got = append(got, string(k))
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Fatalf("keys of the lease from the snapshot's index: %q, want %q", got, want)
	}
	_, err = cli.Revoke(tctx(t), g.ID)
	must(t, "revoke", err)
	if left := leasedKeys(t, cli, g.ID); len(left) > 0 {
		t.Fatalf("keys left after revoke: %q", left)
	}
	gr, err := cli.Get(tctx(t), "c/l", clientv3.WithPrefix(), clientv3.WithCountOnly())
	must(t, "count", err)
	if gr.Count != 12 {
		t.Fatalf("%d keys under c/l after the revoke, want the 12 detached ones", gr.Count)
	}
}
