package robustness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tesseradb/tessera/proto/tesserapb"
)

// keysFor returns perRange keys inside every range, so that the traffic
// reaches all of them (each operation touches one key, hence one range).
func keysFor(ranges []*tesserapb.RangeDescriptor, perRange int) ([]string, error) {
	var keys []string
	for _, d := range ranges {
		for i := range perRange {
			k := string(d.GetStartKey()) + fmt.Sprintf("/rob/%02d", i)
			if len(d.GetStartKey()) == 0 {
				k = fmt.Sprintf("%c/rob/%02d", '0', i) // below every split key of the tests
			}
			if bytes.Compare([]byte(k), d.GetStartKey()) < 0 || (len(d.GetEndKey()) > 0 && bytes.Compare([]byte(k), d.GetEndKey()) >= 0) {
				return nil, fmt.Errorf("key %q falls outside range %d [%q, %q)", k, d.GetRangeId(), d.GetStartKey(), d.GetEndKey())
			}
			keys = append(keys, k)
		}
	}
	return keys, nil
}

// traffic runs workers that issue random operations on keys and record
// them in a History until stopped.
type traffic struct {
	h         *History
	clients   []*clientv3.Client
	keys      []string
	opTimeout time.Duration
	seed      uint64

	acked, unknown, failed atomic.Int64
}

// run starts the workers and returns a function that stops them and waits.
func (tr *traffic) run(workers int) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tr.worker(ctx, w)
		}()
	}
	return func() {
		cancel()
		wg.Wait()
	}
}

// lastRead is what a worker last saw of a key, for its compare-and-swaps.
type lastRead struct {
	found  bool
	value  string
	modRev int64
}

func (tr *traffic) worker(ctx context.Context, w int) {
	rng := rand.New(rand.NewPCG(tr.seed, uint64(w)))
	cli := tr.clients[w%len(tr.clients)]
	stream := tr.h.NewStream()
	seen := map[string]lastRead{}
	for seq := 0; ctx.Err() == nil; seq++ {
		key := tr.keys[rng.IntN(len(tr.keys))]
		in := Input{Key: key}
		switch p := rng.IntN(100); {
		case p < 40:
			in.Kind = OpGet
		case p < 65:
			in.Kind = OpPut
		case p < 75:
			in.Kind = OpDelete
		case p < 88:
			in.Kind = OpCASRev
			if r := seen[key]; r.found {
				in.ExpectRev = r.modRev
			}
		default:
			in.Kind = OpCASValue
			in.ExpectValue = seen[key].value
		}
		if in.Kind == OpPut || in.Kind == OpCASRev || in.Kind == OpCASValue {
			in.Value = fmt.Sprintf("w%d-%d", w, seq)
		}
		// The operation's own timeout, not ctx: stopping the traffic must
		// not turn operations in flight into ambiguous ones.
		opCtx, cancel := context.WithTimeout(context.Background(), tr.opTimeout)
		call := tr.h.Now()
		out, err := do(opCtx, cli, in)
		cancel()
		switch {
		case err == nil:
			tr.h.Add(stream, call, in, out)
			tr.acked.Add(1)
			if in.Kind == OpGet || (in.Kind != OpPut && in.Kind != OpDelete && !out.Succeeded) {
				seen[key] = lastRead{found: out.Found, value: out.Value, modRev: out.ModRev}
			}
		case in.Kind == OpGet || definitelyFailed(err):
			// A read has no effect; a refused write took none.
			tr.failed.Add(1)
		default:
			tr.h.Add(stream, call, in, Output{Unknown: true})
			tr.unknown.Add(1)
			stream = tr.h.NewStream()
		}
	}
}

// definitelyFailed reports errors after which the operation certainly did
// not take effect: the request was refused as invalid. Every other error
// (timeouts, unavailable, leader changes) is ambiguous.
func definitelyFailed(err error) bool {
	switch status.Code(errors.Unwrap(err)) {
	case codes.InvalidArgument, codes.FailedPrecondition, codes.OutOfRange:
		return true
	}
	switch status.Code(err) {
	case codes.InvalidArgument, codes.FailedPrecondition, codes.OutOfRange:
		return true
	}
	return false
}

// do runs one operation.
func do(ctx context.Context, cli *clientv3.Client, in Input) (Output, error) {
	switch in.Kind {
	case OpGet:
		resp, err := cli.Get(ctx, in.Key)
		if err != nil {
			return Output{}, err
		}
		out := Output{Rev: resp.Header.GetRevision()}
		if len(resp.Kvs) > 0 {
			kv := resp.Kvs[0]
			out.Found, out.Value, out.ModRev, out.CreateRev, out.Version, out.Lease = true, string(kv.Value), kv.ModRevision, kv.CreateRevision, kv.Version, kv.Lease
		}
		return out, nil
	case OpPut:
		resp, err := cli.Put(ctx, in.Key, in.Value)
		if err != nil {
			return Output{}, err
		}
		return Output{Rev: resp.Header.GetRevision()}, nil
	case OpDelete:
		resp, err := cli.Delete(ctx, in.Key)
		if err != nil {
			return Output{}, err
		}
		return Output{Rev: resp.Header.GetRevision(), Deleted: resp.Deleted}, nil
	case OpCASRev, OpCASValue:
		cmp := clientv3.Compare(clientv3.ModRevision(in.Key), "=", in.ExpectRev)
		if in.Kind == OpCASValue {
			cmp = clientv3.Compare(clientv3.Value(in.Key), "=", in.ExpectValue)
		}
		resp, err := cli.Txn(ctx).If(cmp).Then(clientv3.OpPut(in.Key, in.Value)).Else(clientv3.OpGet(in.Key)).Commit()
		if err != nil {
			return Output{}, err
		}
		out := Output{Rev: resp.Header.GetRevision(), Succeeded: resp.Succeeded}
		if !resp.Succeeded {
			if len(resp.Responses) != 1 || resp.Responses[0].GetResponseRange() == nil {
				return Output{}, fmt.Errorf("txn else branch: %d responses, want one range response", len(resp.Responses))
			}
			if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) > 0 {
				kv := kvs[0]
				out.Found, out.Value, out.ModRev, out.CreateRev, out.Version, out.Lease = true, string(kv.Value), kv.ModRevision, kv.CreateRevision, kv.Version, kv.Lease
			}
		}
		return out, nil
	}
	return Output{}, fmt.Errorf("unknown operation %q", in.Kind)
}
