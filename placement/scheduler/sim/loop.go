package sim

import (
	"container/heap"
	"math"
	"time"

	"github.com/tesseradb/tessera/placement/scheduler"
)

// phaseRun applies change at the start of a phase and runs scheduler rounds
// and operations until the cluster converged or MaxPhaseTime passed.
func (c *cluster) phaseRun(name string, change func()) Phase {
	p := Phase{Name: name, Ops: map[scheduler.OpKind]int{}}
	c.phase = &p
	start := c.now
	if change != nil {
		change()
	}
	nextRound, nextSample := c.now, c.now
	for {
		// Events at or before the next round: operations ending, nodes
		// declared dead.
		for len(c.run) > 0 && c.run[0].end <= nextRound {
			r := heap.Pop(&c.run).(*running)
			c.now = r.end
			c.finish(r.op)
			c.admit()
		}
		c.now = nextRound
		c.declareDead()
		if c.now >= nextSample {
			p.Samples = append(p.Samples, c.sample(c.now-start))
			nextSample += c.cfg.SampleEvery
		}
		if c.converged() {
			p.Converged = true
			break
		}
		if c.now-start >= c.cfg.MaxPhaseTime || c.ctx.Err() != nil {
			break
		}
		if planned := c.round(); !planned && len(c.run) == 0 && len(c.queue) == 0 && len(c.deadAt) == 0 {
			break // stuck: the scheduler sees nothing to do, the goals do not hold
		}
		c.admit()
		nextRound += c.cfg.RoundInterval
	}
	p.Time = c.now - start
	last := c.sample(p.Time)
	if n := len(p.Samples); n == 0 || p.Samples[n-1].At != last.At {
		p.Samples = append(p.Samples, last)
	}
	return p
}

// declareDead turns suspect nodes whose timeout passed into dead ones.
func (c *cluster) declareDead() {
	kept := c.deadAt[:0]
	for _, d := range c.deadAt {
		if d.at <= c.now {
			c.snap.Nodes[c.node[d.node]].Liveness = scheduler.Dead
			continue
		}
		kept = append(kept, d)
	}
	c.deadAt = kept
}

// round runs the scheduler once and queues what it returns, unless the
// queue already holds a round's worth (the meta leader's loop does not plan
// while the executor has that much waiting).
// It reports whether it planned anything (or skipped planning).
func (c *cluster) round() bool {
	if len(c.queue) >= c.cfg.Scheduler.MaxOpsPerRound {
		return true
	}
	c.snap.InFlight = c.snap.InFlight[:0]
	for _, r := range c.run {
		c.snap.InFlight = append(c.snap.InFlight, r.op)
	}
	c.snap.InFlight = append(c.snap.InFlight, c.queue...)
	ops := scheduler.Schedule(c.cfg.Scheduler, &c.snap)
	for _, op := range ops {
		if c.busy[op.Range] || len(c.queue) >= c.cfg.MaxQueued {
			continue
		}
		c.busy[op.Range] = true
		c.queue = append(c.queue, op)
		c.phase.Ops[op.Kind]++
	}
	return len(ops) > 0
}

// charged are the nodes whose move limit an operation uses (the
// executor's rule).
func charged(op scheduler.Operation) []scheduler.NodeID {
	switch {
	case op.Kind != scheduler.OpAddVoter && op.Kind != scheduler.OpMove:
		return nil
	case op.Kind == scheduler.OpMove && op.Reason != scheduler.ReasonDead:
		return []scheduler.NodeID{op.To, op.From}
	}
	return []scheduler.NodeID{op.To}
}

// admit starts queued operations, in order, that fit the limits.
func (c *cluster) admit() {
	kept := c.queue[:0]
	for _, op := range c.queue {
		ok := len(c.run) < c.cfg.MaxRunning
		for _, n := range charged(op) {
			ok = ok && c.moves[n] < c.cfg.Scheduler.Limits.MaxMovesPerNode
		}
		if !ok {
			kept = append(kept, op)
			continue
		}
		for _, n := range charged(op) {
			c.moves[n]++
		}
		heap.Push(&c.run, &running{op: op, end: c.duration(op)})
	}
	clear(c.queue[len(kept):])
	c.queue = kept
}

// duration returns when op, starting now, ends: conf changes at a fixed
// cost, the snapshot streamed at the rate once both the sender (the
// leader, after any transfer) and the receiver are free.
func (c *cluster) duration(op scheduler.Operation) time.Duration {
	r := &c.snap.Ranges[op.Range-1]
	t := c.now
	leader := r.Leader
	for _, st := range op.Steps() {
		switch st.Kind {
		case scheduler.StepAddLearner:
			begin := max(t, c.sendFree[leader], c.recvFree[st.Node])
			t = begin + time.Duration(float64(op.Bytes)/float64(c.cfg.Scheduler.Limits.SnapshotRate)*float64(time.Second))
			c.sendFree[leader], c.recvFree[st.Node] = t, t
			t += c.cfg.ConfChangeCost
		case scheduler.StepTransferLeader:
			leader = st.Node
			t += c.cfg.ConfChangeCost
		default:
			t += c.cfg.ConfChangeCost
		}
	}
	return t
}

// finish applies a finished operation to the model. It fails (changes
// nothing) when a node it needs is no longer live.
func (c *cluster) finish(op scheduler.Operation) {
	for _, n := range charged(op) {
		c.moves[n]--
	}
	delete(c.busy, op.Range)
	live := func(n scheduler.NodeID) bool {
		return n == 0 || c.snap.Nodes[c.node[n]].Liveness == scheduler.Live
	}
	r := &c.snap.Ranges[op.Range-1]
	if (op.Kind != scheduler.OpRemove && !live(op.To)) || !live(op.LeaderTo) {
		return
	}
	c.phase.Bytes += op.Bytes // set only on operations that send a snapshot
	if err := r.Apply(op); err != nil && c.broken == "" {
		c.broken = err.Error()
	}
	if r.Leader == 0 {
		for _, rep := range r.Replicas {
			if rep.Type == scheduler.Voter && live(rep.Node) {
				r.Leader = rep.Node
				break
			}
		}
	}
	seen := map[scheduler.NodeID]bool{}
	for _, rep := range r.Replicas {
		if seen[rep.Node] && c.broken == "" {
			c.broken = "two replicas of one range on a node after " + op.String()
		}
		seen[rep.Node] = true
	}
}

// hotQPS is the load from which the model's ranges count as hot (the
// generator gives hot ranges 100-5,000 QPS and the others 0-10).
const hotQPS = 100

// stats computes the per-live-node figures.
type stats struct {
	count, leaders, hotLeaders []int
	bytes                      []int64
	misplaced, hot             int
}

func (c *cluster) stats() stats {
	n := len(c.snap.Nodes)
	s := stats{count: make([]int, n), leaders: make([]int, n), hotLeaders: make([]int, n), bytes: make([]int64, n)}
	liveN := 0
	for _, nd := range c.snap.Nodes {
		if nd.Liveness == scheduler.Live {
			liveN++
		}
	}
	for i := range c.snap.Ranges {
		r := &c.snap.Ranges[i]
		want := c.cfg.Scheduler.Replicas
		if r.Meta && liveN >= c.cfg.Scheduler.MetaReplicas {
			want = c.cfg.Scheduler.MetaReplicas
		}
		good, bad := 0, false
		for _, rep := range r.Replicas {
			j := c.node[rep.Node]
			s.count[j]++
			s.bytes[j] += r.SizeBytes
			l := c.snap.Nodes[j].Liveness
			if rep.Type == scheduler.Learner || l == scheduler.Dead || l == scheduler.Removed {
				bad = true
			} else if l == scheduler.Live {
				good++
			}
		}
		if r.Leader != 0 {
			s.leaders[c.node[r.Leader]]++
		}
		if r.QPS >= hotQPS {
			s.hot++
			if r.Leader != 0 {
				s.hotLeaders[c.node[r.Leader]]++
			}
		}
		if bad || good != want {
			s.misplaced++
		}
	}
	return s
}

// dev returns the largest distance of a live node's figure from the mean
// of the live nodes, as a fraction of the mean, and the extremes.
func (c *cluster) dev(v func(j int) float64) (d, lo, hi float64) {
	var sum float64
	var n int
	lo, hi = math.Inf(1), math.Inf(-1)
	for j, nd := range c.snap.Nodes {
		if nd.Liveness != scheduler.Live {
			continue
		}
		x := v(j)
		sum += x
		n++
		lo, hi = min(lo, x), max(hi, x)
	}
	if n == 0 || sum == 0 {
		return 0, 0, 0
	}
	mean := sum / float64(n)
	return max(hi-mean, mean-lo) / mean, lo, hi
}

func (c *cluster) sample(at time.Duration) Sample {
	s := c.stats()
	out := Sample{At: at, Ops: c.phase.TotalOps(), Misplaced: s.misplaced}
	live := 0
	for j, nd := range c.snap.Nodes {
		if nd.Liveness == scheduler.Live {
			live++
			out.MaxHotLeaders = max(out.MaxHotLeaders, s.hotLeaders[j])
		}
	}
	if live > 0 {
		out.HotShare = (s.hot + live - 1) / live
	}
	var lo, hi float64
	out.CountDev, lo, hi = c.dev(func(j int) float64 { return float64(s.count[j]) })
	out.MinCount, out.MaxCount = int(lo), int(hi)
	out.BytesDev, _, _ = c.dev(func(j int) float64 { return float64(s.bytes[j]) })
	out.LeadersDev, _, _ = c.dev(func(j int) float64 { return float64(s.leaders[j]) })
	return out
}

// converged reports whether the phase's goals hold and nothing is in flight:
// every range placed, and every live node's replicas, bytes and leaders in
// the scheduler's band around the mean (±Tolerance of it, but at least
// MinSlack replicas, leaders or mean range sizes).
func (c *cluster) converged() bool {
	if len(c.run) > 0 || len(c.queue) > 0 || len(c.deadAt) > 0 {
		return false
	}
	s := c.stats()
	if s.misplaced != 0 {
		return false
	}
	var total int64
	for i := range c.snap.Ranges {
		total += c.snap.Ranges[i].SizeBytes
	}
	meanSize := float64(total) / float64(len(c.snap.Ranges))
	return c.within(func(j int) float64 { return float64(s.count[j]) }, 1) &&
		c.within(func(j int) float64 { return float64(s.bytes[j]) }, meanSize) &&
		c.within(func(j int) float64 { return float64(s.leaders[j]) }, 1)
}

// within reports whether every live node's figure v is in the band around
// the live nodes' mean, unit being the figure's unit of movement.
func (c *cluster) within(v func(j int) float64, unit float64) bool {
	var sum float64
	var n int
	for j, nd := range c.snap.Nodes {
		if nd.Liveness == scheduler.Live {
			sum += v(j)
			n++
		}
	}
	if n == 0 {
		return true
	}
	mean := sum / float64(n)
	d := max(mean*c.cfg.Scheduler.Tolerance, c.cfg.Scheduler.MinSlack*unit)
	d += 1e-9 * max(mean, 1) // the mean's rounding must not decide
	for j, nd := range c.snap.Nodes {
		if nd.Liveness == scheduler.Live && math.Abs(v(j)-mean) > d {
			return false
		}
	}
	return true
}
