package robustness

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tesseradb/tessera/proto/tesserapb"
)

// Lease traffic (model_lease.go), after etcd's EtcdPutDeleteLease: each
// slot is a set of keys, one in every range, and a sequence of leases that
// only those keys are attached to. Per slot, a lifecycle worker grants a
// lease (with an id it picks, so that an ambiguous grant still names a
// known lease), keeps it alive, puts and reads the slot's keys with it, and
// then revokes it, or, for one lease in three (expirable, minimum TTL),
// stops renewing it and lets it expire. A second worker keeps putting the
// slot's keys with the current lease, racing the revokes and expiries. The
// plain KV workers also write the slot keys (detaching them).

// leaseSlotKeys returns the keys of slot s: one in every range.
func leaseSlotKeys(ranges []*tesserapb.RangeDescriptor, s int) []string {
	var keys []string
	for _, d := range ranges {
		start := string(d.GetStartKey())
		if start == "" {
			start = "0" // below every split key of the tests
		}
		keys = append(keys, fmt.Sprintf("%s/lease/s%02d", start, s))
	}
	return keys
}

// leaseTraffic drives the lease slots of one scenario.
type leaseTraffic struct {
	tr        *traffic
	slots     [][]string
	longTTL   int64 // never expires during the run (kept alive)
	shortTTL  int64 // expirable leases
	expiryGap time.Duration

	mu struct {
		sync.Mutex
		open map[int64][]string // leases not known to have ended: their slot keys
	}
}

// run starts the slot workers and returns a function that stops them and
// waits.
func (lt *leaseTraffic) run() (stop func()) {
	lt.mu.open = map[int64][]string{}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for s, keys := range lt.slots {
		var cur atomic.Int64
		wg.Add(2)
		go func() {
			defer wg.Done()
			lt.lifecycle(ctx, s, keys, &cur)
		}()
		go func() {
			defer wg.Done()
			lt.putter(ctx, s, keys, &cur)
		}()
	}
	return func() {
		cancel()
		wg.Wait()
	}
}

// leaseOp runs one lease operation and records it; known reports whether
// its outcome is known.
func (lt *leaseTraffic) leaseOp(cli *clientv3.Client, stream *int, in Input) (out Output, known bool) {
	tr := lt.tr
	ctx, cancel := context.WithTimeout(context.Background(), tr.opTimeout)
	defer cancel()
	call := tr.h.Now()
	lc := pb.NewLeaseClient(cli.ActiveConnection())
	var err error
	switch in.Kind {
	case OpLeaseGrant:
		ttl := lt.longTTL
		if in.Expirable {
			ttl = lt.shortTTL
		}
		_, err = lc.LeaseGrant(ctx, &pb.LeaseGrantRequest{ID: in.Lease, TTL: ttl})
	case OpLeaseRevoke:
		_, err = lc.LeaseRevoke(ctx, &pb.LeaseRevokeRequest{ID: in.Lease})
	case OpLeaseKeepAlive:
		var s pb.Lease_LeaseKeepAliveClient
		if s, err = lc.LeaseKeepAlive(ctx); err == nil {
			if err = s.Send(&pb.LeaseKeepAliveRequest{ID: in.Lease}); err == nil {
				var resp *pb.LeaseKeepAliveResponse
				if resp, err = s.Recv(); err == nil && resp.TTL <= 0 {
					err = rpctypes.ErrGRPCLeaseNotFound
				}
			}
		}
	case OpPutLease:
		var resp *clientv3.PutResponse
		if resp, err = cli.Put(ctx, in.Key, in.Value, clientv3.WithLease(clientv3.LeaseID(in.Lease))); err == nil {
			out.Rev = resp.Header.GetRevision()
		}
	}
	switch {
	case err == nil:
	case rpctypes.ErrorDesc(err) == rpctypes.ErrorDesc(rpctypes.ErrGRPCLeaseNotFound):
		out.LeaseNotFound = true
	case in.Kind == OpPutLease && definitelyFailed(err):
		tr.failed.Add(1)
		return out, false
	default:
		tr.h.Add(*stream, call, in, Output{Unknown: true})
		tr.unknown.Add(1)
		*stream = tr.h.NewStream()
		return Output{Unknown: true}, false
	}
	tr.h.Add(*stream, call, in, out)
	tr.acked.Add(1)
	return out, true
}

// get reads a key and records it.
func (lt *leaseTraffic) get(cli *clientv3.Client, stream *int, key string) {
	tr := lt.tr
	in := Input{Kind: OpGet, Key: key}
	ctx, cancel := context.WithTimeout(context.Background(), tr.opTimeout)
	defer cancel()
	call := tr.h.Now()
	out, err := do(ctx, cli, in)
	if err != nil {
		tr.failed.Add(1)
		return
	}
	tr.h.Add(*stream, call, in, out)
	tr.acked.Add(1)
}

func (lt *leaseTraffic) lifecycle(ctx context.Context, slot int, keys []string, cur *atomic.Int64) {
	tr := lt.tr
	rng := rand.New(rand.NewPCG(tr.seed, uint64(1000+slot)))
	cli := tr.clients[slot%len(tr.clients)]
	stream := tr.h.NewStream()
	for seq := int64(1); ctx.Err() == nil; seq++ {
		id := int64(slot+1)<<40 | seq
		expirable := rng.IntN(3) == 0
		lt.mu.Lock()
		lt.mu.open[id] = keys
		lt.mu.Unlock()
		lt.leaseOp(cli, &stream, Input{Kind: OpLeaseGrant, Lease: id, Keys: keys, Expirable: expirable})
		cur.Store(id)
		for i := range 3 + rng.IntN(5) {
			if !expirable {
				lt.leaseOp(cli, &stream, Input{Kind: OpLeaseKeepAlive, Lease: id, Keys: keys})
			}
			lt.leaseOp(cli, &stream, Input{Kind: OpPutLease, Key: keys[rng.IntN(len(keys))], Lease: id, Value: fmt.Sprintf("l%d-%d-%d", slot, seq, i)})
			lt.get(cli, &stream, keys[rng.IntN(len(keys))])
		}
		if expirable {
			// Let it expire while the putter keeps using it.
			hold(ctx, lt.expiryGap)
			lt.mu.Lock()
			delete(lt.mu.open, id) // it ends by itself
			lt.mu.Unlock()
			continue
		}
		lt.revoke(cli, &stream, id, keys, 3)
	}
}

// revoke revokes a lease until the answer is known (at most attempts
// tries); a known answer ends it.
func (lt *leaseTraffic) revoke(cli *clientv3.Client, stream *int, id int64, keys []string, attempts int) bool {
	for range attempts {
		if _, known := lt.leaseOp(cli, stream, Input{Kind: OpLeaseRevoke, Lease: id, Keys: keys}); known {
			lt.mu.Lock()
			delete(lt.mu.open, id)
			lt.mu.Unlock()
			return true
		}
	}
	return false
}

func (lt *leaseTraffic) putter(ctx context.Context, slot int, keys []string, cur *atomic.Int64) {
	tr := lt.tr
	rng := rand.New(rand.NewPCG(tr.seed, uint64(2000+slot)))
	cli := tr.clients[(slot+1)%len(tr.clients)]
	stream := tr.h.NewStream()
	for i := 0; ctx.Err() == nil; i++ {
		id := cur.Load()
		if id == 0 {
			hold(ctx, 10*time.Millisecond) // the first grant is under way
			continue
		}
		lt.leaseOp(cli, &stream, Input{Kind: OpPutLease, Key: keys[rng.IntN(len(keys))], Lease: id, Value: fmt.Sprintf("p%d-%d", slot, i)})
		lt.get(cli, &stream, keys[rng.IntN(len(keys))])
	}
}

// finish revokes, after the traffic, every lease that may still be alive
// (its revoke timed out) until the answer is known, so that no lease that
// the model holds unexpirable outlives its TTL.
func (lt *leaseTraffic) finish(deadline time.Time) error {
	cli := lt.tr.clients[0]
	stream := lt.tr.h.NewStream()
	lt.mu.Lock()
	open := make(map[int64][]string, len(lt.mu.open))
	for id, keys := range lt.mu.open {
		open[id] = keys
	}
	lt.mu.Unlock()
	for id, keys := range open {
		for !lt.revoke(cli, &stream, id, keys, 1) {
			if time.Now().After(deadline) {
				return fmt.Errorf("lease %x: no known answer to its revoke", id)
			}
		}
	}
	return nil
}

// leaseSummary counts the lease operations of a history by outcome, and
// the reads that found a key attached to a lease: the log shows that the
// lease traffic ran and what it met.
func leaseSummary(ops []Op) string {
	counts := map[string]int{}
	leasedReads := 0
	for _, op := range ops {
		if op.Input.Kind == OpGet && op.Output.Lease != 0 {
			leasedReads++
		}
		if !isLeaseOp(op.Input.Kind) && op.Input.Kind != OpPutLease {
			continue
		}
		outcome := "ok"
		switch {
		case op.Output.Unknown:
			outcome = "?"
		case op.Output.LeaseNotFound:
			outcome = "not-found"
		}
		if op.Input.Kind == OpLeaseGrant && op.Input.Expirable {
			outcome += "/expirable"
		}
		counts[string(op.Input.Kind)+" "+outcome]++
	}
	return fmt.Sprintf("%v; %d reads of a leased key", counts, leasedReads)
}
