package robustness

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"syscall"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tesseradb/tessera/proto/tesserapb"
)

// fault is one kind of failure injected during the traffic.
type fault struct {
	name string
	// inject injects the fault once and recovers from it (the node is
	// running and healthy again when it returns nil). i counts the
	// injections: even ones hit the meta group's leader.
	inject func(ctx context.Context, c *cluster, rng *rand.Rand, i int) error
	// pause is the time between injections.
	pause time.Duration
}

// errUnsupported means the cluster lacks what the fault needs (an RPC not
// implemented yet): the scenario is skipped.
var errUnsupported = errors.New("not supported by this tessera")

var faults = []fault{
	{name: "kill", inject: killRestart, pause: time.Second},
	{name: "stop", inject: stopContinue, pause: time.Second},
	{name: "partition", inject: partition, pause: time.Second},
	{name: "transfer-leader", inject: transferLeader, pause: 300 * time.Millisecond},
	{name: "reshape", inject: reshape, pause: time.Second}, // reshape_test.go
}

// target picks the node to fault: the meta group's leader on even
// injections (when known), a random node otherwise.
func target(c *cluster, rng *rand.Rand, i int) *node {
	if i%2 == 0 {
		if nd := c.metaLeader(); nd != nil {
			return nd
		}
	}
	return c.nodes[rng.IntN(len(c.nodes))]
}

// hold waits d, or less if ctx ends: the length of an outage, not a wait
// for a condition.
func hold(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// awaitHealthy polls nd's /health.
func (c *cluster) awaitHealthy(nd *node) error {
	err := poll(time.Now().Add(startTimeout), func() error {
		if err := nd.exited(); err != nil {
			return err
		}
		return nd.health()
	})
	if err != nil {
		return fmt.Errorf("%s not healthy after %v: %w", nd.name, startTimeout, err)
	}
	return nil
}

func killRestart(ctx context.Context, c *cluster, rng *rand.Rand, i int) error {
	nd := target(c, rng, i)
	c.log.Info("fault: SIGKILL", "node", nd.name)
	if err := c.kill(nd); err != nil {
		return err
	}
	hold(ctx, time.Duration(500+rng.IntN(1500))*time.Millisecond)
	if err := c.start(nd); err != nil {
		return err
	}
	return c.awaitHealthy(nd)
}

func stopContinue(ctx context.Context, c *cluster, rng *rand.Rand, i int) error {
	nd := target(c, rng, i)
	c.log.Info("fault: SIGSTOP", "node", nd.name)
	c.signal(nd, syscall.SIGSTOP)
	hold(ctx, time.Duration(1000+rng.IntN(2000))*time.Millisecond)
	c.log.Info("fault: SIGCONT", "node", nd.name)
	c.signal(nd, syscall.SIGCONT)
	return c.awaitHealthy(nd)
}

func partition(ctx context.Context, c *cluster, rng *rand.Rand, i int) error {
	nd := target(c, rng, i)
	c.log.Info("fault: partition", "node", nd.name)
	c.net.Isolate(nd.idx)
	hold(ctx, time.Duration(1500+rng.IntN(2500))*time.Millisecond)
	c.net.Heal()
	return c.awaitHealthy(nd)
}

// transferLeader moves the leadership of a random group (the meta group on
// even injections) to another of its replicas, through Internal.
// TransferLeader on the current leader, and waits until the target leads.
func transferLeader(ctx context.Context, c *cluster, rng *rand.Rand, i int) error {
	groups, err := c.leaders()
	if err != nil {
		return err
	}
	var ids []uint64
	for id, g := range groups {
		if g.leader != 0 && (i%2 != 0 || g.meta) {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return nil // elections in progress: next time
	}
	slices.Sort(ids)
	g := groups[ids[rng.IntN(len(ids))]]
	var others []uint64
	for _, r := range g.replicas {
		if r != g.leader {
			others = append(others, r)
		}
	}
	to := others[rng.IntN(len(others))]
	from := c.nodes[g.leader-1]
	ic, done, err := from.internal()
	if err != nil {
		return err
	}
	defer done()
	rctx, cancel := context.WithTimeout(ctx, rpcTimeout)
	defer cancel()
	c.log.Info("fault: transfer leader", "range", g.id, "from", g.leader, "to", to)
	resp, err := ic.TransferLeader(rctx, &tesserapb.TransferLeaderRequest{RangeId: g.id, TargetNode: to})
	switch {
	case status.Code(err) == codes.Unimplemented:
		return fmt.Errorf("Internal.TransferLeader: %w: %v", errUnsupported, err)
	case err != nil:
		// The leader may have changed meanwhile; not a failure of the store.
		c.log.Info("transfer leader refused", "range", g.id, "err", err)
		return nil
	case resp.GetRoutingError() != nil:
		c.log.Info("transfer leader: not the leader", "range", g.id, "routing", resp.GetRoutingError())
		return nil
	}
	// Wait for the handover so that injections do not pile up.
	err = poll(time.Now().Add(10*time.Second), func() error {
		gs, err := c.leaders()
		if err != nil {
			return err
		}
		if l := gs[g.id].leader; l != to {
			return fmt.Errorf("range %d led by %d, not %d", g.id, l, to)
		}
		return nil
	})
	if err != nil {
		c.log.Info("transfer leader did not complete", "err", err)
	}
	return nil
}
