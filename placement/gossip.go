package placement

import (
	"bytes"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
	"google.golang.org/protobuf/proto"

	"github.com/tesseradb/tessera/proto/tesserapb"
	"github.com/tesseradb/tessera/raftgroup"
)

// DefaultGossipPort is memberlist's (and Consul's/Serf's) LAN port.
const DefaultGossipPort = 7946

// Gossip states of a node as memberlist sees it.
const (
	GossipAlive   = "alive"
	GossipSuspect = "suspect"
	GossipDead    = "dead"
	GossipUnknown = "unknown"
)

// GossipConfig configures a node's memberlist.
type GossipConfig struct {
	// Addr is host:port to bind (UDP and TCP) and advertise.
	Addr string
	// Self is what the node gossips about itself: its id, name and URLs.
	Self *tesserapb.NodeDescriptor
	// Logger receives memberlist's own log lines at debug level.
	Logger *slog.Logger
	// LAN: memberlist's DefaultLANConfig timings (probe every 1 s, suspicion
	// multiplier 4, gossip every 200 ms to 3 nodes): a failed node is
	// suspected within about a second and declared dead by gossip within
	// about 5-10 s on a LAN. Nothing here needs other timings; placement
	// decides dead only after --dead-node-timeout anyway (liveness.go).
}

// Validate checks the configuration.
func (c GossipConfig) Validate() error {
	if c.Self.GetNodeId() == 0 {
		return errors.New("placement: gossip: no node id")
	}
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		return fmt.Errorf("placement: gossip address %q: %w", c.Addr, err)
	}
	return nil
}

// Gossip is a node's memberlist: it gossips the node's id and addresses and
// tells which nodes gossip thinks alive.
type Gossip struct {
	ml     *memberlist.Memberlist
	meta   []byte
	events *gossipEvents
	mu     sync.Mutex // serializes Leave/Shutdown
}

// gossipEvents remembers nodes that left or died (memberlist's Members
// lists live ones only).
type gossipEvents struct {
	mu   sync.Mutex
	gone map[string]string
}

func (e *gossipEvents) NotifyJoin(n *memberlist.Node) {
	e.mu.Lock()
	delete(e.gone, n.Name)
	e.mu.Unlock()
}

func (e *gossipEvents) NotifyLeave(n *memberlist.Node) {
	e.mu.Lock()
	// memberlist does not update n.State for its callbacks: a node that
	// left and one declared dead are both gone.
	e.gone[n.Name] = GossipDead
	e.mu.Unlock()
}

func (e *gossipEvents) NotifyUpdate(*memberlist.Node) {}

type gossipDelegate struct{ meta []byte }

func (d gossipDelegate) NodeMeta(limit int) []byte {
	if len(d.meta) > limit {
		return nil
	}
	return d.meta
}
func (gossipDelegate) NotifyMsg([]byte)                    {}
func (gossipDelegate) GetBroadcasts(int, int) [][]byte     { return nil }
func (gossipDelegate) LocalState(bool) []byte              { return nil }
func (gossipDelegate) MergeRemoteState(buf []byte, _ bool) {}

// slogWriter turns memberlist's log lines into debug records.
type slogWriter struct{ log *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	w.log.Debug(string(bytes.TrimSpace(p)))
	return len(p), nil
}

// StartGossip binds the node's memberlist.
func StartGossip(cfg GossipConfig) (*Gossip, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	host, portStr, _ := net.SplitHostPort(cfg.Addr)
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("placement: gossip port %q: %w", portStr, err)
	}
	if net.ParseIP(host) == nil {
		// memberlist binds IPs: resolve a host name (a peer URL's host).
		ip, err := net.ResolveIPAddr("ip", host)
		if err != nil {
			return nil, fmt.Errorf("placement: gossip host %q: %w", host, err)
		}
		host = ip.IP.String()
	}
	meta, err := proto.Marshal(cfg.Self)
	if err != nil {
		return nil, fmt.Errorf("placement: gossip meta: %w", err)
	}
	mc := memberlist.DefaultLANConfig()
	mc.Name = strconv.FormatUint(cfg.Self.GetNodeId(), 10)
	mc.BindAddr, mc.BindPort = host, port
	mc.AdvertiseAddr, mc.AdvertisePort = host, port
	mc.Delegate = gossipDelegate{meta: meta}
	events := &gossipEvents{gone: make(map[string]string)}
	mc.Events = events
	mc.Logger = log.New(slogWriter{cfg.Logger.With("component", "memberlist")}, "", 0)
	ml, err := memberlist.Create(mc)
	if err != nil {
		return nil, fmt.Errorf("placement: start gossip on %s: %w", cfg.Addr, err)
	}
	return &Gossip{ml: ml, meta: meta, events: events}, nil
}

// Join contacts the given gossip addresses; it succeeds if any answered.
func (g *Gossip) Join(addrs []string) (int, error) {
	if len(addrs) == 0 {
		return 0, nil
	}
	n, err := g.ml.Join(addrs)
	if n > 0 {
		return n, nil
	}
	return 0, fmt.Errorf("placement: gossip join %v: %w", addrs, err)
}

// Members returns how many nodes gossip knows alive, itself included.
func (g *Gossip) Members() int { return g.ml.NumMembers() }

// States returns gossip's view of every node it knows: alive or dead
// (gone: failed or left). memberlist does not expose its suspicion of a
// node, so GossipSuspect is not reported today.
func (g *Gossip) States() map[raftgroup.NodeID]string {
	out := make(map[raftgroup.NodeID]string)
	add := func(name, state string) {
		if id, err := strconv.ParseUint(name, 10, 64); err == nil {
			out[raftgroup.NodeID(id)] = state
		}
	}
	g.events.mu.Lock()
	for name, st := range g.events.gone {
		add(name, st)
	}
	g.events.mu.Unlock()
	for _, n := range g.ml.Members() {
		add(n.Name, GossipAlive)
	}
	return out
}

// Close leaves the cluster (so others see "left", not "dead") and stops.
func (g *Gossip) Close() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	_ = g.ml.Leave(time.Second)
	return g.ml.Shutdown()
}

// FreeGossipAddr returns a 127.0.0.1 address whose port was free for both
// TCP and UDP (memberlist binds both); tests use it.
func FreeGossipAddr() (string, error) {
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return "", err
		}
		addr := l.Addr().String()
		u, err := net.ListenPacket("udp", addr)
		_ = l.Close()
		if err == nil {
			_ = u.Close()
			return addr, nil
		}
	}
	return "", errors.New("placement: no free port for TCP and UDP")
}
