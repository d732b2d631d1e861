package router

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc"

	"github.com/tesseradb/tessera/engine"
	"github.com/tesseradb/tessera/internal/backoff"
	"github.com/tesseradb/tessera/placement"
	"github.com/tesseradb/tessera/proto/tesserapb"
	"github.com/tesseradb/tessera/raftgroup"
	"github.com/tesseradb/tessera/shard"
)

// Lease serves etcd's Lease service.
//
// Leases live in the meta group (placement/lease.go) and every operation on
// them runs on its leader: on the client port a node that does not lead the
// meta group forwards the request to the meta nodes' peer ports, where a
// Lease that never forwards answers it (as Maintenance does with alarms).
//
// Revoking a lease, by a client or by expiry, happens on the meta leader in
// three steps: the lease is marked as being revoked (keep-alives and
// lookups fail from then on), every data range applies a revocation command
// (deleting the lease's keys there and refusing the lease from then on),
// and the meta group removes the lease. A Put naming a lease carries the
// incarnation the router looked up; the range checks it at apply against
// the revocations it applied, which is what makes a put racing a revoke
// either fail or be deleted (shard/replica_lease.go).
type Lease struct {
	pb.UnimplementedLeaseServer
	r       *Router
	forward bool
	cfg     LeaseConfig
	m       *leaseMetrics
	log     *slog.Logger

	stop chan struct{}
	wg   sync.WaitGroup
	once sync.Once
}

var _ pb.LeaseServer = (*Lease)(nil)

// LeaseConfig configures a node's Lease service.
type LeaseConfig struct {
	// ExpiryInterval is how often the meta leader looks for expired leases
	// (100 ms: the expiry lag is at most this plus the revocation).
	ExpiryInterval time.Duration
	// RevokeBatch is the most leases one revocation command carries
	// (1,000: about 12 KB; a batch costs one scan of each range).
	RevokeBatch int
	// RevokeConcurrency is how many batches of expired leases are revoked
	// at once (8: a batch starts whenever one of 8 finishes).
	RevokeConcurrency int
	// CheckpointInterval is how often the meta leader records remaining
	// TTLs (etcd's --experimental-lease-checkpoint-interval, 5 min).
	CheckpointInterval time.Duration
	// RevokeTimeout bounds one revocation of expired leases (10 s).
	RevokeTimeout time.Duration
	// Registerer receives the lease metrics (nil: none).
	Registerer prometheus.Registerer
}

// DefaultLeaseConfig returns the defaults above.
func DefaultLeaseConfig() LeaseConfig {
	return LeaseConfig{ExpiryInterval: 100 * time.Millisecond, RevokeBatch: 1000, RevokeConcurrency: 8, CheckpointInterval: 5 * time.Minute, RevokeTimeout: 10 * time.Second}
}

// Validate checks the configuration.
func (c LeaseConfig) Validate() error {
	switch {
	case c.ExpiryInterval <= 0:
		return fmt.Errorf("router: lease ExpiryInterval %v must be positive", c.ExpiryInterval)
	case c.RevokeBatch <= 0:
		return fmt.Errorf("router: lease RevokeBatch %d must be positive", c.RevokeBatch)
	case c.RevokeConcurrency <= 0:
		return fmt.Errorf("router: lease RevokeConcurrency %d must be positive", c.RevokeConcurrency)
	case c.CheckpointInterval <= 0:
		return fmt.Errorf("router: lease CheckpointInterval %v must be positive", c.CheckpointInterval)
	case c.RevokeTimeout <= 0:
		return fmt.Errorf("router: lease RevokeTimeout %v must be positive", c.RevokeTimeout)
	}
	return nil
}

// NewLease returns the Lease service of a router: forward for the client
// port (it also runs the expiry loop while this node leads the meta group),
// not for the peer port. Close stops it.
func NewLease(r *Router, forward bool, cfg LeaseConfig) (*Lease, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	l := &Lease{r: r, forward: forward, cfg: cfg, log: r.log, stop: make(chan struct{})}
	l.m = newLeaseMetrics(cfg.Registerer)
	if forward && r.cfg.Meta != nil {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			l.expiryLoop()
		}()
	}
	return l, nil
}

// PeerService returns the Lease service for the peer port: it answers
// forwarded requests (never forwards) and shares l's metrics.
func (l *Lease) PeerService() *Lease {
	return &Lease{r: l.r, cfg: l.cfg, m: l.m, log: l.log, stop: make(chan struct{})}
}

// Close stops the expiry loop.
func (l *Lease) Close() {
	l.once.Do(func() { close(l.stop) })
	l.wg.Wait()
}

// metaLeads reports whether this node's meta replica leads.
func (l *Lease) metaLeads() bool {
	m := l.r.cfg.Meta
	return m != nil && m.Leader() == l.r.nodes.Self()
}

// local turns a meta error into what the peer port answers: a follower says
// "not leader" so that the forwarding node tries another.
func (l *Lease) notLeader(err error) bool {
	return errors.Is(err, raftgroup.ErrNotLeader)
}

// metaOrder is the order in which to try nodes for the meta leader: the
// leader known here, then every other node.
func (l *Lease) metaOrder() []raftgroup.NodeID {
	var order []raftgroup.NodeID
	if meta := l.r.cfg.Meta; meta != nil && meta.Leader() != 0 && meta.Leader() != l.r.nodes.Self() {
		order = append(order, meta.Leader())
	}
	for _, n := range l.r.nodes.List() {
		if id := raftgroup.NodeID(n.GetNodeId()); id != l.r.nodes.Self() && !slices.Contains(order, id) {
			order = append(order, id)
		}
	}
	return order
}

// onMeta runs fn locally when this node leads the meta group, else (client
// port only) on the peer ports of the other nodes until one answers that is
// not a follower.
func (l *Lease) onMeta(ctx context.Context, what string, local func() error, remote func(pb.LeaseClient) error) error {
	if l.r.cfg.Meta != nil && (l.metaLeads() || !l.forward) {
		err := local()
		if !l.forward || !l.notLeader(err) {
			if l.notLeader(err) {
				return rpctypes.ErrGRPCNotLeader
			}
			return err
		}
	}
	if !l.forward {
		return rpctypes.ErrGRPCNotLeader
	}
	var errs []error
	for _, id := range l.metaOrder() {
		conn, err := l.r.nodes.Conn(id)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		err = remote(pb.NewLeaseClient(conn))
		if err == nil || !isRetryableMetaErr(err) {
			return err
		}
		errs = append(errs, fmt.Errorf("node %d: %w", id, err))
		if ctx.Err() != nil {
			break
		}
	}
	if len(errs) == 0 {
		return rpctypes.ErrGRPCNoLeader
	}
	l.log.Debug("lease request found no meta leader", "what", what, "err", errors.Join(errs...))
	return rpctypes.ErrGRPCNoLeader
}

// isRetryableMetaErr: a follower or an unreachable node (try the next).
func isRetryableMetaErr(err error) bool {
	return errors.Is(err, rpctypes.ErrGRPCNotLeader) || err.Error() == rpctypes.ErrGRPCNotLeader.Error() || isTransportError(err)
}

// LeaseGrant implements etcd's Lease.LeaseGrant.
func (l *Lease) LeaseGrant(ctx context.Context, req *pb.LeaseGrantRequest) (*pb.LeaseGrantResponse, error) {
	if req.GetTTL() > placement.MaxLeaseTTL {
		return nil, rpctypes.ErrGRPCLeaseTTLTooLarge
	}
	var resp *pb.LeaseGrantResponse
	err := l.onMeta(ctx, "grant", func() error {
		rec, err := l.r.cfg.Meta.GrantLease(ctx, req.GetID(), req.GetTTL())
		if err != nil {
			return err
		}
		l.m.granted.Inc()
		resp = &pb.LeaseGrantResponse{Header: l.r.header(0), ID: rec.GetId(), TTL: rec.GetTtl()}
		return nil
	}, func(c pb.LeaseClient) (err error) {
		resp, err = c.LeaseGrant(ctx, req)
		return err
	})
	if err != nil {
		return nil, toGRPCError(err)
	}
	resp.Header = l.r.header(0)
	return resp, nil
}

// LeaseRevoke implements etcd's Lease.LeaseRevoke: once it returns, no key
// attached to the lease is readable on any range.
func (l *Lease) LeaseRevoke(ctx context.Context, req *pb.LeaseRevokeRequest) (*pb.LeaseRevokeResponse, error) {
	err := l.onMeta(ctx, "revoke", func() error {
		refs, err := l.r.cfg.Meta.StartRevoke([]int64{req.GetID()})
		if err != nil {
			return err
		}
		if len(refs) == 0 {
			// A negative answer only from the current leader
			// (placement/lease_confirm.go).
			if err := l.r.cfg.Meta.ConfirmLeader(ctx); err != nil {
				return err
			}
			return rpctypes.ErrGRPCLeaseNotFound
		}
		if _, err := l.revoke(ctx, refs); err != nil {
			return err
		}
		l.m.revoked.Inc()
		return nil
	}, func(c pb.LeaseClient) error {
		_, err := c.LeaseRevoke(ctx, req)
		return err
	})
	if err != nil {
		return nil, toGRPCError(err)
	}
	return &pb.LeaseRevokeResponse{Header: l.r.header(0)}, nil
}

// revoke runs a revocation of leases marked by StartRevoke or TakeExpired:
// every range deletes their keys, then the meta group removes them. On
// failure the mark is cleared and the leases live on. It returns the number
// of keys deleted.
func (l *Lease) revoke(ctx context.Context, refs []*tesserapb.LeaseRef) (int64, error) {
	// A deposed meta leader that does not know it yet (a SIGSTOP, a
	// partition) must not delete keys: its deadlines and its leases may be
	// stale (an expiry it decides may be a lease the new leader keeps
	// alive). Confirm the leadership after the leases were marked and
	// before any range deletes anything (placement/lease_confirm.go).
	if err := l.r.cfg.Meta.ConfirmLeader(ctx); err != nil {
		l.r.cfg.Meta.AbortRevoke(refs)
		return 0, err
	}
	ranges, err := l.r.cache.CoverAll(ctx)
	if err != nil {
		l.r.cfg.Meta.AbortRevoke(refs)
		return 0, fmt.Errorf("router: revoke %d leases: %w", len(refs), err)
	}
	// A range that split or merged under the revocation revokes through
	// the ranges now holding its span (resplit.go): the revocation is
	// idempotent per range.
	build := func(d *tesserapb.RangeDescriptor) (call, bool) {
		return call{desc: d, write: true, leases: shard.LeaseRefs{Revoke: refs}}, true
	}
	parts, _, err := l.r.fanOut(ctx, ranges, nil, nil, build)
	if err != nil {
		l.r.cfg.Meta.AbortRevoke(refs)
		return 0, fmt.Errorf("router: revoke %d leases: %w", len(refs), err)
	}
	deleted := make([]int64, len(parts))
	for i, p := range parts {
		deleted[i] = p.resp.GetResponseDeleteRange().GetDeleted()
	}
	l.log.Debug("leases revoked on every range", "leases", len(refs), "ranges", len(ranges))
	if err := l.r.cfg.Meta.FinishRevoke(ctx, refs); err != nil {
		l.r.cfg.Meta.AbortRevoke(refs)
		return 0, err
	}
	var n int64
	for _, d := range deleted {
		n += d
	}
	return n, nil
}

// LeaseKeepAlive implements etcd's Lease.LeaseKeepAlive: every request
// renews one lease and is answered with its TTL (0 when it does not exist
// or expired). A node that does not lead the meta group relays the stream
// to one that does.
func (l *Lease) LeaseKeepAlive(stream pb.Lease_LeaseKeepAliveServer) error {
	ctx := stream.Context()
	fw := &keepAliveForward{l: l, ctx: ctx}
	defer fw.close()
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		resp, err := l.keepAliveOne(ctx, fw, req.GetID())
		if err != nil {
			return toGRPCError(err)
		}
		resp.Header = l.r.header(0)
		if err := stream.Send(resp); err != nil {
			return err
		}
	}
}

func (l *Lease) keepAliveOne(ctx context.Context, fw *keepAliveForward, id int64) (*pb.LeaseKeepAliveResponse, error) {
	if l.r.cfg.Meta != nil && (l.metaLeads() || !l.forward) {
		ttl, err := l.r.cfg.Meta.KeepAliveLease(ctx, id)
		if errors.Is(err, rpctypes.ErrGRPCLeaseNotFound) {
			// A negative answer only from the current leader
			// (placement/lease_confirm.go).
			if cerr := l.r.cfg.Meta.ConfirmLeader(ctx); cerr != nil {
				err = cerr
			}
		}
		switch {
		case err == nil:
			l.m.keepAlives.Inc()
			return &pb.LeaseKeepAliveResponse{ID: id, TTL: ttl}, nil
		case errors.Is(err, rpctypes.ErrGRPCLeaseNotFound):
			return &pb.LeaseKeepAliveResponse{ID: id, TTL: 0}, nil
		case !l.forward && l.notLeader(err):
			return nil, rpctypes.ErrGRPCNotLeader
		case !l.notLeader(err):
			return nil, err
		}
	}
	if !l.forward {
		return nil, rpctypes.ErrGRPCNotLeader
	}
	return fw.send(id)
}

// keepAliveForward relays one client stream's keep-alives over one stream
// to the meta leader's peer port, moving to another node when it fails.
type keepAliveForward struct {
	l      *Lease
	ctx    context.Context
	cancel context.CancelFunc
	s      pb.Lease_LeaseKeepAliveClient
}

func (f *keepAliveForward) close() {
	if f.cancel != nil {
		f.cancel()
		f.cancel, f.s = nil, nil
	}
}

func (f *keepAliveForward) send(id int64) (*pb.LeaseKeepAliveResponse, error) {
	if f.s != nil {
		if resp, err := f.roundTrip(f.s, id); err == nil {
			return resp, nil
		}
		f.close()
	}
	for _, node := range f.l.metaOrder() {
		conn, err := f.l.r.nodes.Conn(node)
		if err != nil {
			continue
		}
		ctx, cancel := context.WithCancel(f.ctx)
		s, err := pb.NewLeaseClient(conn).LeaseKeepAlive(ctx, grpc.WaitForReady(false))
		if err != nil {
			cancel()
			continue
		}
		resp, err := f.roundTrip(s, id)
		if err != nil {
			cancel()
			if f.ctx.Err() != nil {
				return nil, f.ctx.Err()
			}
			continue
		}
		f.s, f.cancel = s, cancel
		return resp, nil
	}
	return nil, rpctypes.ErrGRPCNoLeader
}

func (f *keepAliveForward) roundTrip(s pb.Lease_LeaseKeepAliveClient, id int64) (*pb.LeaseKeepAliveResponse, error) {
	if err := s.Send(&pb.LeaseKeepAliveRequest{ID: id}); err != nil {
		return nil, err
	}
	return s.Recv()
}

// LeaseTimeToLive implements etcd's Lease.LeaseTimeToLive: a lease that does
// not exist answers TTL -1, as etcd does; keys lists the lease's keys on
// every range.
func (l *Lease) LeaseTimeToLive(ctx context.Context, req *pb.LeaseTimeToLiveRequest) (*pb.LeaseTimeToLiveResponse, error) {
	var resp *pb.LeaseTimeToLiveResponse
	err := l.onMeta(ctx, "timetolive", func() error {
		st, ok, err := l.r.cfg.Meta.LeaseTimeToLive(req.GetID())
		if err != nil {
			return err
		}
		if !ok || st.Remaining < 0 {
			// A negative answer only from the current leader
			// (placement/lease_confirm.go).
			if err := l.r.cfg.Meta.ConfirmLeader(ctx); err != nil {
				return err
			}
			resp = &pb.LeaseTimeToLiveResponse{ID: req.GetID(), TTL: -1}
			return nil
		}
		resp = &pb.LeaseTimeToLiveResponse{ID: req.GetID(), TTL: st.Remaining, GrantedTTL: st.TTL}
		if req.GetKeys() {
			resp.Keys, err = l.keysOf(ctx, req.GetID())
		}
		return err
	}, func(c pb.LeaseClient) (err error) {
		resp, err = c.LeaseTimeToLive(ctx, req)
		return err
	})
	if err != nil {
		return nil, toGRPCError(err)
	}
	resp.Header = l.r.header(0)
	return resp, nil
}

// keysOf lists the keys attached to a lease: a linearizable read, at one
// fresh timestamp, of every range's lease index (shard/lease_index.go), so
// the cost follows the lease's keys, not the keyspace. The keys come in key
// order.
func (l *Lease) keysOf(ctx context.Context, id int64) ([][]byte, error) {
	for attempt := 0; ; attempt++ {
		keys, err := l.keysOnce(ctx, id)
		if !retryCompactedRead(err, attempt, true) {
			if err != nil {
				return nil, fmt.Errorf("router: keys of lease %d: %w", id, err)
			}
			return keys, nil
		}
	}
}

func (l *Lease) keysOnce(ctx context.Context, id int64) ([][]byte, error) {
	r := l.r
	ranges, err := r.cache.Cover(ctx, []byte{0}, []byte{0})
	if err != nil {
		return nil, err
	}
	if err := r.checkLeader(ctx, ranges); err != nil {
		return nil, err
	}
	readRev, err := r.now(ctx)
	if err != nil {
		return nil, err
	}
	// One revision for every range, also for the parts of a range that
	// split or merged under the read (resplit.go).
	build := func(d *tesserapb.RangeDescriptor) (call, bool) {
		return call{desc: d, readRev: readRev, leaseKeys: id}, true
	}
	parts, _, err := r.fanOut(ctx, ranges, []byte{0}, nil, build)
	if err != nil {
		return nil, err
	}
	var keys [][]byte
	for _, p := range parts {
		for _, kv := range p.resp.GetResponseRange().GetKvs() {
			keys = append(keys, kv.GetKey())
		}
	}
	return keys, nil
}

// leaseKeysTimeout bounds the lookup of a lease's keys for a permission
// check (router.LeaseKeys has no context of its own).
const leaseKeysTimeout = 10 * time.Second

// KeysOf returns the keys attached to a lease: the hook the auth checks use
// for Revoke and KeepAlive, which need write permission on every key of the
// lease, as in etcd (router.LeaseKeys).
func (l *Lease) KeysOf(id int64) ([][]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), leaseKeysTimeout)
	defer cancel()
	return l.keysOf(ctx, id)
}

// LeaseLeases implements etcd's Lease.LeaseLeases.
func (l *Lease) LeaseLeases(ctx context.Context, req *pb.LeaseLeasesRequest) (*pb.LeaseLeasesResponse, error) {
	var resp *pb.LeaseLeasesResponse
	err := l.onMeta(ctx, "leases", func() error {
		ids, err := l.r.cfg.Meta.LeaseIDs()
		if err != nil {
			return err
		}
		resp = &pb.LeaseLeasesResponse{Leases: make([]*pb.LeaseStatus, 0, len(ids))}
		for _, id := range ids {
			resp.Leases = append(resp.Leases, &pb.LeaseStatus{ID: id})
		}
		return nil
	}, func(c pb.LeaseClient) (err error) {
		resp, err = c.LeaseLeases(ctx, req)
		return err
	})
	if err != nil {
		return nil, toGRPCError(err)
	}
	resp.Header = l.r.header(0)
	return resp, nil
}

// expiryLoop revokes expired leases while this node leads the meta group,
// and checkpoints remaining TTLs.
func (l *Lease) expiryLoop() {
	tick := time.NewTicker(l.cfg.ExpiryInterval)
	defer tick.Stop()
	lastCheckpoint := time.Now()
	for {
		select {
		case <-l.stop:
			return
		case <-tick.C:
		}
		meta := l.r.cfg.Meta
		// Batches of RevokeBatch leases, earliest deadline first, up to
		// RevokeConcurrency in flight (their raft rounds overlap): a
		// batch starts as soon as one finishes, not when a whole wave
		// did. After a failure the rest waits for the next tick (the
		// failed leases are back in the meta leader's queue).
		var wg sync.WaitGroup
		var failed atomic.Bool
		slots := make(chan struct{}, l.cfg.RevokeConcurrency)
	take:
		for !failed.Load() {
			select {
			case slots <- struct{}{}:
			case <-l.stop:
				break take
			}
			batch := meta.TakeExpired(time.Now(), l.cfg.RevokeBatch)
			if len(batch) == 0 {
				<-slots
				break
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-slots }()
				if !l.revokeExpired(batch) {
					failed.Store(true)
				}
			}()
		}
		wg.Wait()
		select {
		case <-l.stop:
			return
		default:
		}
		if time.Since(lastCheckpoint) >= l.cfg.CheckpointInterval && l.metaLeads() {
			lastCheckpoint = time.Now()
			ctx, cancel := context.WithTimeout(context.Background(), l.cfg.RevokeTimeout)
			if err := meta.CheckpointLeases(ctx, l.cfg.RevokeBatch); err != nil {
				l.log.Warn("checkpoint leases", "err", err)
			}
			cancel()
		}
	}
}

// revokeExpired revokes one batch of expired leases and records the
// metrics; false when it failed (the leases live on and are tried again).
func (l *Lease) revokeExpired(expired []placement.ExpiredLease) bool {
	refs := make([]*tesserapb.LeaseRef, len(expired))
	for i, e := range expired {
		refs[i] = e.Ref
	}
	ctx, cancel := context.WithTimeout(context.Background(), l.cfg.RevokeTimeout)
	defer cancel()
	began := time.Now()
	n, err := l.revoke(ctx, refs)
	l.log.Debug("revoked expired leases", "leases", len(refs), "keys", n, "took", time.Since(began), "err", err)
	if err != nil {
		l.log.Warn("revoke expired leases", "leases", len(refs), "err", err)
		return false
	}
	now := time.Now()
	for _, e := range expired {
		l.m.expiryLag.Observe(now.Sub(e.Expiry).Seconds())
	}
	l.m.expired.Add(float64(len(expired)))
	l.m.keysExpired.Add(float64(n))
	return true
}

// lookupLeases finds the incarnations of the leases ids on the meta leader
// (leases that do not exist are left out; the range refuses them).
func (r *Router) lookupLeases(ctx context.Context, ids []int64) ([]*tesserapb.LeaseRef, error) {
	// The meta group may be electing a leader (a node just stopped): wait,
	// as a write's timestamp fetch does, up to leaseLookupWait.
	wctx, cancel := context.WithTimeout(ctx, leaseLookupWait)
	defer cancel()
	bo := backoff.New(backoff.Config{Min: 10 * time.Millisecond, Max: 200 * time.Millisecond})
	for {
		refs, err := r.lookupLeasesOnce(wctx, ids)
		if !errors.Is(err, rpctypes.ErrGRPCNoLeader) {
			return refs, err
		}
		select {
		case <-wctx.Done():
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, err
		case <-time.After(bo.Next()):
		}
	}
}

// leaseLookupWait bounds how long a write naming a lease waits for the meta
// group to have a leader (an election takes about a second by default).
const leaseLookupWait = 5 * time.Second

func (r *Router) lookupLeasesOnce(ctx context.Context, ids []int64) ([]*tesserapb.LeaseRef, error) {
	if meta := r.cfg.Meta; meta != nil && meta.Leader() == r.nodes.Self() {
		refs, err := meta.LookupLeases(ids)
		if err == nil && len(refs) < len(ids) {
			// Some lease not found: only the current leader may say so
			// (placement/lease_confirm.go).
			err = meta.ConfirmLeader(ctx)
		}
		if err == nil || !errors.Is(err, raftgroup.ErrNotLeader) {
			return refs, err
		}
	}
	var order []raftgroup.NodeID
	if meta := r.cfg.Meta; meta != nil && meta.Leader() != 0 && meta.Leader() != r.nodes.Self() {
		order = append(order, meta.Leader())
	}
	for _, n := range r.nodes.List() {
		if id := raftgroup.NodeID(n.GetNodeId()); id != r.nodes.Self() && !slices.Contains(order, id) {
			order = append(order, id)
		}
	}
	for _, id := range order {
		conn, err := r.nodes.Conn(id)
		if err != nil {
			continue
		}
		resp, err := tesserapb.NewInternalClient(conn).LeaseLookup(ctx, &tesserapb.LeaseLookupRequest{Ids: ids})
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			continue
		}
		if resp.GetRoutingError() != nil {
			continue
		}
		return resp.GetLeases(), nil
	}
	return nil, rpctypes.ErrGRPCNoLeader
}

// LeaseLookup implements the Internal service's lease lookup on the meta
// leader.
func (s *Internal) LeaseLookup(ctx context.Context, req *tesserapb.LeaseLookupRequest) (*tesserapb.LeaseLookupResponse, error) {
	meta := s.r.cfg.Meta
	if meta == nil {
		return &tesserapb.LeaseLookupResponse{RoutingError: &tesserapb.RoutingError{Code: tesserapb.RoutingError_RANGE_NOT_FOUND, Message: "no meta replica"}}, nil
	}
	refs, err := meta.LookupLeases(req.GetIds())
	if err == nil && len(refs) < len(req.GetIds()) {
		// Some lease not found: only the current leader may say so
		// (placement/lease_confirm.go).
		err = meta.ConfirmLeader(ctx)
	}
	if err != nil {
		return &tesserapb.LeaseLookupResponse{RoutingError: &tesserapb.RoutingError{Code: tesserapb.RoutingError_NOT_LEADER, LeaderNode: uint64(meta.Leader())}}, nil
	}
	return &tesserapb.LeaseLookupResponse{Leases: refs}, nil
}

// leasesOf lists the leases the puts of an op name (nested txns too).
func leasesOf(op *pb.RequestOp, out []int64) []int64 {
	switch o := op.GetRequest().(type) {
	case *pb.RequestOp_RequestPut:
		if id := o.RequestPut.GetLease(); id != 0 && !slices.Contains(out, id) {
			out = append(out, id)
		}
	case *pb.RequestOp_RequestTxn:
		for _, ops := range [][]*pb.RequestOp{o.RequestTxn.GetSuccess(), o.RequestTxn.GetFailure()} {
			for _, sub := range ops {
				out = leasesOf(sub, out)
			}
		}
	}
	return out
}

// leaseLookupAttempts bounds the lookups of one write whose range found
// them expired (shard.ErrLeaseLookupExpired: the write waited longer than
// placement.LeaseConfig.LookupValidity between lookup and revision).
const leaseLookupAttempts = 3

// executeLeased runs a write, looking up the leases its puts name first;
// a write refused because its lookup expired wrote nothing and is tried
// again with a fresh one.
func (r *Router) executeLeased(ctx context.Context, c call, what string, spans [][2][]byte) (*pb.ResponseOp, engine.Revision, error) {
	for attempt := 1; ; attempt++ {
		if err := r.attachLeases(ctx, &c); err != nil {
			return nil, 0, err
		}
		// A range that split or merged under the write: resplit.go.
		out, rev, err := r.executeSingle(ctx, &c, what, spans)
		if len(c.leases.Attach) == 0 || !shard.IsLeaseLookupExpired(err) || attempt == leaseLookupAttempts {
			return out, rev, err
		}
		r.log.Debug("lease lookup expired before the write applied; looking up again", "attempt", attempt)
	}
}

// attachLeases sets the lease incarnations of a write whose puts name
// leases.
func (r *Router) attachLeases(ctx context.Context, c *call) error {
	ids := leasesOf(c.op, nil)
	if len(ids) == 0 {
		return nil
	}
	refs, err := r.lookupLeases(ctx, ids)
	if err != nil {
		return fmt.Errorf("router: look up leases: %w", err)
	}
	c.leases.Attach = refs
	return nil
}

type leaseMetrics struct {
	granted, revoked, expired, keysExpired, keepAlives prometheus.Counter
	expiryLag                                          prometheus.Histogram
}

func newLeaseMetrics(reg prometheus.Registerer) *leaseMetrics {
	m := &leaseMetrics{
		granted:     prometheus.NewCounter(prometheus.CounterOpts{Name: "tessera_lease_granted_total", Help: "Leases granted by this node as meta leader."}),
		revoked:     prometheus.NewCounter(prometheus.CounterOpts{Name: "tessera_lease_revoked_total", Help: "Leases revoked by clients through this node as meta leader."}),
		expired:     prometheus.NewCounter(prometheus.CounterOpts{Name: "tessera_lease_expired_total", Help: "Leases revoked by expiry on this node as meta leader."}),
		keysExpired: prometheus.NewCounter(prometheus.CounterOpts{Name: "tessera_lease_expired_keys_total", Help: "Keys deleted because their lease expired."}),
		keepAlives:  prometheus.NewCounter(prometheus.CounterOpts{Name: "tessera_lease_keepalives_total", Help: "Keep-alives served by this node as meta leader."}),
		expiryLag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "tessera_lease_expiry_lag_seconds", Help: "From a lease's deadline to its keys deleted on every range.",
			Buckets: prometheus.ExponentialBuckets(0.01, 2, 12),
		}),
	}
	if reg != nil {
		reg.MustRegister(m.granted, m.revoked, m.expired, m.keysExpired, m.keepAlives, m.expiryLag)
	}
	return m
}
