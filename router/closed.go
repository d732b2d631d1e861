package router

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tesseradb/tessera/engine"
	"github.com/tesseradb/tessera/proto/tesserapb"
	"github.com/tesseradb/tessera/raftgroup"
	"github.com/tesseradb/tessera/shard"
)

// CloserConfig configures a node's closed-revision side channel
// (docs/decisions.md, "Closed revisions").
type CloserConfig struct {
	// Interval between two rounds (--closed-revision-interval, 200 ms): how
	// far an idle range's closed revision lags, hence how long a
	// serializable read on a follower may wait for a write it must show.
	Interval time.Duration
	// Replicas lists this node's replicas.
	Replicas func() []*shard.Replica
	// Registerer receives the closer's metrics (nil: none).
	Registerer prometheus.Registerer
}

// DefaultCloserConfig returns the defaults.
func DefaultCloserConfig() CloserConfig { return CloserConfig{Interval: 200 * time.Millisecond} }

// Validate checks the configuration.
func (c CloserConfig) Validate() error {
	switch {
	case c.Interval <= 0:
		return fmt.Errorf("router: closed-revision interval %v must be positive", c.Interval)
	case c.Replicas == nil:
		return errors.New("router: closer without replicas")
	}
	return nil
}

// Closer runs the side channel on one node: every interval it proposes a
// closed revision for each idle range this node leads, to all followers in
// one RPC per peer node, and sends the promises a quorum accepted in a
// second RPC per peer node.
type Closer struct {
	r   *Router
	cfg CloserConfig

	rounds   prometheus.Counter
	promises prometheus.Counter

	// kick wakes the loop for a round on demand; mu guards the requests
	// waiting for the next round.
	kick chan struct{}
	mu   struct {
		sync.Mutex
		waiting []chan struct{}
		asked   map[uint64]bool // ranges waiting for an on-demand round
	}

	stop chan struct{}
	wg   sync.WaitGroup
}

var _ shard.CloseRequester = (*Closer)(nil)

// RequestClose implements shard.CloseRequester: a round starts at once (or
// after the one under way) and the channel is closed when it ended.
func (c *Closer) RequestClose(rangeID uint64) <-chan struct{} {
	ch := make(chan struct{})
	c.mu.Lock()
	c.mu.waiting = append(c.mu.waiting, ch)
	if c.mu.asked == nil {
		c.mu.asked = map[uint64]bool{}
	}
	c.mu.asked[rangeID] = true
	c.mu.Unlock()
	select {
	case c.kick <- struct{}{}:
	default:
	}
	return ch
}

// StartCloser starts the node's closer.
func (r *Router) StartCloser(cfg CloserConfig) (*Closer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := &Closer{
		r: r, cfg: cfg, stop: make(chan struct{}), kick: make(chan struct{}, 1),
		rounds: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tessera_closed_rounds_total",
			Help: "Closed-revision rounds this node ran as a leader.",
		}),
		promises: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tessera_closed_promises_confirmed_total",
			Help: "Closed revisions of ranges led here that a quorum confirmed.",
		}),
	}
	if cfg.Registerer != nil {
		for _, m := range []prometheus.Collector{c.rounds, c.promises} {
			if err := cfg.Registerer.Register(m); err != nil {
				return nil, fmt.Errorf("router: register closer metrics: %w", err)
			}
		}
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.loop()
	}()
	return c, nil
}

// Close stops the closer and waits for its round to end.
func (c *Closer) Close() {
	close(c.stop)
	c.wg.Wait()
}

func (c *Closer) loop() {
	t := time.NewTicker(c.cfg.Interval)
	defer t.Stop()
	all := false
	for {
		select {
		case <-c.stop:
			c.mu.Lock()
			for _, ch := range c.mu.waiting {
				close(ch)
			}
			c.mu.waiting = nil
			c.mu.Unlock()
			return
		case <-t.C:
			all = true
		case <-c.kick:
		}
		// Requests made before this point are served by this round (its
		// timestamp is fetched after them). A timer round closes every idle
		// range led here; an on-demand round only those that asked.
		c.mu.Lock()
		waiting, asked := c.mu.waiting, c.mu.asked
		c.mu.waiting, c.mu.asked = nil, nil
		c.mu.Unlock()
		if all {
			asked = nil
		}
		all = false
		ctx, cancel := context.WithTimeout(context.Background(), c.cfg.Interval)
		go func() {
			select {
			case <-c.stop:
				cancel()
			case <-ctx.Done():
			}
		}()
		c.round(ctx, asked)
		cancel()
		for _, ch := range waiting {
			close(ch)
		}
	}
}

// proposal is one range's promise waiting for its quorum.
type proposal struct {
	rep     *shard.Replica
	p       shard.ClosedPromise
	voters  []raftgroup.NodeID
	accepts int
}

// round runs one proposal round and its confirmation, for the ranges in
// only (nil: every range led here).
func (c *Closer) round(ctx context.Context, only map[uint64]bool) {
	var props map[uint64]*proposal
	for _, rep := range c.cfg.Replicas() {
		if only != nil && !only[rep.Descriptor().GetRangeId()] {
			continue
		}
		if !rep.IsLeader() {
			continue
		}
		if props == nil {
			props = map[uint64]*proposal{}
		}
		props[uint64(rep.Descriptor().GetRangeId())] = &proposal{rep: rep}
	}
	if len(props) == 0 {
		return
	}
	// One fresh timestamp, fetched after every write that finished before
	// this round: each range's promise is made at it.
	now, err := c.r.clock.Timestamps(ctx, 1)
	if err != nil {
		return
	}
	c.rounds.Inc()
	self := c.r.nodes.Self()
	perNode := map[raftgroup.NodeID][]*tesserapb.ClosedRevision{}
	for id, pr := range props {
		p, ok := pr.rep.ProposeClose(now)
		if !ok {
			delete(props, id)
			continue
		}
		pr.p = p
		for _, n := range shard.ReplicaNodes(pr.rep.Descriptor()) {
			pr.voters = append(pr.voters, raftgroup.NodeID(n))
			if raftgroup.NodeID(n) != self {
				perNode[raftgroup.NodeID(n)] = append(perNode[raftgroup.NodeID(n)], closedProto(id, p))
			} else {
				pr.accepts++
			}
		}
	}
	var mu sync.Mutex
	c.sendAll(ctx, perNode, func(_ raftgroup.NodeID, m []*tesserapb.ClosedRevision) *tesserapb.CloseRevisionsRequest {
		return &tesserapb.CloseRevisionsRequest{FromNode: uint64(self), Proposals: m}
	}, func(resp *tesserapb.CloseRevisionsResponse) {
		mu.Lock()
		defer mu.Unlock()
		for _, id := range resp.GetAccepted() {
			if pr := props[id]; pr != nil {
				pr.accepts++
			}
		}
	})
	confirmed := map[raftgroup.NodeID][]*tesserapb.ClosedRevision{}
	for id, pr := range props {
		// The leader's own acceptance: raft still leads in the term now
		// that the followers answered.
		if pr.accepts < len(pr.voters)/2+1 || !c.r.raftAgrees(id, self, pr.p.Term, true) {
			continue
		}
		c.promises.Inc()
		pr.rep.ApplyClose(pr.p)
		for _, n := range pr.voters {
			if n != self {
				confirmed[n] = append(confirmed[n], closedProto(id, pr.p))
			}
		}
	}
	c.sendAll(ctx, confirmed, func(_ raftgroup.NodeID, m []*tesserapb.ClosedRevision) *tesserapb.CloseRevisionsRequest {
		return &tesserapb.CloseRevisionsRequest{FromNode: uint64(self), Confirmed: m}
	}, nil)
}

// sendAll sends one request to each node in parallel and waits for all.
func (c *Closer) sendAll(ctx context.Context, perNode map[raftgroup.NodeID][]*tesserapb.ClosedRevision,
	build func(raftgroup.NodeID, []*tesserapb.ClosedRevision) *tesserapb.CloseRevisionsRequest,
	done func(*tesserapb.CloseRevisionsResponse)) {
	var wg sync.WaitGroup
	for n, m := range perNode {
		conn, err := c.r.nodes.Conn(n)
		if err != nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := tesserapb.NewInternalClient(conn).CloseRevisions(ctx, build(n, m))
			if err == nil && done != nil {
				done(resp)
			}
		}()
	}
	wg.Wait()
}

func closedProto(rangeID uint64, p shard.ClosedPromise) *tesserapb.ClosedRevision {
	return &tesserapb.ClosedRevision{RangeId: rangeID, Term: p.Term, Revision: int64(p.Rev), AppliedIndex: p.Index}
}

// CloseRevisions serves the side channel: it accepts proposals whose term
// and leader this node's replica agrees with, and records confirmed
// promises. A confirmed promise must name a revision the TSO issued.
func (s *Internal) CloseRevisions(ctx context.Context, req *tesserapb.CloseRevisionsRequest) (*tesserapb.CloseRevisionsResponse, error) {
	from := raftgroup.NodeID(req.GetFromNode())
	if from == 0 || from == s.r.nodes.Self() {
		return nil, invalidArg("closed revisions from node %d", req.GetFromNode())
	}
	var top engine.Revision
	for _, l := range [][]*tesserapb.ClosedRevision{req.GetProposals(), req.GetConfirmed()} {
		for _, m := range l {
			if m.GetRevision() <= 0 || m.GetTerm() == 0 {
				return nil, invalidArg("range %d: closed revision %d in term %d", m.GetRangeId(), m.GetRevision(), m.GetTerm())
			}
		}
	}
	// Accepting a proposal changes nothing; a confirmed promise does.
	for _, m := range req.GetConfirmed() {
		top = max(top, engine.Revision(m.GetRevision()))
	}
	if err := s.r.checkIssued(ctx, top); err != nil {
		return nil, toGRPCError(err)
	}
	resp := &tesserapb.CloseRevisionsResponse{}
	for _, m := range req.GetProposals() {
		if rep := s.r.replicas.Replica(m.GetRangeId()); rep != nil && rep.AcceptClose(from, promiseOf(m)) && s.r.raftAgrees(m.GetRangeId(), from, m.GetTerm(), false) {
			resp.Accepted = append(resp.Accepted, m.GetRangeId())
		}
	}
	for _, m := range req.GetConfirmed() {
		if rep := s.r.replicas.Replica(m.GetRangeId()); rep != nil {
			rep.ApplyClose(promiseOf(m))
		}
	}
	return resp, nil
}

// raftAgrees checks the raft group's own state, which the replica's view
// follows with a delay: this node is in term and leader leads it (this node
// itself when isLeader). A vote already cast in a later term makes it false.
// Without a raft host (tests of the router alone) the replica's view stands.
func (r *Router) raftAgrees(rangeID uint64, leader raftgroup.NodeID, term uint64, isLeader bool) bool {
	tr, ok := r.cfg.Raft.(termReader)
	if !ok {
		return true
	}
	st, err := tr.Term(raftgroup.GroupID(rangeID))
	return err == nil && st.Term == term && st.Leader == leader && st.IsLeader == isLeader
}

// termReader is the raft host's cheap term check.
type termReader interface {
	Term(id raftgroup.GroupID) (raftgroup.TermStatus, error)
}

var _ termReader = (*raftgroup.Host)(nil)

func promiseOf(m *tesserapb.ClosedRevision) shard.ClosedPromise {
	return shard.ClosedPromise{Term: m.GetTerm(), Rev: engine.Revision(m.GetRevision()), Index: m.GetAppliedIndex()}
}
