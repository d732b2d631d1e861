package bench

import (
	"context"
	"errors"
	"fmt"
	"sync"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// leaseWorkload grants Leases leases (one per client when 0) and sends
// keep-alives for them. Each client keeps one LeaseKeepAlive stream open, as
// clientv3's own keep-alive loop does, and sends one request at a time on
// it; a request is one keep-alive answered. A stream that breaks is counted
// as the failure of its request and reopened for the next one.
type leaseWorkload struct {
	cfg    WorkloadConfig
	env    *Env
	ctx    context.Context // the streams' context, cancelled by Close
	cancel context.CancelFunc
	mu     sync.Mutex
	leases []clientv3.LeaseID // guarded by mu while Setup grants them
}

var _ Workload = (*leaseWorkload)(nil)

func (w *leaseWorkload) Name() string { return "lease-keepalive" }

func (w *leaseWorkload) Params() map[string]any {
	return map[string]any{"leases": w.count(), "lease-ttl": w.cfg.LeaseTTL}
}

func (w *leaseWorkload) count() int {
	if w.cfg.Leases > 0 || w.env == nil {
		return w.cfg.Leases
	}
	return w.env.Run.Clients
}

func (w *leaseWorkload) Setup(ctx context.Context, env *Env) error {
	w.env = env
	w.ctx, w.cancel = context.WithCancel(ctx)
	for i := range w.count() {
		rctx, cancel := context.WithTimeout(ctx, env.Run.Timeout)
		resp, err := env.Client(i).Grant(rctx, w.cfg.LeaseTTL)
		cancel()
		if err != nil {
			return fmt.Errorf("bench: grant lease %d: %w", i, err)
		}
		w.mu.Lock()
		w.leases = append(w.leases, resp.ID)
		w.mu.Unlock()
	}
	return nil
}

func (w *leaseWorkload) Worker(i int) (Worker, error) {
	cli := w.env.Client(i)
	// Client i keeps alive leases i, i+clients, i+2*clients, … in turn, or
	// shares lease i mod n when there are fewer leases than clients.
	var mine []clientv3.LeaseID
	for j := i; j < len(w.leases); j += w.env.Run.Clients {
		mine = append(mine, w.leases[j])
	}
	if len(mine) == 0 {
		mine = []clientv3.LeaseID{w.leases[i%len(w.leases)]}
	}
	var (
		stream       pb.Lease_LeaseKeepAliveClient
		cancelStream context.CancelFunc
	)
	next := 0
	fail := func(ctx context.Context, err error) error {
		cancelStream()
		stream = nil
		if ctx.Err() != nil {
			// The request's own timeout ended the stream.
			return ctx.Err()
		}
		return rpctypes.Error(err)
	}
	return WorkerFunc(func(ctx context.Context) (string, error) {
		const op = "lease-keepalive"
		if stream == nil {
			sctx, cancel := context.WithCancel(w.ctx)
			s, err := pb.NewLeaseClient(cli.ActiveConnection()).LeaseKeepAlive(sctx)
			if err != nil {
				cancel()
				return op, rpctypes.Error(err)
			}
			stream, cancelStream = s, cancel
		}
		// The stream outlives the request; end it if the request times out.
		stop := context.AfterFunc(ctx, cancelStream)
		defer stop()
		id := mine[next%len(mine)]
		next++
		if err := stream.Send(&pb.LeaseKeepAliveRequest{ID: int64(id)}); err != nil {
			return op, fail(ctx, err)
		}
		resp, err := stream.Recv()
		if err != nil {
			return op, fail(ctx, err)
		}
		if resp.TTL <= 0 {
			return op, rpctypes.ErrLeaseNotFound
		}
		return op, nil
	}), nil
}

func (w *leaseWorkload) Finish(context.Context, RunSpan, *Recorder, *Result) error { return nil }

// Close ends the streams and revokes the leases.
func (w *leaseWorkload) Close(ctx context.Context) error {
	if w.cancel != nil {
		w.cancel()
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	var errs []error
	for i, id := range w.leases {
		rctx, cancel := context.WithTimeout(ctx, w.env.Run.Timeout)
		_, err := w.env.Client(i).Revoke(rctx, id)
		cancel()
		if err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
			errs = append(errs, fmt.Errorf("bench: revoke lease %x: %w", id, err))
		}
	}
	w.leases = nil
	return errors.Join(errs...)
}
