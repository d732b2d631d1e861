package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/soheilhy/cmux"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/tesseradb/tessera/engine"
	"github.com/tesseradb/tessera/placement"
	"github.com/tesseradb/tessera/proto/tesserapb"
	"github.com/tesseradb/tessera/raftgroup"
	"github.com/tesseradb/tessera/router"
	"github.com/tesseradb/tessera/shard"
	"github.com/tesseradb/tessera/watchhub"
)

var bootstrapKey = engine.StoreKey("bootstrap")

// Server is one running Tessera node.
type Server struct {
	cfg    Config
	log    *slog.Logger
	self   raftgroup.NodeID
	layout *tesserapb.ClusterBootstrap
	reg    *prometheus.Registry

	eng    *engine.Engine
	tso    *placement.TSOClient
	host   *raftgroup.Host
	nodes  *placement.Nodes
	meta   *placement.Meta
	store  *shard.Store // the node's replicas (store.go)
	router *router.Router
	hub    *watchhub.Hub
	// maint serves etcd's Maintenance (alarms); diskMon raises NOSPACE.
	maint   *router.Maintenance
	diskMon *diskMonitor
	obs     *observability // metrics wiring (observability.go)
	// gw is etcd's HTTP/JSON gateway on the client port (gateway.go).
	gw *gateway
	// defragProgress: tessera_defrag_* (defrag.go).
	defragProgress *defragProgress
	// loops: corruption check, auto-compaction (maintenance.go).
	loops       *maintenanceLoops
	splits      *splitLoop // size-based splits (split.go)
	autoCompact router.AutoCompaction
	// leases serves etcd's Lease service (lease.go).
	leases *router.Lease
	closer *router.Closer // closed revisions of idle ranges (closed.go)
	// members: node table, gossip, heartbeats, liveness (members.go).
	members *members

	clientLis, peerLis net.Listener
	clientConns        *trackingListener
	clientGRPC         *grpc.Server
	peerGRPC           *grpc.Server
	httpSrv            *http.Server
	clientMux          cmux.CMux
	tls                serverTLS // tls_wiring.go
	auth               *nodeAuth // auth.go

	wg        sync.WaitGroup
	closeOnce sync.Once
	life      lifecycle // start, ready and stop lines (lifecycle.go)
}

// Start starts a node. It returns once the node serves; the cluster may still
// be electing leaders.
func Start(cfg Config) (_ *Server, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	autoCompact, err := router.ParseAutoCompaction(router.AutoCompactionConfig{Mode: cfg.AutoCompactionMode, Retention: cfg.AutoCompactionRetention})
	if err != nil {
		return nil, err
	}
	if autoCompact.Writes > 0 && cfg.AutoCompactionRevisionInterval > 0 {
		autoCompact.RevisionInterval = cfg.AutoCompactionRevisionInterval
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	cfg.probeDefaults()
	nodes, self, err := cfg.initialCluster()
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, self: raftgroup.NodeID(self), log: cfg.Logger.With("node", cfg.Name), autoCompact: autoCompact}
	s.logStarting()
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	s.reg = prometheus.NewRegistry()
	s.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	s.obs = newObservability(s.reg)

	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("server: data dir: %w", err)
	}
	ecfg := engine.DefaultConfig(filepath.Join(cfg.DataDir, "engine"))
	ecfg.Registerer = s.reg
	ecfg.Logger = s.log
	if s.eng, err = engine.Open(ecfg); err != nil {
		return nil, err
	}
	if err := s.setupTLS(); err != nil {
		return nil, err
	}
	if err := s.setupAuth(); err != nil {
		return nil, err
	}
	peerDial, err := s.peerDialOption()
	if err != nil {
		return nil, err
	}
	if err := s.listen(); err != nil {
		return nil, err
	}

	if s.layout, err = s.loadOrComputeLayout(nodes); err != nil {
		return nil, err
	}
	s.self = selfInLayout(s.layout, cfg.Name, s.self) // a joined node's id (members_join.go)
	s.nodes = placement.NewNodes(s.self, s.layout.GetNodes(), peerDial)

	hcfg := raftgroup.DefaultConfig()
	hcfg.NodeID = s.self
	hcfg.Engine = s.eng
	hcfg.SnapshotDir = filepath.Join(cfg.DataDir, "snapshots")
	if cfg.TickInterval > 0 {
		hcfg.TickInterval = cfg.TickInterval
	}
	if cfg.ElectionTicks > 0 {
		hcfg.ElectionTicks = cfg.ElectionTicks
	}
	if cfg.RaftLogTruncateThreshold > 0 {
		hcfg.LogTruncateThreshold, hcfg.LogKeepEntries = cfg.RaftLogTruncateThreshold, cfg.RaftLogTruncateThreshold/2
	}
	hcfg.Registerer = s.reg
	hcfg.Logger = s.log
	hcfg.Transport.Resolve = s.nodes.PeerAddr
	hcfg.Transport.DialOptions = []grpc.DialOption{peerDial}
	hcfg.Transport.AuthorizePeer = s.authorizePeer
	hcfg.NewReplica = s.newReplica // moves.go
	cfg.Moves.apply(&hcfg)
	if s.host, err = raftgroup.NewHost(hcfg); err != nil {
		return nil, err
	}
	if err := s.bootstrapIfNew(); err != nil {
		return nil, err
	}
	if err := s.openMeta(); err != nil {
		return nil, err
	}
	var localTSO *placement.TSO
	if s.meta != nil {
		localTSO = s.meta.TSO()
	}
	clock := placement.NewTSOClient(localTSO, s.nodes, shard.ReplicaNodes(s.layout.GetMeta()))
	s.tso = clock
	limits := shard.DefaultLimits()
	limits.MaxRequestBytes = cfg.MaxRequestBytes
	if err := s.openStore(clock, limits); err != nil {
		return nil, err
	}
	s.router = router.New(router.Config{
		ClusterID: s.layout.GetClusterId(),
		Nodes:     s.nodes,
		Cache:     router.NewRangeCache(s.layout.GetRanges()),
		Replicas:  s.store,
		Clock:     clock,
		Meta:      s.meta,
		Limits:    limits,
		Logger:    s.log,
		// Operator RPCs (router/admin.go): leader transfer.
		Raft:                s.host,
		TransferLeaderRetry: hcfg.TickInterval * time.Duration(hcfg.ElectionTicks),
		Registerer:          s.reg,
	})
	s.seedRangeCache() // store.go
	s.hub = watchhub.New(watchhub.Config{
		ClusterID:              s.layout.GetClusterId(),
		NodeID:                 s.nodes.Self(),
		Ranges:                 s.router.Cache(),
		Peers:                  s.nodes,
		Clock:                  clock,
		Current:                s.router.CurrentRevision,
		ProgressNotifyInterval: cfg.WatchProgressNotifyInterval,
		MaxRequestBytes:        cfg.MaxRequestBytes,
		StreamQueue:            cfg.WatchStreamQueue,
		AuthorizeCreate:        router.WatchAuthorizer(s.auth),
		Registerer:             s.reg,
		Logger:                 s.log,
	})
	if err := s.newLeases(); err != nil {
		return nil, err
	}
	s.serve()
	s.auth.startRefresh()
	s.host.Start()
	s.startDiskMonitor()
	if err := s.startCloser(); err != nil {
		s.Close()
		return nil, err
	}
	if err := s.startObservability(clock); err != nil {
		return nil, err
	}
	s.startMaintenanceLoops()
	s.startSplitLoop() // split.go
	s.startLifecycle()
	s.startMembers() // gossip, heartbeats, node table (members.go)
	return s, nil
}

func (s *Server) listen() error {
	var err error
	s.clientLis = s.cfg.ClientListener
	if s.clientLis == nil {
		addr, err := hostOf(s.cfg.ListenClientURLs[0])
		if err != nil {
			return err
		}
		if s.clientLis, err = net.Listen("tcp", addr); err != nil {
			return fmt.Errorf("server: listen for clients: %w", err)
		}
	}
	s.peerLis = s.cfg.PeerListener
	if s.peerLis == nil {
		addr, err := hostOf(s.cfg.ListenPeerURLs[0])
		if err != nil {
			return err
		}
		if s.peerLis, err = net.Listen("tcp", addr); err != nil {
			return fmt.Errorf("server: listen for peers: %w", err)
		}
	}
	return err
}

// loadOrComputeLayout reads the bootstrap record of an existing data dir, or
// computes it for a new cluster.
func (s *Server) loadOrComputeLayout(nodes []*tesserapb.NodeDescriptor) (*tesserapb.ClusterBootstrap, error) {
	v, err := s.eng.Get(bootstrapKey)
	switch {
	case err == nil:
		b := &tesserapb.ClusterBootstrap{}
		if err := proto.Unmarshal(v, b); err != nil {
			return nil, fmt.Errorf("server: decode bootstrap record: %w", err)
		}
		return b, nil
	case !errors.Is(err, engine.ErrNotFound):
		return nil, err
	case s.cfg.InitialClusterState != "new":
		return s.joinCluster(nodes) // members_join.go
	}
	var split [][]byte
	for _, k := range s.cfg.InitialSplitKeys {
		split = append(split, []byte(k))
	}
	return placement.InitialLayout(nodes, split)
}

func hasReplica(d *tesserapb.RangeDescriptor, id raftgroup.NodeID) bool {
	return shard.HasReplicaOn(d, id)
}

// createGroup hosts node self's replica of d's raft group, its peers taken
// from d.
func createGroup(h *raftgroup.Host, d *tesserapb.RangeDescriptor, self raftgroup.NodeID, sm raftgroup.StateMachine) error {
	r := shard.ReplicaOn(d, self)
	if r == nil {
		return fmt.Errorf("server: range %d has no replica on %s", d.GetRangeId(), self)
	}
	return h.CreateGroup(raftgroup.GroupID(d.GetRangeId()), raftgroup.ReplicaID(r.GetReplicaId()), shard.RaftPeers(d), sm)
}

// bootstrapIfNew writes the initial state of every group this node holds,
// then the bootstrap record (last, so a crash in between starts over).
func (s *Server) bootstrapIfNew() error {
	if _, err := s.eng.Get(bootstrapKey); err == nil {
		return nil
	}
	return bootstrapStore(s.eng, s.layout, s.self)
}

// bootstrapStore writes the initial state of every group node self holds in
// layout, then the bootstrap record (a restore writes the ranges' data
// before, restore.go).
func bootstrapStore(eng *engine.Engine, layout *tesserapb.ClusterBootstrap, self raftgroup.NodeID) error {
	if m := layout.GetMeta(); hasReplica(m, self) {
		if err := placement.WriteMetaInitialState(eng, layout); err != nil {
			return err
		}
		if err := raftgroup.Bootstrap(eng, placement.MetaRangeID, shard.RaftVoters(m)); err != nil {
			return err
		}
	}
	for _, d := range layout.GetRanges() {
		if !hasReplica(d, self) {
			continue
		}
		if err := shard.BootstrapRange(eng, d); err != nil {
			return err
		}
	}
	v, err := proto.Marshal(layout)
	if err != nil {
		return err
	}
	b := eng.NewWriteBatch()
	defer b.Close()
	if err := b.Set(bootstrapKey, v); err != nil {
		return err
	}
	return b.Commit(true)
}

func (s *Server) openMeta() error {
	if !hasReplica(s.layout.GetMeta(), s.self) {
		return nil
	}
	var err error
	if s.meta, err = placement.NewMeta(s.self, s.eng, s.host, placement.DefaultTSOConfig(), s.log); err != nil {
		return err
	}
	return createGroup(s.host, s.layout.GetMeta(), s.self, s.meta)
}

// grpcOverheadBytes is etcd's allowance for gRPC framing over the request
// size limit.
const grpcOverheadBytes = 512 * 1024

func (s *Server) serve() {
	// Peer port: raft transport and the internal service.
	s.peerGRPC = grpc.NewServer(append(append(s.peerServerOptions(), s.obs.peer.serverOptions()...), grpc.MaxRecvMsgSize(64<<20), grpc.MaxSendMsgSize(64<<20))...)
	s.host.RegisterService(s.peerGRPC)
	internal := router.NewInternal(s.router, s.rangeStatus)
	internal.Self = s.selfInfo
	tesserapb.RegisterInternalServer(s.peerGRPC, internal)
	if err := s.registerAdmin(); err != nil { // moves.go
		s.log.Error("admin service not served", "err", err)
	}
	tesserapb.RegisterInternalMaintenanceServer(s.peerGRPC, router.NewInternalMaintenance(s.router))
	// Alarm requests forwarded to the meta group's nodes (maintenance.go).
	pb.RegisterMaintenanceServer(s.peerGRPC, router.NewMaintenance(s.router, false, s.dataDirSize))
	pb.RegisterAuthServer(s.peerGRPC, &authServer{a: s.auth})  // changes forwarded to the meta leader
	registerHealth(s.peerGRPC)                                 // peer round-trip probes (peerprobe.go)
	cluster := s.registerMembership(internal)                  // node table, heartbeats (members.go)
	pb.RegisterLeaseServer(s.peerGRPC, s.leases.PeerService()) // lease.go
	s.obs.peer.initialize(s.peerGRPC)                          // after every service is registered
	s.goServe("peer grpc", func() error { return s.peerGRPC.Serve(s.peerLis) })

	// Client port: etcd's gRPC API and HTTP (/health, /metrics), as etcd.
	// Never the internal service: it trusts its caller to be a router
	// (docs/decisions.md, "Listeners").
	s.clientGRPC = grpc.NewServer(append(append(append(append(s.clientTLSServerOptions(), s.obs.client.serverOptions()...), s.auth.clientServerOptions()...), s.cfg.Keepalive.serverOptions()...),
		grpc.MaxRecvMsgSize(s.cfg.MaxRequestBytes+grpcOverheadBytes),
		grpc.MaxSendMsgSize(math.MaxInt32),
		grpc.MaxConcurrentStreams(math.MaxUint32),
	)...)
	pb.RegisterKVServer(s.clientGRPC, s.router)
	pb.RegisterWatchServer(s.clientGRPC, s.hub)
	pb.RegisterClusterServer(s.clientGRPC, cluster)
	s.maint = router.NewMaintenance(s.router, true, s.dataDirSize)
	s.maint.Info = s.statusInfo // version, quota, meta raft state (status.go)
	s.configureMaintenance()
	pb.RegisterMaintenanceServer(s.clientGRPC, s.maint)
	pb.RegisterAuthServer(s.clientGRPC, &authServer{a: s.auth, forward: true})
	pb.RegisterLeaseServer(s.clientGRPC, s.leases)
	s.obs.client.initialize(s.clientGRPC) // after every service is registered
	mux := http.NewServeMux()
	mux.Handle("/metrics", s.obs.metricsHandler())
	mux.HandleFunc("/health", s.health)
	s.registerProbes(mux) // /version, /livez, /readyz (http_probes.go)
	if err := s.startGateway(mux); err != nil {
		s.log.Error("no HTTP/JSON gateway", "err", err)
	}
	if s.cfg.EnablePprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	s.httpSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	s.clientConns = newTrackingListener(s.clientLis)
	s.clientMux = cmux.New(s.clientListener(s.clientConns))
	grpcL := s.clientMux.MatchWithWriters(cmux.HTTP2MatchHeaderFieldSendSettings("content-type", "application/grpc"))
	httpL := s.clientMux.Match(cmux.Any())
	s.goServe("client grpc", func() error { return s.clientGRPC.Serve(grpcL) })
	s.goServe("client http", func() error { return s.httpSrv.Serve(httpL) })
	s.goServe("client mux", func() error { return s.clientMux.Serve() })
}

func (s *Server) goServe(what string, fn func() error) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := fn(); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, grpc.ErrServerStopped) && !errors.Is(err, cmux.ErrListenerClosed) && !errors.Is(err, net.ErrClosed) {
			s.log.Debug("server stopped", "what", what, "err", err)
		}
	}()
}

// health answers like etcd's /health: a linearizable read must succeed.
func (s *Server) health(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	_, err := s.router.Range(ctx, &pb.RangeRequest{Key: []byte("health")})
	w.Header().Set("Content-Type", "application/json")
	body := map[string]string{"health": "true", "reason": ""}
	if err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		body = map[string]string{"health": "false", "reason": err.Error()}
	}
	_ = json.NewEncoder(w).Encode(body)
}

func (s *Server) selfInfo() (string, []string, []string) {
	return s.cfg.Name, s.cfg.AdvertiseClientURLs, s.cfg.InitialAdvertisePeerURLs
}

// rangeStatus reports every local replica.
func (s *Server) rangeStatus() []*tesserapb.RangeStatus {
	var out []*tesserapb.RangeStatus
	if s.meta != nil {
		st, err := s.host.Status(placement.MetaRangeID)
		if err == nil {
			out = append(out, &tesserapb.RangeStatus{
				RangeDescriptor: s.layout.GetMeta(), NodeId: uint64(s.self), LeaderNode: uint64(st.Leader),
				Term: st.Term, AppliedIndex: st.Applied, IsMeta: true,
			})
		}
	}
	for _, rep := range s.store.Replicas() {
		st := rep.Status()
		rs := &tesserapb.RangeStatus{
			RangeDescriptor: st.Descriptor, NodeId: uint64(s.self), LeaderNode: uint64(st.Leader), Term: st.Term,
			AppliedIndex: st.Applied, ResolvedRevision: int64(st.Resolved), CompactRevision: int64(st.CompactRev),
		}
		s.addRangeSize(rep, rs) // split_size.go
		out = append(out, rs)
	}
	return out
}

// ClientAddr returns the address the client port listens on.
func (s *Server) ClientAddr() string { return s.clientLis.Addr().String() }

// PeerAddr returns the address the peer port listens on.
func (s *Server) PeerAddr() string { return s.peerLis.Addr().String() }

// NodeID returns this node's id.
func (s *Server) NodeID() raftgroup.NodeID { return s.self }

// Host returns the node's raft host (tests move leaders with it).
func (s *Server) Host() *raftgroup.Host { return s.host }

// Engine returns the node's storage engine (consistency tests tamper with
// it to check that tessctl check notices).
func (s *Server) Engine() *engine.Engine { return s.eng }

// Close stops the node: client and peer ports, raft, replicas, engine.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		s.stopLifecycle()
		s.members.close()
		s.loops.stop()
		s.splits.stop()
		if s.diskMon != nil {
			s.diskMon.close()
		}
		if s.auth != nil {
			s.auth.close()
		}
		s.obs.close()
		if s.leases != nil {
			s.leases.Close()
		}
		if s.closer != nil {
			s.closer.Close()
		}
		if s.clientMux != nil {
			s.clientMux.Close()
		}
		if s.clientConns != nil {
			s.clientConns.closeAll()
		}
		if s.httpSrv != nil {
			_ = s.httpSrv.Close()
		}
		s.gw.close()
		if s.clientGRPC != nil {
			s.clientGRPC.Stop()
		}
		if s.host != nil {
			// Before the peer port: the transport ends its peers' streams
			// with "transport closed", so they see a clean shutdown.
			_ = s.host.Close()
		}
		if s.peerGRPC != nil {
			// Gracefully, briefly: the raft streams the transport ended
			// get their "transport closed" status flushed (a hard Stop can
			// cut it off, and peers then log a failure); long-lived
			// streams (feeds, keep-alives) are cut after the grace.
			stopGracefully(s.peerGRPC, peerStopGrace)
		}
		if s.hub != nil {
			s.hub.Close()
		}
		if s.clientLis != nil {
			_ = s.clientLis.Close()
		}
		if s.peerLis != nil {
			_ = s.peerLis.Close()
		}
		if s.store != nil {
			s.store.Close()
		}
		if s.tso != nil {
			s.tso.Close()
		}
		if s.meta != nil {
			s.meta.Close()
		}
		if s.nodes != nil {
			s.nodes.Close()
		}
		s.wg.Wait()
		if s.eng != nil {
			if err := s.eng.Close(); err != nil {
				s.log.Error("close engine", "err", err)
			}
			s.logStopped()
		}
	})
}
