package scheduler

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/cockroachdb/datadriven"
)

// TestSchedule runs the scripts in testdata. Commands:
//
//	nodes                  one node per input line: "ID LIVENESS [cap=SIZE]"
//	node ID LIVENESS       changes a node's liveness
//	ranges                 one range per input line:
//	                       "ID voters=1,2,3 [learners=4] [leader=1] [size=SIZE] [qps=Q] [meta]"
//	gen-ranges first=ID count=N nodes=1,2,3 [replicas=3] [size=SIZE] [qps=Q]
//	                       N ranges with replicas round-robin over the nodes,
//	                       each led by its first voter
//	inflight               operations in flight, one per line:
//	                       "KIND range=ID [from=N] [to=N] [leader-to=N]"
//	schedule [config]      prints the operations of one round
//	run [rounds=N] [config] applies rounds (every operation completes) until
//	                       a round plans nothing; prints each round's
//	                       operations by reason and the stats
//	stats [config]         replicas, bytes, leaders and hot leaders per node
//	reset                  forgets nodes, ranges and operations in flight
//
// config: max-ops=N moves-per-node=N (the executor's limit and the
// planner's) planned-per-node=N tolerance=F replicas=N meta-replicas=N
// hot-ratio=F.
func TestSchedule(t *testing.T) {
	datadriven.Walk(t, "testdata", func(t *testing.T, path string) {
		var snap Snapshot
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			out, err := runCmd(&snap, d)
			if err != nil {
				return "error: " + err.Error() + "\n"
			}
			return out
		})
	})
}

func runCmd(snap *Snapshot, d *datadriven.TestData) (string, error) {
	switch d.Cmd {
	case "nodes":
		snap.Nodes = nil
		for _, line := range lines(d.Input) {
			f := strings.Fields(line)
			if len(f) < 2 {
				return "", fmt.Errorf("node line %q: want ID LIVENESS", line)
			}
			id, err := strconv.ParseUint(f[0], 10, 64)
			if err != nil {
				return "", err
			}
			l, err := ParseLiveness(f[1])
			if err != nil {
				return "", err
			}
			n := Node{ID: NodeID(id), Liveness: l}
			for _, kv := range f[2:] {
				k, v, _ := strings.Cut(kv, "=")
				if k != "cap" {
					return "", fmt.Errorf("node line %q: unknown %q", line, k)
				}
				if n.CapacityBytes, err = parseSize(v); err != nil {
					return "", err
				}
			}
			snap.Nodes = append(snap.Nodes, n)
		}
		return "ok\n", nil
	case "node":
		if len(d.CmdArgs) != 2 {
			return "", fmt.Errorf("node ID LIVENESS")
		}
		id, err := strconv.ParseUint(d.CmdArgs[0].Key, 10, 64)
		if err != nil {
			return "", err
		}
		l, err := ParseLiveness(d.CmdArgs[1].Key)
		if err != nil {
			return "", err
		}
		for i := range snap.Nodes {
			if snap.Nodes[i].ID == NodeID(id) {
				snap.Nodes[i].Liveness = l
				return "ok\n", nil
			}
		}
		snap.Nodes = append(snap.Nodes, Node{ID: NodeID(id), Liveness: l})
		return "ok\n", nil
	case "ranges":
		for _, line := range lines(d.Input) {
			r, err := parseRange(line)
			if err != nil {
				return "", err
			}
			snap.Ranges = append(snap.Ranges, r)
		}
		return "ok\n", nil
	case "gen-ranges":
		a := args(d)
		first, count := a.int("first", 2), a.int("count", 1)
		reps := a.int("replicas", 3)
		nodes, err := parseIDs(a.str("nodes", ""))
		if err != nil || len(nodes) == 0 {
			return "", fmt.Errorf("gen-ranges needs nodes=1,2,…: %v", err)
		}
		size, err := parseSize(a.str("size", "0"))
		if err != nil {
			return "", err
		}
		qps, _ := strconv.ParseFloat(a.str("qps", "0"), 64)
		for i := 0; i < count; i++ {
			r := Range{ID: RangeID(first + i), Generation: 1, SizeBytes: size, QPS: qps}
			for k := 0; k < reps; k++ {
				r.Replicas = append(r.Replicas, Replica{Node: nodes[(i+k)%len(nodes)], ID: ReplicaID(k + 1)})
			}
			r.Leader = r.Replicas[0].Node
			snap.Ranges = append(snap.Ranges, r)
		}
		return "ok\n", nil
	case "inflight":
		snap.InFlight = nil
		for _, line := range lines(d.Input) {
			op, err := parseOp(line)
			if err != nil {
				return "", err
			}
			snap.InFlight = append(snap.InFlight, op)
		}
		return "ok\n", nil
	case "schedule":
		cfg, err := config(d)
		if err != nil {
			return "", err
		}
		var b strings.Builder
		ops := Schedule(cfg, snap)
		if len(ops) == 0 {
			return "no operations\n", nil
		}
		for _, op := range ops {
			fmt.Fprintln(&b, op)
		}
		again := Schedule(cfg, snap)
		if !slices.Equal(ops, again) {
			return "", fmt.Errorf("not deterministic: %v then %v", ops, again)
		}
		return b.String(), nil
	case "run":
		cfg, err := config(d)
		if err != nil {
			return "", err
		}
		rounds := args(d).int("rounds", 100)
		var b strings.Builder
		for round := 1; round <= rounds; round++ {
			ops := Schedule(cfg, snap)
			if len(ops) == 0 {
				fmt.Fprintf(&b, "round %d: no operations\n", round)
				break
			}
			byReason := map[Reason]int{}
			for _, op := range ops {
				byReason[op.Reason]++
				i := slices.IndexFunc(snap.Ranges, func(r Range) bool { return r.ID == op.Range })
				if err := snap.Ranges[i].Apply(op); err != nil {
					return "", err
				}
			}
			var parts []string
			for r := ReasonInterrupted; r <= ReasonHot; r++ {
				if byReason[r] > 0 {
					parts = append(parts, fmt.Sprintf("%s=%d", r, byReason[r]))
				}
			}
			fmt.Fprintf(&b, "round %d: %d operations (%s)\n", round, len(ops), strings.Join(parts, " "))
		}
		b.WriteString(stats(cfg, snap))
		if err := checkInvariants(cfg, snap); err != nil {
			return "", err
		}
		return b.String(), nil
	case "stats":
		cfg, err := config(d)
		if err != nil {
			return "", err
		}
		return stats(cfg, snap), nil
	case "reset":
		*snap = Snapshot{}
		return "ok\n", nil
	}
	return "", fmt.Errorf("unknown command %q", d.Cmd)
}

// checkInvariants checks what every round must keep: replicas of a range on
// distinct nodes.
func checkInvariants(_ Config, snap *Snapshot) error {
	for _, r := range snap.Ranges {
		seen := map[NodeID]bool{}
		for _, rep := range r.Replicas {
			if seen[rep.Node] {
				return fmt.Errorf("r%d has two replicas on %s", uint64(r.ID), rep.Node)
			}
			seen[rep.Node] = true
		}
	}
	return nil
}

func stats(cfg Config, snap *Snapshot) string {
	p := newPlanner(cfg, snap)
	var b strings.Builder
	for j, n := range p.nodes {
		fmt.Fprintf(&b, "%s %-8s replicas=%d bytes=%s leaders=%d hot-leaders=%d\n",
			n.ID, n.Liveness, p.count[j], fmtSize(p.bytes[j]), p.leaders[j], p.hotLeader[j])
	}
	under := 0
	for i := range snap.Ranges {
		r := &snap.Ranges[i]
		if p.healthyVoters(r) < p.want(r) {
			under++
		}
	}
	fmt.Fprintf(&b, "under-replicated ranges: %d\n", under)
	return b.String()
}

type kvArgs map[string]string

func args(d *datadriven.TestData) kvArgs {
	a := kvArgs{}
	for _, arg := range d.CmdArgs {
		a[arg.Key] = strings.Join(arg.Vals, ",")
	}
	return a
}

func (a kvArgs) str(k, def string) string {
	if v, ok := a[k]; ok {
		return v
	}
	return def
}

func (a kvArgs) int(k string, def int) int {
	if v, ok := a[k]; ok {
		n, err := strconv.Atoi(v)
		if err == nil {
			return n
		}
	}
	return def
}

func config(d *datadriven.TestData) (Config, error) {
	cfg := DefaultConfig()
	a := args(d)
	for k, v := range a {
		var err error
		switch k {
		case "max-ops":
			cfg.MaxOpsPerRound, err = strconv.Atoi(v)
		case "moves-per-node":
			cfg.Limits.MaxMovesPerNode, err = strconv.Atoi(v)
			cfg.MaxPlannedPerNode = cfg.Limits.MaxMovesPerNode
		case "planned-per-node": // after the loop: moves-per-node sets it too
		case "tolerance":
			cfg.Tolerance, err = strconv.ParseFloat(v, 64)
		case "replicas":
			cfg.Replicas, err = strconv.Atoi(v)
		case "meta-replicas":
			cfg.MetaReplicas, err = strconv.Atoi(v)
		case "hot-ratio":
			cfg.HotQPSRatio, err = strconv.ParseFloat(v, 64)
		case "rounds":
		default:
			return cfg, fmt.Errorf("unknown argument %q", k)
		}
		if err != nil {
			return cfg, err
		}
	}
	if v, ok := a["planned-per-node"]; ok {
		var err error
		if cfg.MaxPlannedPerNode, err = strconv.Atoi(v); err != nil {
			return cfg, err
		}
	}
	return cfg, cfg.Validate()
}

func lines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return out
}

func parseIDs(s string) ([]NodeID, error) {
	var out []NodeID
	for _, f := range strings.Split(s, ",") {
		if f == "" {
			continue
		}
		n, err := strconv.ParseUint(f, 10, 64)
		if err != nil {
			return nil, err
		}
		out = append(out, NodeID(n))
	}
	return out, nil
}

func parseRange(line string) (Range, error) {
	f := strings.Fields(line)
	id, err := strconv.ParseUint(f[0], 10, 64)
	if err != nil {
		return Range{}, fmt.Errorf("range line %q: %w", line, err)
	}
	r := Range{ID: RangeID(id), Generation: 1}
	rid := ReplicaID(0)
	for _, kv := range f[1:] {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "voters", "learners":
			ids, err := parseIDs(v)
			if err != nil {
				return r, err
			}
			typ := Voter
			if k == "learners" {
				typ = Learner
			}
			for _, n := range ids {
				rid++
				r.Replicas = append(r.Replicas, Replica{Node: n, ID: rid, Type: typ})
			}
		case "leader":
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				return r, err
			}
			r.Leader = NodeID(n)
		case "size":
			if r.SizeBytes, err = parseSize(v); err != nil {
				return r, err
			}
		case "qps":
			if r.QPS, err = strconv.ParseFloat(v, 64); err != nil {
				return r, err
			}
		case "meta":
			r.Meta = true
		default:
			return r, fmt.Errorf("range line %q: unknown %q", line, k)
		}
	}
	return r, nil
}

func parseOp(line string) (Operation, error) {
	f := strings.Fields(line)
	var op Operation
	k := slices.Index(opKindNames[:], f[0])
	if k < 0 {
		return op, fmt.Errorf("unknown operation %q", f[0])
	}
	op.Kind = OpKind(k)
	for _, kv := range f[1:] {
		key, v, _ := strings.Cut(kv, "=")
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return op, fmt.Errorf("operation line %q: %w", line, err)
		}
		switch key {
		case "range":
			op.Range = RangeID(n)
		case "from":
			op.From = NodeID(n)
		case "to":
			op.To = NodeID(n)
		case "leader-to":
			op.LeaderTo = NodeID(n)
		default:
			return op, fmt.Errorf("operation line %q: unknown %q", line, key)
		}
	}
	return op, nil
}

func parseSize(s string) (int64, error) {
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		m      int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSuffix(s, u.suffix), u.m
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("size %q: %w", s, err)
	}
	return n * mult, nil
}

func fmtSize(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return strconv.FormatInt(n>>30, 10) + "GiB"
	case n >= 1<<20 && n%(1<<20) == 0:
		return strconv.FormatInt(n>>20, 10) + "MiB"
	}
	return strconv.FormatInt(n, 10)
}
