package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/tesseradb/tessera/placement/scheduler"
	"github.com/tesseradb/tessera/placement/scheduler/sim"
)

func simulateCmd(o *options) *cobra.Command {
	cfg := sim.DefaultConfig()
	var meanSize, rate string
	c := &cobra.Command{
		Use:   "simulate",
		Short: "Run the placement scheduler against a model cluster (no processes) and print how it converges",
		Long: `simulate runs Tessera's placement scheduler (placement/scheduler) against a
model cluster: no processes, no Raft. An operation takes simulated time: its
snapshot at --snapshot-rate (one stream at a time per sending and per
receiving node) plus --conf-change-cost per conf change or leader transfer.

The run starts with --nodes nodes and --ranges ranges placed at random, adds
--add-nodes nodes, then kills --kill-nodes nodes for good (dead after
--dead-timeout). Each phase runs until every range has its voters on live
nodes and replica count, bytes and leaders per live node are within ±10% of
the mean, and prints the operations issued, the simulated time to converge
and the spread every --sample-every.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if cfg.MeanRangeBytes, err = parseBytes(meanSize); err != nil {
				return fmt.Errorf("--mean-range-size: %w", err)
			}
			if cfg.Scheduler.Limits.SnapshotRate, err = parseBytes(rate); err != nil {
				return fmt.Errorf("--snapshot-rate: %w", err)
			}
			start := time.Now()
			res, err := sim.Run(cmd.Context(), cfg)
			if res == nil {
				return err
			}
			if werr := o.write(&simReport{res: res, wall: time.Since(start)}); werr != nil {
				return werr
			}
			if err != nil {
				return fmt.Errorf("interrupted: %w", err)
			}
			if res.Invariant != "" {
				return fmt.Errorf("invariant broken: %s", res.Invariant)
			}
			return nil
		},
	}
	f := c.Flags()
	f.IntVar(&cfg.Nodes, "nodes", cfg.Nodes, "nodes of the initial cluster")
	f.IntVar(&cfg.Ranges, "ranges", cfg.Ranges, "ranges (the meta range is one of them)")
	f.IntVar(&cfg.AddNodes, "add-nodes", cfg.AddNodes, "nodes added once the initial cluster converged")
	f.IntVar(&cfg.KillNodes, "kill-nodes", cfg.KillNodes, "nodes killed for good once the added ones converged")
	f.Uint64Var(&cfg.Seed, "sim-seed", cfg.Seed, "seed of the model (placement, sizes, loads)")
	f.StringVar(&meanSize, "mean-range-size", "64MiB", "mean range size (exponential, capped at 8x)")
	f.Float64Var(&cfg.HotFraction, "hot-fraction", cfg.HotFraction, "fraction of ranges with 100-5000 QPS")
	f.StringVar(&rate, "snapshot-rate", "32MiB", "snapshot bandwidth per node and second (sending and receiving each)")
	f.IntVar(&cfg.Scheduler.Limits.MaxMovesPerNode, "moves-per-node", cfg.Scheduler.Limits.MaxMovesPerNode, "snapshot-sending operations per node at once")
	f.IntVar(&cfg.Scheduler.MaxOpsPerRound, "max-ops-per-round", cfg.Scheduler.MaxOpsPerRound, "operations one scheduler round returns at most")
	f.IntVar(&cfg.MaxRunning, "max-running", cfg.MaxRunning, "operations running at once in the cluster")
	f.Float64Var(&cfg.Scheduler.Tolerance, "tolerance", cfg.Scheduler.Tolerance, "balanced: within this fraction of the mean")
	f.DurationVar(&cfg.RoundInterval, "round-interval", cfg.RoundInterval, "time between scheduler rounds")
	f.DurationVar(&cfg.ConfChangeCost, "conf-change-cost", cfg.ConfChangeCost, "time of one conf change or leader transfer")
	f.DurationVar(&cfg.DeadTimeout, "dead-timeout", cfg.DeadTimeout, "a killed node is dead after this long")
	f.DurationVar(&cfg.SampleEvery, "sample-every", cfg.SampleEvery, "period of the spread samples")
	f.DurationVar(&cfg.MaxPhaseTime, "max-phase-time", cfg.MaxPhaseTime, "give up a phase after this much simulated time")
	return c
}

// parseBytes parses 123, 64KiB, 32MiB or 1GiB.
func parseBytes(s string) (int64, error) {
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
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("%q is not a positive size (123, 64KiB, 32MiB, 1GiB)", s)
	}
	return n * mult, nil
}

type simReport struct {
	res  *sim.Result
	wall time.Duration
}

func (r *simReport) WriteTable(w io.Writer) error {
	cfg := r.res.Config
	fmt.Fprintf(w, "simulate: %d nodes, %d ranges (mean %s), add %d, kill %d; snapshot rate %s/s, %d moves/node, %d running, rounds every %v of at most %d ops; seed %d\n\n",
		cfg.Nodes, cfg.Ranges, fmtBytes(cfg.MeanRangeBytes), cfg.AddNodes, cfg.KillNodes,
		fmtBytes(cfg.Scheduler.Limits.SnapshotRate), cfg.Scheduler.Limits.MaxMovesPerNode, cfg.MaxRunning,
		cfg.RoundInterval, cfg.Scheduler.MaxOpsPerRound, cfg.Seed)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PHASE\tCONVERGED\tSIM TIME\tOPS\tMOVES\tADD-VOTER\tREMOVE\tPROMOTE\tTRANSFER-LEADER\tSNAPSHOTS")
	for _, p := range r.res.Phases {
		conv := "yes"
		if !p.Converged {
			conv = "NO"
		}
		fmt.Fprintf(tw, "%s\t%s\t%v\t%d\t%d\t%d\t%d\t%d\t%d\t%s\n", p.Name, conv, p.Time, p.TotalOps(),
			p.Ops[scheduler.OpMove], p.Ops[scheduler.OpAddVoter], p.Ops[scheduler.OpRemove], p.Ops[scheduler.OpPromote],
			p.Ops[scheduler.OpTransferLeader], fmtBytes(p.Bytes))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, p := range r.res.Phases {
		fmt.Fprintf(w, "\nspread during %q (largest distance of a live node from the mean):\n", p.Name)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "TIME\tOPS\tREPLICAS MIN..MAX\tREPLICAS ±%\tBYTES ±%\tLEADERS ±%\tHOT LEADERS MAX/SHARE\tMISPLACED RANGES\t")
		for _, s := range p.Samples {
			fmt.Fprintf(tw, "%v\t%d\t%d..%d\t%.1f\t%.1f\t%.1f\t%d/%d\t%d\t\n", s.At, s.Ops, s.MinCount, s.MaxCount,
				100*s.CountDev, 100*s.BytesDev, 100*s.LeadersDev, s.MaxHotLeaders, s.HotShare, s.Misplaced)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	_, err := fmt.Fprintf(w, "\nwall time %v\n", r.wall.Round(time.Millisecond))
	return err
}

func (r *simReport) WriteJSON(w io.Writer) error {
	type sample struct {
		AtSeconds     float64 `json:"at_seconds"`
		Ops           int     `json:"ops"`
		MinReplicas   int     `json:"min_replicas"`
		MaxReplicas   int     `json:"max_replicas"`
		ReplicasDev   float64 `json:"replicas_deviation"`
		BytesDev      float64 `json:"bytes_deviation"`
		LeadersDev    float64 `json:"leaders_deviation"`
		MisplacedRngs int     `json:"misplaced_ranges"`
		MaxHotLeaders int     `json:"max_hot_leaders"`
		HotShare      int     `json:"hot_share"`
	}
	type phase struct {
		Name          string         `json:"name"`
		Converged     bool           `json:"converged"`
		SimSeconds    float64        `json:"sim_seconds"`
		Ops           map[string]int `json:"ops"`
		SnapshotBytes int64          `json:"snapshot_bytes"`
		Samples       []sample       `json:"samples"`
	}
	out := struct {
		Nodes       int     `json:"nodes"`
		Ranges      int     `json:"ranges"`
		AddNodes    int     `json:"add_nodes"`
		KillNodes   int     `json:"kill_nodes"`
		Seed        uint64  `json:"seed"`
		Phases      []phase `json:"phases"`
		WallSeconds float64 `json:"wall_seconds"`
		Invariant   string  `json:"invariant_broken,omitempty"`
	}{Nodes: r.res.Config.Nodes, Ranges: r.res.Config.Ranges, AddNodes: r.res.Config.AddNodes, KillNodes: r.res.Config.KillNodes,
		Seed: r.res.Config.Seed, WallSeconds: r.wall.Seconds(), Invariant: r.res.Invariant}
	for _, p := range r.res.Phases {
		ph := phase{Name: p.Name, Converged: p.Converged, SimSeconds: p.Time.Seconds(), Ops: map[string]int{}, SnapshotBytes: p.Bytes}
		for k, n := range p.Ops {
			ph.Ops[k.String()] = n
		}
		for _, s := range p.Samples {
			ph.Samples = append(ph.Samples, sample{s.At.Seconds(), s.Ops, s.MinCount, s.MaxCount, s.CountDev, s.BytesDev, s.LeadersDev, s.Misplaced, s.MaxHotLeaders, s.HotShare})
		}
		out.Phases = append(out.Phases, ph)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

func fmtBytes(n int64) string {
	switch {
	case n >= 1<<40:
		return fmt.Sprintf("%.1f TiB", float64(n)/(1<<40))
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%d B", n)
}
