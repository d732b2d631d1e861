package placement

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tesseradb/tessera/engine"
	"github.com/tesseradb/tessera/proto/tesserapb"
	"github.com/tesseradb/tessera/raftgroup"
)

// TSOClient is a node's one client of the TSO. Concurrent requests are
// coalesced: while one call is out, new requests queue, and the next call
// asks for all of them at once. Every call starts after the requests it
// serves arrived, so a timestamp is always fresher than its request.
type TSOClient struct {
	local     *TSO // nil when this node holds no meta replica
	nodes     *Nodes
	metaNodes []raftgroup.NodeID
	metrics   *tsoClientMetrics

	// highest is the highest timestamp this client has handed out: every
	// revision at or below it was issued by the TSO (router/internal_validate.go).
	highest atomic.Int64

	mu struct {
		sync.Mutex
		pending  []*tsoWaiter
		fetching bool
		hint     raftgroup.NodeID
		last     raftgroup.NodeID // the last node found serving the TSO
	}
}

type tsoWaiter struct {
	n     int
	done  chan struct{}
	first engine.Revision
	err   error
}

// NewTSOClient returns the node's TSO client. local is the node's TSO if it
// holds a meta replica; metaNodes are the meta group's replicas.
func NewTSOClient(local *TSO, nodes *Nodes, metaNodes []raftgroup.NodeID) *TSOClient {
	return &TSOClient{local: local, nodes: nodes, metaNodes: metaNodes, metrics: newTSOClientMetrics()}
}

// tsoCallTimeout bounds one call to the TSO (which may wait for a leader).
const tsoCallTimeout = 3 * time.Second

// Timestamps implements shard.Clock.
func (c *TSOClient) Timestamps(ctx context.Context, n int) (engine.Revision, error) {
	w := &tsoWaiter{n: n, done: make(chan struct{})}
	c.mu.Lock()
	c.mu.pending = append(c.mu.pending, w)
	lead := !c.mu.fetching
	c.mu.fetching = true
	c.mu.Unlock()
	if lead {
		c.fetchLoop()
	}
	select {
	case <-w.done:
		if w.err == nil {
			c.observe(w.first + engine.Revision(n) - 1)
		}
		return w.first, w.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// observe raises the highest timestamp handed out to rev.
func (c *TSOClient) observe(rev engine.Revision) {
	for {
		cur := c.highest.Load()
		if int64(rev) <= cur || c.highest.CompareAndSwap(cur, int64(rev)) {
			return
		}
	}
}

// Highest returns the highest timestamp this client has handed out (0 before
// the first): the TSO has issued every revision at or below it.
func (c *TSOClient) Highest() engine.Revision { return engine.Revision(c.highest.Load()) }

func (c *TSOClient) fetchLoop() {
	for {
		c.mu.Lock()
		batch := c.mu.pending
		c.mu.pending = nil
		if len(batch) == 0 {
			c.mu.fetching = false
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
		total := 0
		for _, w := range batch {
			total += w.n
		}
		ctx, cancel := context.WithTimeout(context.Background(), tsoCallTimeout)
		start := time.Now()
		first, err := c.fetch(ctx, total)
		cancel()
		c.metrics.calls.Inc()
		c.metrics.duration.Observe(time.Since(start).Seconds())
		c.metrics.batchRequests.Observe(float64(len(batch)))
		c.metrics.batchStamps.Observe(float64(total))
		if err != nil {
			c.metrics.errors.Inc()
		}
		next := first
		for _, w := range batch {
			w.first, w.err = next, err
			next += engine.Revision(w.n)
			close(w.done)
		}
	}
}

// fetch gets n timestamps from the meta leader, following leader hints and
// retrying until ctx ends.
func (c *TSOClient) fetch(ctx context.Context, n int) (engine.Revision, error) {
	var lastErr error
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			c.metrics.retries.Inc()
			select {
			case <-ctx.Done():
				return 0, fmt.Errorf("placement: TSO: %w (last error: %v)", ctx.Err(), lastErr)
			case <-time.After(min(time.Duration(attempt)*10*time.Millisecond, 200*time.Millisecond)):
			}
		}
		target := c.target(attempt)
		if target == c.nodes.Self() && c.local != nil {
			first, err := c.local.Allocate(ctx, n)
			var nl *ErrTSONotLeader
			if errors.As(err, &nl) {
				c.setHint(nl.Leader)
				lastErr = err
				continue
			}
			if err == nil {
				c.noteServer(target)
			}
			return first, err
		}
		conn, err := c.nodes.Conn(target)
		if err != nil {
			lastErr = err
			continue
		}
		resp, err := tesserapb.NewInternalClient(conn).Tso(ctx, &tesserapb.TsoRequest{Count: uint32(n)})
		if err != nil {
			lastErr = err
			c.setHint(0)
			continue
		}
		if resp.GetCount() == 0 {
			c.setHint(raftgroup.NodeID(resp.GetLeaderHint()))
			lastErr = fmt.Errorf("placement: %s does not serve the TSO", target)
			continue
		}
		c.setHint(target)
		c.noteServer(target)
		return engine.Revision(resp.GetFirst()), nil
	}
}

func (c *TSOClient) setHint(id raftgroup.NodeID) {
	c.mu.Lock()
	c.mu.hint = id
	c.mu.Unlock()
}

// noteServer records the node that served a call, counting changes.
func (c *TSOClient) noteServer(id raftgroup.NodeID) {
	c.mu.Lock()
	if c.mu.last != 0 && id != c.mu.last {
		c.metrics.leaderChanges.Inc()
	}
	c.mu.last = id
	c.mu.Unlock()
}

// target is the hinted leader, else the meta replicas in turn.
func (c *TSOClient) target(attempt int) raftgroup.NodeID {
	c.mu.Lock()
	hint := c.mu.hint
	c.mu.Unlock()
	if hint != 0 {
		return hint
	}
	if c.local != nil {
		if ok, l := c.local.Serving(); ok {
			return c.nodes.Self()
		} else if l != 0 {
			return l
		}
	}
	return c.metaNodes[attempt%len(c.metaNodes)]
}
