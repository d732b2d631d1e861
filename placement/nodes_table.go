package placement

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/tesseradb/tessera/engine"
	"github.com/tesseradb/tessera/proto/tesserapb"
	"github.com/tesseradb/tessera/raftgroup"
)

// The node table: every node of the cluster as etcd's members (id, name,
// peer and client URLs, learner), with its state. It is replicated state of
// the meta group: seeded from the bootstrap record's nodes (ids 1..N), then
// changed by NodeChange commands. A new node's id is allocated at apply from
// a counter that only grows, so an id is never reused, even after a remove.
//
// Stored as meta/nodes/<id> -> NodeRecord for every node a command touched
// (the seed is recomputed from the bootstrap record at load, then the stored
// records override it) and meta/next-node-id.
var (
	keyNodePrefix = "meta/nodes/"
	keyNextNodeID = engine.SystemKey("meta/next-node-id")
)

func nodeKey(id raftgroup.NodeID) []byte {
	return engine.SystemKey(fmt.Sprintf("%s%016x", keyNodePrefix, uint64(id)))
}

// Errors of node table changes. They are decided at apply, so every replica
// reaches the same answer; router maps them to etcd's rpctypes errors.
// Like the lease errors, they are etcd's own (rpctypes): the Cluster API
// hands them to clients unchanged.
var (
	ErrNodeNotFound    = rpctypes.ErrGRPCMemberNotFound
	ErrNodeExists      = rpctypes.ErrGRPCMemberExist
	ErrPeerURLExists   = rpctypes.ErrGRPCPeerURLExist
	ErrNodeNotLearner  = rpctypes.ErrGRPCMemberNotLearner
	ErrTooManyLearners = rpctypes.ErrGRPCTooManyLearners
	ErrBadURLs         = rpctypes.ErrGRPCMemberBadURLs
	// ErrBadNodeChange: a change with no or an unknown op.
	ErrBadNodeChange = status.Error(codes.InvalidArgument, "placement: malformed node change")
	// ErrNodeTableNotLeader: changes are proposed on the meta leader only.
	ErrNodeTableNotLeader = rpctypes.ErrGRPCNotLeader
)

// MaxLearners is how many learners the node table admits at once (etcd's
// --max-learners default).
const MaxLearners = 1

// nodeTable is the applied node table (guarded by Meta.mu).
type nodeTable struct {
	nodes map[raftgroup.NodeID]*tesserapb.NodeRecord
	next  uint64
}

// seedNodeTable is the table a bootstrap record implies: its nodes, voters,
// active, with no client URLs (each node's bootstrap record carries only its
// own; nodes publish theirs when they start).
func seedNodeTable(b *tesserapb.ClusterBootstrap) nodeTable {
	t := nodeTable{nodes: make(map[raftgroup.NodeID]*tesserapb.NodeRecord), next: 1}
	for _, n := range b.GetNodes() {
		t.nodes[raftgroup.NodeID(n.GetNodeId())] = &tesserapb.NodeRecord{
			NodeId: n.GetNodeId(), Name: n.GetName(), PeerUrls: []string{n.GetPeerUrl()},
		}
		t.next = max(t.next, n.GetNodeId()+1)
	}
	return t
}

// loadNodesLocked reads the node table: the seed of the bootstrap record,
// overridden by stored records.
func (m *Meta) loadNodesLocked() error {
	t := seedNodeTable(m.mu.bootstrap)
	span := engine.SystemSpan(keyNodePrefix)
	it, err := m.eng.NewIter(span)
	if err != nil {
		return fmt.Errorf("placement: read node table: %w", err)
	}
	defer it.Close()
	for ok := it.First(); ok; ok = it.Next() {
		v, err := it.Value()
		if err != nil {
			return fmt.Errorf("placement: read node record: %w", err)
		}
		r := &tesserapb.NodeRecord{}
		if err := proto.Unmarshal(v, r); err != nil {
			return fmt.Errorf("placement: decode node record: %w", err)
		}
		t.nodes[raftgroup.NodeID(r.GetNodeId())] = r
		t.next = max(t.next, r.GetNodeId()+1)
	}
	v, err := m.eng.Get(keyNextNodeID)
	switch {
	case errors.Is(err, engine.ErrNotFound):
	case err != nil:
		return fmt.Errorf("placement: read next node id: %w", err)
	case len(v) == 8:
		t.next = max(t.next, binary.BigEndian.Uint64(v))
	default:
		return errors.New("placement: corrupt next node id")
	}
	m.mu.nodes = t
	return nil
}

// ValidatePeerURLs checks URLs as etcd's member add/update does: at least
// one, each http(s)://host:port with nothing else.
func ValidatePeerURLs(urls []string) error {
	if len(urls) == 0 {
		return ErrBadURLs
	}
	for _, s := range urls {
		u, err := url.Parse(s)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https" && u.Scheme != "unix" && u.Scheme != "unixs") {
			return ErrBadURLs
		}
		if u.Scheme == "http" || u.Scheme == "https" {
			if u.Host == "" || !strings.Contains(u.Host, ":") || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
				return ErrBadURLs
			}
		}
	}
	return nil
}

func (t *nodeTable) peerURLTakenLocked(urls []string, except raftgroup.NodeID) bool {
	for id, n := range t.nodes {
		if id == except || n.GetState() == tesserapb.NodeRecord_REMOVED {
			continue
		}
		for _, u := range n.GetPeerUrls() {
			if slices.Contains(urls, u) {
				return true
			}
		}
	}
	return false
}

// applyNodeChangeLocked applies one change; the error is the answer to the
// proposer (nothing is written then), never a failure of the apply.
func (m *Meta) applyNodeChangeLocked(b *engine.Batch, c *tesserapb.NodeChange) (*tesserapb.NodeRecord, error) {
	t := &m.mu.nodes
	var rec *tesserapb.NodeRecord
	id := raftgroup.NodeID(c.GetNodeId())
	live := func() (*tesserapb.NodeRecord, error) {
		n, ok := t.nodes[id]
		if !ok || n.GetState() == tesserapb.NodeRecord_REMOVED {
			return nil, ErrNodeNotFound
		}
		return proto.Clone(n).(*tesserapb.NodeRecord), nil
	}
	var err error
	switch c.GetOp() {
	case tesserapb.NodeChange_ADD:
		if ValidatePeerURLs(c.GetPeerUrls()) != nil {
			return nil, ErrBadURLs
		}
		if t.peerURLTakenLocked(c.GetPeerUrls(), 0) {
			return nil, ErrPeerURLExists
		}
		if c.GetIsLearner() {
			learners := 0
			for _, n := range t.nodes {
				if n.GetIsLearner() && n.GetState() != tesserapb.NodeRecord_REMOVED {
					learners++
				}
			}
			if learners >= MaxLearners {
				return nil, ErrTooManyLearners
			}
		}
		id = raftgroup.NodeID(t.next)
		if _, ok := t.nodes[id]; ok {
			return nil, ErrNodeExists
		}
		rec = &tesserapb.NodeRecord{NodeId: uint64(id), PeerUrls: slices.Clone(c.GetPeerUrls()), IsLearner: c.GetIsLearner()}
	case tesserapb.NodeChange_REMOVE:
		if rec, err = live(); err != nil {
			return nil, err
		}
		rec.State = tesserapb.NodeRecord_REMOVED
	case tesserapb.NodeChange_UPDATE:
		if ValidatePeerURLs(c.GetPeerUrls()) != nil {
			return nil, ErrBadURLs
		}
		if rec, err = live(); err != nil {
			return nil, err
		}
		if t.peerURLTakenLocked(c.GetPeerUrls(), id) {
			return nil, ErrPeerURLExists
		}
		rec.PeerUrls = slices.Clone(c.GetPeerUrls())
	case tesserapb.NodeChange_PROMOTE:
		if rec, err = live(); err != nil {
			return nil, err
		}
		if !rec.GetIsLearner() {
			return nil, ErrNodeNotLearner
		}
		rec.IsLearner = false
	case tesserapb.NodeChange_PUBLISH:
		if rec, err = live(); err != nil {
			return nil, err
		}
		rec.Name, rec.ClientUrls, rec.GossipAddr = c.GetName(), slices.Clone(c.GetClientUrls()), c.GetGossipAddr()
	default:
		return nil, ErrBadNodeChange
	}
	v, err := proto.Marshal(rec)
	if err != nil {
		return nil, fmt.Errorf("placement: encode node record: %w", err)
	}
	if err := b.Set(nodeKey(id), v); err != nil {
		return nil, err
	}
	if uint64(id) >= t.next {
		t.next = uint64(id) + 1
		if err := b.Set(keyNextNodeID, binary.BigEndian.AppendUint64(nil, t.next)); err != nil {
			return nil, err
		}
	}
	t.nodes[id] = rec
	return proto.Clone(rec).(*tesserapb.NodeRecord), nil
}

// NodeTable returns every node of the table, removed ones included, by id.
func (m *Meta) NodeTable() []*tesserapb.NodeRecord {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.nodeTableLocked()
}

func (m *Meta) nodeTableLocked() []*tesserapb.NodeRecord {
	out := make([]*tesserapb.NodeRecord, 0, len(m.mu.nodes.nodes))
	for _, n := range m.mu.nodes.nodes {
		out = append(out, proto.Clone(n).(*tesserapb.NodeRecord))
	}
	slices.SortFunc(out, func(a, b *tesserapb.NodeRecord) int { return cmp.Compare(a.GetNodeId(), b.GetNodeId()) })
	return out
}

// IsLeader reports whether this replica leads the meta group.
func (m *Meta) IsLeader() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.mu.isLeader
}

// ChangeNode proposes a change of the node table on the meta leader and
// waits for it to apply. It returns the node changed (with its allocated id
// for an add) and the table after the change.
func (m *Meta) ChangeNode(ctx context.Context, c *tesserapb.NodeChange) (*tesserapb.NodeRecord, []*tesserapb.NodeRecord, error) {
	if !m.IsLeader() {
		return nil, nil, ErrNodeTableNotLeader
	}
	switch c.GetOp() {
	case tesserapb.NodeChange_ADD, tesserapb.NodeChange_UPDATE:
		if err := ValidatePeerURLs(c.GetPeerUrls()); err != nil {
			return nil, nil, err
		}
	case tesserapb.NodeChange_NONE:
		return nil, nil, ErrBadNodeChange
	}
	r, err := m.propose(ctx, &tesserapb.MetaCommand{NodeChange: c})
	if err != nil {
		return nil, nil, fmt.Errorf("placement: node change: %w", err)
	}
	if r.err != nil {
		return nil, nil, r.err
	}
	return r.node, r.nodes, nil
}

func isNodeTableError(err error) bool {
	for _, e := range []error{ErrNodeNotFound, ErrNodeExists, ErrPeerURLExists, ErrNodeNotLearner, ErrTooManyLearners, ErrBadURLs, ErrBadNodeChange} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
