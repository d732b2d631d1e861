package placement

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tesseradb/tessera/engine"
	"github.com/tesseradb/tessera/internal/backoff"
	"github.com/tesseradb/tessera/internal/coalesce"
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

	// batches coalesces waiting requests into one TSO call per batch.
	batches *coalesce.Batcher[*tsoWaiter]

	mu struct {
		sync.Mutex
		hint raftgroup.NodeID
		last raftgroup.NodeID // the last node found serving the TSO
		// floors are the newest points at which this node's router knew
		// the cluster's latest write, ascending, at most maxFloors
		// (tso_read.go).
		floors []LatestWrite
	}
}

type tsoWaiter struct {
	n       int
	rangeID uint64          // the range whose writes the timestamps go to (0: none)
	read    bool            // a read that wants the writers since the floor
	below   engine.Revision // a read that wants a floor at or below this (0: the newest)
	done    chan struct{}
	first   engine.Revision
	err     error
	// For a read: the floor the batch asked from and what the TSO answered.
	floor    LatestWrite
	writers  []TSOWriter
	complete bool
}

// NewTSOClient returns the node's TSO client. local is the node's TSO if it
// holds a meta replica; metaNodes are the meta group's replicas.
func NewTSOClient(local *TSO, nodes *Nodes, metaNodes []raftgroup.NodeID) *TSOClient {
	c := &TSOClient{local: local, nodes: nodes, metaNodes: metaNodes, metrics: newTSOClientMetrics()}
	c.batches = coalesce.NewDefault(c.fetchBatch)
	return c
}

// Close waits for the client's hand-off goroutine, if one runs; requests
// still waiting end with their callers' contexts.
func (c *TSOClient) Close() { c.batches.Close() }

// tsoCallTimeout bounds one call to the TSO (which may wait for a leader).
const tsoCallTimeout = 3 * time.Second

// tsoRetry paces the attempts of one call while the TSO leader is unknown
// or moving: 10 ms (a hint to follow is usually right at once) up to 200 ms
// (a fraction of an election).
var tsoRetry = backoff.Config{Min: 10 * time.Millisecond, Max: 200 * time.Millisecond}

// Timestamps implements shard.Clock.
func (c *TSOClient) Timestamps(ctx context.Context, n int) (engine.Revision, error) {
	return c.timestamps(ctx, &tsoWaiter{n: n, done: make(chan struct{})})
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

// fetchBatch gets the timestamps of one batch of requests in one call.
func (c *TSOClient) fetchBatch(batch []*tsoWaiter) {
	total := 0
	for _, w := range batch {
		total += w.n
	}
	parts, since := c.batchParts(batch)
	ctx, cancel := context.WithTimeout(context.Background(), tsoCallTimeout)
	start := time.Now()
	first, writers, complete, err := c.fetch(ctx, total, parts, since)
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
		if w.read && err == nil {
			w.complete = complete && w.floor.At > 0
			for _, wr := range writers {
				if wr.Lowest <= next {
					w.writers = append(w.writers, wr)
				}
			}
		}
		next += engine.Revision(w.n)
		close(w.done)
	}
}

// fetch gets n timestamps from the meta leader, following leader hints and
// retrying until ctx ends.
func (c *TSOClient) fetch(ctx context.Context, n int, parts []TSOPart, since engine.Revision) (engine.Revision, []TSOWriter, bool, error) {
	var lastErr error
	retry := backoff.New(tsoRetry)
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			c.metrics.retries.Inc()
			if err := retry.Wait(ctx); err != nil {
				return 0, nil, false, fmt.Errorf("placement: TSO: %w (last error: %v)", err, lastErr)
			}
		}
		target := c.target(attempt)
		if target == c.nodes.Self() && c.local != nil {
			first, writers, complete, err := c.local.AllocateFor(ctx, n, parts, since)
			var nl *ErrTSONotLeader
			if errors.As(err, &nl) {
				c.setHint(nl.Leader)
				lastErr = err
				continue
			}
			if err == nil {
				c.noteServer(target)
			}
			return first, writers, complete, err
		}
		conn, err := c.nodes.Conn(target)
		if err != nil {
			lastErr = err
			continue
		}
		resp, err := tesserapb.NewInternalClient(conn).Tso(ctx, tsoRequest(n, parts, since))
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
		writers := make([]TSOWriter, 0, len(resp.GetWriters()))
		for _, w := range resp.GetWriters() {
			writers = append(writers, TSOWriter{RangeID: w.GetRangeId(), Lowest: engine.Revision(w.GetLowest())})
		}
		return engine.Revision(resp.GetFirst()), writers, resp.GetWritersComplete(), nil
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
