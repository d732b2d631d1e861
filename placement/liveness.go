package placement

import (
	"cmp"
	"errors"
	"slices"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/tesseradb/tessera/proto/tesserapb"
	"github.com/tesseradb/tessera/raftgroup"
	"github.com/tesseradb/tessera/shard"
)

// Liveness states the placement driver gives a node.
const (
	Live    = "live"
	Suspect = "suspect"
	Dead    = "dead"
)

// LivenessConfig configures how the placement driver decides liveness.
type LivenessConfig struct {
	// HeartbeatInterval is how often every node sends the meta leader its
	// heartbeat with per-range statistics (PD's region heartbeats run every
	// 60 s and its store heartbeats every 10 s; ours are small, one per
	// node, and also drive liveness, so 1 s).
	HeartbeatInterval time.Duration
	// SuspectTimeout: a node whose last heartbeat is older is suspect
	// (three missed heartbeats, so one lost packet or a GC pause is not).
	SuspectTimeout time.Duration
	// DeadNodeTimeout (--dead-node-timeout, 5 min as CockroachDB's
	// server.time_until_store_dead): a node silent that long is dead and
	// its replicas are to be rebuilt elsewhere.
	DeadNodeTimeout time.Duration
}

// DefaultLivenessConfig returns the defaults above.
func DefaultLivenessConfig() LivenessConfig {
	return LivenessConfig{HeartbeatInterval: time.Second, SuspectTimeout: 3 * time.Second, DeadNodeTimeout: 5 * time.Minute}
}

// Validate checks the configuration.
func (c LivenessConfig) Validate() error {
	if c.HeartbeatInterval <= 0 || c.SuspectTimeout <= 0 || c.DeadNodeTimeout <= 0 {
		return errors.New("placement: liveness intervals must be positive")
	}
	if c.SuspectTimeout < c.HeartbeatInterval {
		return errors.New("placement: suspect timeout below the heartbeat interval")
	}
	if c.DeadNodeTimeout < c.SuspectTimeout {
		return errors.New("placement: dead node timeout below the suspect timeout")
	}
	return nil
}

// DecideLiveness is the placement driver's rule, a pure function: a node is
// dead once nothing was heard from it for DeadNodeTimeout (its last
// heartbeat, or since is when this driver started watching, for a node
// that never sent one); suspect when its heartbeat is older than
// SuspectTimeout or gossip suspects it or reports it dead or gone;
// live otherwise. Gossip alone never makes a node dead (it decides within
// seconds and flaps), and never keeps a silent node alive: heartbeats
// prove a node can reach the meta leader, which is what placement needs.
func DecideLiveness(cfg LivenessConfig, now, lastHeartbeat, since time.Time, gossip string) string {
	last := lastHeartbeat
	if last.IsZero() || last.Before(since) {
		last = since
	}
	age := now.Sub(last)
	switch {
	case age >= cfg.DeadNodeTimeout:
		return Dead
	case !lastHeartbeat.IsZero() && now.Sub(lastHeartbeat) <= cfg.SuspectTimeout && gossip != GossipSuspect && gossip != GossipDead:
		return Live
	}
	return Suspect
}

// Liveness keeps, on the meta leader, the nodes' last heartbeats and
// decides their liveness.
type Liveness struct {
	cfg    LivenessConfig
	gossip func() map[raftgroup.NodeID]string
	now    func() time.Time

	mu struct {
		sync.Mutex
		since time.Time // when this node started watching (became leader)
		beats map[raftgroup.NodeID]heartbeat
	}
}

type heartbeat struct {
	at time.Time
	hb *tesserapb.NodeHeartbeat
}

// NewLiveness returns a tracker; gossip (may be nil) gives gossip's view.
func NewLiveness(cfg LivenessConfig, gossip func() map[raftgroup.NodeID]string, now func() time.Time) *Liveness {
	if now == nil {
		now = time.Now
	}
	l := &Liveness{cfg: cfg, gossip: gossip, now: now}
	l.mu.since = now()
	l.mu.beats = make(map[raftgroup.NodeID]heartbeat)
	return l
}

// Config returns the configuration.
func (l *Liveness) Config() LivenessConfig { return l.cfg }

// Reset forgets every heartbeat: this node just became the meta leader, so
// every node gets a full DeadNodeTimeout from now before it can be dead.
func (l *Liveness) Reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.mu.since = l.now()
	clear(l.mu.beats)
}

// Heartbeat records a node's heartbeat.
func (l *Liveness) Heartbeat(hb *tesserapb.NodeHeartbeat) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.mu.beats[raftgroup.NodeID(hb.GetNodeId())] = heartbeat{at: l.now(), hb: hb}
}

// NodeState is one node in a cluster snapshot.
type NodeState struct {
	Record *tesserapb.NodeRecord
	// Liveness: Live, Suspect or Dead; Gossip: gossip's own view.
	Liveness, Gossip string
	// HeartbeatAge since the last heartbeat (-1: none since this leader
	// started).
	HeartbeatAge time.Duration
	// Replicas: replicas the range directory places on the node (the meta
	// group's included); Leaders and Bytes: from its last heartbeat.
	Replicas, Leaders int
	Bytes             uint64
}

// RangeState is one range in a cluster snapshot.
type RangeState struct {
	Descriptor *tesserapb.RangeDescriptor
	// Leader as last reported by a heartbeat (0: unknown).
	Leader    raftgroup.NodeID
	SizeBytes uint64
	QPS       float64
}

// ClusterSnapshot is what the scheduler decides from: every node of the
// table (removed ones left out) with its liveness, and every range with its
// replicas, leader, size and load.
type ClusterSnapshot struct {
	At     time.Time
	Nodes  []NodeState
	Ranges []RangeState
}

// Snapshot builds the cluster snapshot from the node table and the range
// directory (descriptors as the meta group / range cache know them; a
// heartbeat's descriptor of a higher generation wins).
func (l *Liveness) Snapshot(table []*tesserapb.NodeRecord, directory []*tesserapb.RangeDescriptor) ClusterSnapshot {
	var gossip map[raftgroup.NodeID]string
	if l.gossip != nil {
		gossip = l.gossip()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	snap := ClusterSnapshot{At: now}
	ranges := make(map[uint64]*RangeState)
	for _, d := range directory {
		ranges[d.GetRangeId()] = &RangeState{Descriptor: d}
	}
	leaders := make(map[raftgroup.NodeID]int)
	bytes := make(map[raftgroup.NodeID]uint64)
	for id, b := range l.mu.beats {
		for _, r := range b.hb.GetRanges() {
			rs := ranges[r.GetRangeId()]
			if rs == nil {
				rs = &RangeState{}
				ranges[r.GetRangeId()] = rs
			}
			if d := r.GetRangeDescriptor(); d != nil && (rs.Descriptor == nil || d.GetGeneration() > rs.Descriptor.GetGeneration()) {
				rs.Descriptor = d
			}
			if r.GetIsLeader() {
				leaders[id]++
				rs.Leader = id
				rs.SizeBytes, rs.QPS = r.GetSizeBytes(), r.GetQps()
			} else if rs.Leader == 0 {
				rs.SizeBytes = max(rs.SizeBytes, r.GetSizeBytes())
			}
			bytes[id] += r.GetSizeBytes()
		}
	}
	replicas := make(map[raftgroup.NodeID]int)
	for _, rs := range ranges {
		if rs.Descriptor == nil {
			continue
		}
		for _, n := range shard.ReplicaNodes(rs.Descriptor) {
			replicas[n]++
		}
		snap.Ranges = append(snap.Ranges, *rs)
	}
	slices.SortFunc(snap.Ranges, func(a, b RangeState) int {
		return cmp.Compare(a.Descriptor.GetRangeId(), b.Descriptor.GetRangeId())
	})
	for _, r := range table {
		if r.GetState() == tesserapb.NodeRecord_REMOVED {
			continue
		}
		id := raftgroup.NodeID(r.GetNodeId())
		g := gossip[id]
		if g == "" {
			g = GossipUnknown
		}
		b, ok := l.mu.beats[id]
		ns := NodeState{Record: proto.Clone(r).(*tesserapb.NodeRecord), Gossip: g, HeartbeatAge: -1, Replicas: replicas[id], Leaders: leaders[id], Bytes: bytes[id]}
		if ok {
			ns.HeartbeatAge = now.Sub(b.at)
		}
		ns.Liveness = DecideLiveness(l.cfg, now, b.at, l.mu.since, g)
		snap.Nodes = append(snap.Nodes, ns)
	}
	return snap
}
