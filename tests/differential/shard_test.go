package differential

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tesseradb/tessera/engine"
	"github.com/tesseradb/tessera/shard"
)

// TestDifferentialShardVsEtcd compares etcd with a minimal in-process KV
// server built directly on the shard package's KV functions (no Raft, no
// router): one engine, TSO-like revisions with gaps, every Range fanned out
// over several key spans with ShardRangeRequest and merged with
// MergeRangeResponses. It checks the shard's etcd semantics end to end until
// the real server exists.
func TestDifferentialShardVsEtcd(t *testing.T) {
	bin := etcdBinary()
	if _, err := os.Stat(bin); err != nil {
		t.Skipf("no etcd binary at %s (set TESSERA_ETCD): %v", bin, err)
	}
	seeds, nOps := seedsAndOps(1001)
	var splits []string
	for _, seed := range seeds {
		p := fmt.Sprintf("diff/%d/", seed)
		splits = append(splits, p+"a/1", p+"b", p+"c\x00", p+"e")
	}
	etcd := startEtcd(t, bin, "e")
	tessera := startShardServer(t, splits)
	for _, seed := range seeds {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			Run(t, seed, etcd, tessera, nOps)
		})
	}
}

// shardServer serves etcd's KV and Lease APIs from the shard functions.
type shardServer struct {
	pb.UnimplementedKVServer
	e      *engine.Engine
	limits shard.Limits
	// spans are the boundaries Range fans out over.
	spans [][]byte

	mu struct {
		sync.Mutex
		last       engine.Revision // last revision handed out
		compactRev engine.Revision
		leases     map[int64]bool
		rng        *rand.Rand
	}
}

type shardLeases struct {
	pb.UnimplementedLeaseServer
	s *shardServer
}

func startShardServer(t *testing.T, splits []string) *clientv3.Client {
	t.Helper()
	cfg := engine.DefaultConfig(t.TempDir())
	cfg.Registerer = prometheus.NewRegistry()
	e, err := engine.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s := &shardServer{e: e, limits: shard.DefaultLimits()}
	s.mu.last = 1763740000000 << 18
	s.mu.leases = map[int64]bool{}
	s.mu.rng = rand.New(rand.NewPCG(1, 1))
	for _, sp := range splits {
		s.spans = append(s.spans, []byte(sp))
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	pb.RegisterKVServer(srv, s)
	pb.RegisterLeaseServer(srv, &shardLeases{s: s})
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{l.Addr().String()}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cli.Close()
		srv.Stop()
		<-served
		if err := e.Close(); err != nil {
			t.Error(err)
		}
	})
	return cli
}

// nextLocked hands out a TSO-like revision: increasing, with gaps.
func (s *shardServer) nextLocked() engine.Revision {
	s.mu.last += 1 + engine.Revision(s.mu.rng.IntN(1000))
	return s.mu.last
}

func (s *shardServer) env() shard.TxnEnv {
	return shard.TxnEnv{CompactRev: s.mu.compactRev, LeaseExists: func(id int64) bool { return s.mu.leases[id] }}
}

func (s *shardServer) Range(_ context.Context, req *pb.RangeRequest) (*pb.RangeResponse, error) {
	if err := shard.ValidateRange(req); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	rev := s.nextLocked()
	if err := shard.CheckReadRevision(engine.Revision(req.Revision), rev, s.mu.compactRev); err != nil {
		return nil, err
	}
	snap := s.e.NewSnapshot()
	defer snap.Close()
	var parts []*pb.RangeResponse
	bounds := append([][]byte{nil}, s.spans...)
	for i, start := range bounds {
		var end []byte
		if i+1 < len(bounds) {
			end = bounds[i+1]
		}
		sr := shard.ShardRangeRequest(req, start, end)
		if sr == nil {
			continue
		}
		p, err := shard.Range(snap, sr, rev)
		if err != nil {
			return nil, err
		}
		parts = append(parts, p)
	}
	resp := shard.MergeRangeResponses(req, parts)
	resp.Header.Revision = int64(rev)
	return resp, nil
}

// write applies fn at a new revision in a batch and commits it.
func (s *shardServer) write(fn func(b *engine.Batch, rev engine.Revision) error) (engine.Revision, error) {
	rev := s.nextLocked()
	b := s.e.NewBatch()
	defer b.Close()
	if err := fn(b, rev); err != nil {
		return 0, err
	}
	if err := b.Commit(false); err != nil {
		return 0, err
	}
	return rev, nil
}

func (s *shardServer) Put(_ context.Context, req *pb.PutRequest) (*pb.PutResponse, error) {
	if err := shard.ValidatePut(req, s.limits); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if req.Lease != 0 && !s.mu.leases[req.Lease] {
		return nil, rpctypes.ErrGRPCLeaseNotFound
	}
	var resp *pb.PutResponse
	rev, err := s.write(func(b *engine.Batch, rev engine.Revision) (err error) {
		resp, err = shard.ApplyPut(b, req, rev)
		return err
	})
	if err != nil {
		return nil, err
	}
	resp.Header.Revision = int64(rev)
	return resp, nil
}

func (s *shardServer) DeleteRange(_ context.Context, req *pb.DeleteRangeRequest) (*pb.DeleteRangeResponse, error) {
	if err := shard.ValidateDeleteRange(req, s.limits); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var resp *pb.DeleteRangeResponse
	rev, err := s.write(func(b *engine.Batch, rev engine.Revision) (err error) {
		resp, err = shard.ApplyDeleteRange(b, req, rev)
		return err
	})
	if err != nil {
		return nil, err
	}
	resp.Header.Revision = int64(rev)
	return resp, nil
}

func (s *shardServer) Txn(_ context.Context, req *pb.TxnRequest) (*pb.TxnResponse, error) {
	if err := shard.ValidateTxn(req, s.limits); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if shard.IsReadOnlyTxn(req) {
		rev := s.nextLocked()
		snap := s.e.NewSnapshot()
		defer snap.Close()
		resp, err := shard.EvalReadOnlyTxnEnv(snap, req, rev, s.env())
		if err != nil {
			return nil, err
		}
		resp.Header.Revision = int64(rev)
		return resp, nil
	}
	var resp *pb.TxnResponse
	rev, err := s.write(func(b *engine.Batch, rev engine.Revision) (err error) {
		resp, err = shard.ApplyTxnEnv(b, req, rev, s.env())
		return err
	})
	if err != nil {
		return nil, err
	}
	resp.Header.Revision = int64(rev)
	return resp, nil
}

func (s *shardServer) Compact(_ context.Context, req *pb.CompactionRequest) (*pb.CompactionResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rev := s.nextLocked()
	at := engine.Revision(req.Revision)
	if err := shard.CheckCompactRevision(at, rev, s.mu.compactRev); err != nil {
		return nil, err
	}
	s.mu.compactRev = at
	if _, err := s.e.MVCCCompact(nil, nil, at, 0); err != nil {
		return nil, err
	}
	return &pb.CompactionResponse{Header: &pb.ResponseHeader{Revision: int64(rev)}}, nil
}

func (l *shardLeases) LeaseGrant(_ context.Context, req *pb.LeaseGrantRequest) (*pb.LeaseGrantResponse, error) {
	l.s.mu.Lock()
	defer l.s.mu.Unlock()
	if l.s.mu.leases[req.ID] {
		return nil, rpctypes.ErrGRPCLeaseExist
	}
	l.s.mu.leases[req.ID] = true
	return &pb.LeaseGrantResponse{Header: &pb.ResponseHeader{Revision: int64(l.s.mu.last)}, ID: req.ID, TTL: req.TTL}, nil
}

func (l *shardLeases) LeaseRevoke(_ context.Context, req *pb.LeaseRevokeRequest) (*pb.LeaseRevokeResponse, error) {
	l.s.mu.Lock()
	defer l.s.mu.Unlock()
	if !l.s.mu.leases[req.ID] {
		return nil, rpctypes.ErrGRPCLeaseNotFound
	}
	delete(l.s.mu.leases, req.ID)
	return &pb.LeaseRevokeResponse{Header: &pb.ResponseHeader{Revision: int64(l.s.mu.last)}}, nil
}
