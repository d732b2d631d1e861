package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tesseradb/tessera/engine"
	"github.com/tesseradb/tessera/placement"
	"github.com/tesseradb/tessera/proto/tesserapb"
	"github.com/tesseradb/tessera/raftgroup"
	"github.com/tesseradb/tessera/router"
	"github.com/tesseradb/tessera/shard"
)

// MembersConfig configures membership: gossip, heartbeats and liveness
// (docs/operations.md, "Adding and removing nodes").
type MembersConfig struct {
	// GossipAddr is --gossip-addr, host:port of this node's memberlist
	// (the tessera command defaults it to the peer host with port 7946;
	// empty here: no gossip, liveness from heartbeats alone, which
	// in-process tests use).
	GossipAddr string
	// GossipAddrDefaulted: GossipAddr is the default, not asked for; a
	// port already taken is then an info line, not a warning.
	GossipAddrDefaulted bool
	// HeartbeatInterval is how often the node sends the meta leader its
	// heartbeat and reads the node table (0: 1 s).
	HeartbeatInterval time.Duration
	// DeadNodeTimeout is --dead-node-timeout (0: 5 minutes).
	DeadNodeTimeout time.Duration
	// SizeInterval is how often a range's size on disk is estimated again
	// for heartbeats (0: 10 s).
	SizeInterval time.Duration
	// JoinTimeout bounds how long a joining node tries the members' peer
	// URLs for the node table (0: 30 s).
	JoinTimeout time.Duration
}

func (c MembersConfig) liveness() placement.LivenessConfig {
	l := placement.DefaultLivenessConfig()
	if c.HeartbeatInterval > 0 {
		l.HeartbeatInterval, l.SuspectTimeout = c.HeartbeatInterval, 3*c.HeartbeatInterval
	}
	if c.DeadNodeTimeout > 0 {
		l.DeadNodeTimeout = c.DeadNodeTimeout
	}
	l.SuspectTimeout = min(l.SuspectTimeout, l.DeadNodeTimeout)
	return l
}

func (c MembersConfig) sizeInterval() time.Duration {
	if c.SizeInterval > 0 {
		return c.SizeInterval
	}
	return 10 * time.Second
}

// Validate checks the configuration.
func (c MembersConfig) Validate() error {
	if c.GossipAddr != "" {
		if _, _, err := net.SplitHostPort(c.GossipAddr); err != nil {
			return fmt.Errorf("server: --gossip-addr %q: %w", c.GossipAddr, err)
		}
	}
	if c.HeartbeatInterval < 0 || c.DeadNodeTimeout < 0 || c.JoinTimeout < 0 || c.SizeInterval < 0 {
		return errors.New("server: membership intervals must not be negative")
	}
	return c.liveness().Validate()
}

// DefaultGossipAddr is the peer URL's host with memberlist's port 7946.
func DefaultGossipAddr(peerURL string) string {
	u, err := url.Parse(peerURL)
	if err != nil || u.Hostname() == "" {
		return net.JoinHostPort("127.0.0.1", fmt.Sprint(placement.DefaultGossipPort))
	}
	return net.JoinHostPort(u.Hostname(), fmt.Sprint(placement.DefaultGossipPort))
}

// members runs a node's side of membership: it publishes the node's name
// and URLs, follows the node table (peer registry, gossip seeds), sends
// heartbeats, and, while this node leads the meta group, tracks liveness.
type members struct {
	s       *Server
	cfg     MembersConfig
	svc     *router.Membership
	live    *placement.Liveness
	gossip  *placement.Gossip
	metrics *membersMetrics
	joining atomic.Bool // a gossip join is running
	// sizes: range size estimates (only the run loop touches them).
	sizes map[uint64]sizeEntry

	// ctx ends when the node closes (cancel), so a heartbeat in flight
	// does not hold Close up.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// registerMembership serves the Membership service on the peer port and
// returns etcd's Cluster service backed by it.
func (s *Server) registerMembership(internal *router.Internal) *router.Cluster {
	m := &members{s: s, cfg: s.cfg.Members, sizes: make(map[uint64]sizeEntry)}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	var gossipStates func() map[raftgroup.NodeID]string
	if m.cfg.GossipAddr != "" {
		gossipStates = func() map[raftgroup.NodeID]string {
			if m.gossip == nil {
				return nil
			}
			return m.gossip.States()
		}
	}
	m.live = placement.NewLiveness(m.cfg.liveness(), gossipStates, nil)
	m.metrics = newMembersMetrics(s.reg)
	m.svc = router.NewMembership(router.MembershipConfig{
		Meta:      s.meta,
		Nodes:     s.nodes,
		MetaNodes: func() []raftgroup.NodeID { return shard.ReplicaNodes(s.layout.GetMeta()) },
		Bootstrap: func() *tesserapb.ClusterBootstrap { return s.layout },
		Directory: func() []*tesserapb.RangeDescriptor {
			return append([]*tesserapb.RangeDescriptor{s.layout.GetMeta()}, s.router.Cache().Ranges()...)
		},
		Liveness: m.live,
	})
	s.members = m
	tesserapb.RegisterMembershipServer(s.peerGRPC, m.svc)
	c := router.NewCluster(s.router, s.layout.GetClusterId(), internal)
	c.Membership = m.svc
	return c
}

// startMembers starts gossip and the heartbeat loop.
func (s *Server) startMembers() {
	m := s.members
	if m == nil {
		return
	}
	if m.cfg.GossipAddr != "" {
		self := &tesserapb.NodeDescriptor{NodeId: uint64(s.self), Name: s.cfg.Name}
		if len(s.cfg.InitialAdvertisePeerURLs) > 0 {
			self.PeerUrl = s.cfg.InitialAdvertisePeerURLs[0]
		}
		g, err := placement.StartGossip(placement.GossipConfig{Addr: m.cfg.GossipAddr, Self: self, Logger: s.log})
		switch {
		case err != nil && m.cfg.GossipAddrDefaulted:
			// The default port is taken (another node on this host):
			// liveness still works from heartbeats.
			s.log.Info("gossip disabled (set --gossip-addr to a free host:port)", "addr", m.cfg.GossipAddr, "err", err)
		case err != nil:
			s.log.Warn("gossip disabled; liveness from heartbeats only", "addr", m.cfg.GossipAddr, "err", err)
		default:
			m.gossip = g
		}
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		m.run()
	}()
}

func (m *members) close() {
	if m == nil {
		return
	}
	m.cancel()
	if m.gossip != nil {
		// Leave first: a join in flight then fails instead of retrying.
		_ = m.gossip.Close()
	}
	m.wg.Wait()
}

// run is the heartbeat loop: every interval, read the node table (publish
// this node's attributes if the table lacks them, follow it in the peer
// registry, join gossip seeds), then send the heartbeat.
func (m *members) run() {
	interval := m.cfg.liveness().HeartbeatInterval
	t := time.NewTicker(interval)
	defer t.Stop()
	wasLeader := false
	for {
		if leads := m.s.meta != nil && m.s.meta.IsLeader(); leads != wasLeader {
			wasLeader = leads
			if leads {
				m.live.Reset()
			}
		}
		ctx, cancel := context.WithTimeout(m.ctx, interval*3)
		m.syncTable(ctx)
		if _, err := m.svc.Heartbeat(ctx, m.heartbeat()); err != nil {
			m.s.log.Debug("heartbeat", "err", err)
			m.metrics.heartbeats.WithLabelValues("error").Inc()
		} else {
			m.metrics.heartbeats.WithLabelValues("ok").Inc()
		}
		if wasLeader {
			snap := m.svc.Snapshot()
			m.metrics.observe(&snap)
		} else {
			m.metrics.observe(nil)
		}
		cancel()
		select {
		case <-m.ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (m *members) syncTable(ctx context.Context) {
	resp, err := m.svc.NodeTable(ctx, &tesserapb.NodeTableRequest{})
	if err != nil {
		m.s.log.Debug("read node table", "err", err)
		return
	}
	table := resp.GetNodes()
	if m.s.nodes.Sync(table) {
		m.s.log.Debug("peer registry follows the node table", "nodes", len(m.s.nodes.List()))
	}
	var seeds []string
	var gossipKnows map[raftgroup.NodeID]string
	if m.gossip != nil {
		gossipKnows = m.gossip.States()
	}
	for _, r := range table {
		id := raftgroup.NodeID(r.GetNodeId())
		if id == m.s.self {
			if m.needsPublish(r) {
				m.publish(ctx)
			}
			continue
		}
		if r.GetState() != tesserapb.NodeRecord_REMOVED && r.GetGossipAddr() != "" && gossipKnows[id] != placement.GossipAlive {
			seeds = append(seeds, r.GetGossipAddr())
		}
	}
	// Join the nodes gossip does not know alive, off the heartbeat loop (a
	// dead seed costs memberlist's TCP timeout, 10 s), one join at a time.
	if m.gossip != nil && len(seeds) > 0 && m.joining.CompareAndSwap(false, true) {
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			defer m.joining.Store(false)
			if _, err := m.gossip.Join(seeds); err != nil {
				m.s.log.Debug("gossip join", "err", err)
			}
		}()
	}
}

func (m *members) needsPublish(r *tesserapb.NodeRecord) bool {
	gossip := ""
	if m.gossip != nil {
		gossip = m.cfg.GossipAddr
	}
	return r.GetState() != tesserapb.NodeRecord_REMOVED &&
		(r.GetName() != m.s.cfg.Name || !slices.Equal(r.GetClientUrls(), m.s.cfg.AdvertiseClientURLs) || r.GetGossipAddr() != gossip)
}

// publish records this node's name, client URLs and gossip address in the
// node table (etcd's member publish).
func (m *members) publish(ctx context.Context) {
	c := &tesserapb.NodeChange{Op: tesserapb.NodeChange_PUBLISH, NodeId: uint64(m.s.self), Name: m.s.cfg.Name, ClientUrls: m.s.cfg.AdvertiseClientURLs}
	if m.gossip != nil {
		c.GossipAddr = m.cfg.GossipAddr
	}
	if _, err := m.svc.ChangeNode(ctx, &tesserapb.NodeChangeRequest{Change: c}); err != nil {
		m.s.log.Debug("publish member attributes", "err", err)
	}
}

// heartbeat gathers this node's per-range statistics.
func (m *members) heartbeat() *tesserapb.NodeHeartbeat {
	s := m.s
	now := time.Now()
	hb := &tesserapb.NodeHeartbeat{NodeId: uint64(s.self), DiskUsageBytes: s.eng.DiskUsage()}
	seen := make(map[uint64]bool, len(m.sizes))
	for _, st := range s.rangeStatus() {
		d := st.GetRangeDescriptor()
		rl := &tesserapb.RangeLoad{
			RangeId: d.GetRangeId(), LeaderNode: st.GetLeaderNode(),
			IsLeader: st.GetLeaderNode() == uint64(s.self),
		}
		// Only the leader's descriptor: the placement driver takes the
		// highest generation, and one per range keeps heartbeats small.
		if rl.IsLeader {
			rl.RangeDescriptor = d
		}
		if rep := s.store.Replica(d.GetRangeId()); rep != nil {
			rl.Qps = rep.Load()
			// The leader's measurement (the bytes of every version, what
			// size-based splits use) when it has one, else the engine's
			// estimate of the span's files.
			if st, ok := rep.LastSize(); ok && st.Generation == d.GetGeneration() {
				rl.SizeBytes = uint64(max(st.Bytes, 0))
			} else {
				rl.SizeBytes = m.rangeSize(d.GetRangeId(), rep.DataSpan(), now)
			}
		}
		seen[d.GetRangeId()] = true
		hb.Ranges = append(hb.Ranges, rl)
	}
	for id := range m.sizes {
		if !seen[id] {
			delete(m.sizes, id)
		}
	}
	return hb
}

// sizeEntry is a range's size estimate and when it was taken.
type sizeEntry struct {
	bytes uint64
	at    time.Time
}

// rangeSize returns a range's estimated size on disk, estimated at most
// once per SizeInterval (Pebble's estimate walks the LSM's metadata; at
// 10,000 ranges a heartbeat should not pay it for every range).
func (m *members) rangeSize(id uint64, span engine.Span, now time.Time) uint64 {
	if e, ok := m.sizes[id]; ok && now.Sub(e.at) < m.cfg.sizeInterval() {
		return e.bytes
	}
	n, err := m.s.eng.EstimateSpanSize(span)
	if err != nil {
		return m.sizes[id].bytes
	}
	m.sizes[id] = sizeEntry{bytes: n, at: now}
	return n
}
