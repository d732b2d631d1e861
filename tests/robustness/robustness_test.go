package robustness

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tesseradb/tessera/proto/tesserapb"
)

// scenarioConfig sizes one run.
type scenarioConfig struct {
	nodes        int
	split        []string
	traffic      time.Duration // length of the traffic
	quiet        time.Duration // fault-free traffic at the start and at the end
	workers      int
	clients      int
	keysPerRange int
	opTimeout    time.Duration
	leaseSlots   int // lease traffic (traffic_lease_test.go): slots of one key per range
}

// fastConfig fits `make test`: four scenarios in about two minutes on a
// busy two-core machine.
var fastConfig = scenarioConfig{
	nodes: 3, split: []string{"g", "n", "t"},
	traffic: 15 * time.Second, quiet: 2 * time.Second,
	workers: 6, clients: 3, keysPerRange: 4, opTimeout: 3 * time.Second,
	// Lease traffic only with ROBUSTNESS_LEASES=1 (main_test.go): the
	// partition scenario with leases still finds a violation now and then,
	// not yet diagnosed (the failing run had revokes with unknown outcome:
	// likely a revocation aborted after some ranges deleted the lease's
	// keys; see docs/decisions.md, "Only the current meta leader denies a
	// lease").
	leaseSlots: 0,
}

// longConfigs are `make robustness`.
var longConfigs = []scenarioConfig{
	{
		nodes: 3, split: []string{"g", "n", "t"},
		traffic: 45 * time.Second, quiet: 3 * time.Second,
		workers: 10, clients: 4, keysPerRange: 5, opTimeout: 3 * time.Second,
		leaseSlots: 3,
	},
	{
		nodes: 5, split: []string{"d", "h", "m", "r", "w"},
		traffic: 45 * time.Second, quiet: 3 * time.Second,
		workers: 12, clients: 5, keysPerRange: 4, opTimeout: 3 * time.Second,
		leaseSlots: 3,
	},
}

// checkTimeout bounds porcupine's search.
const checkTimeout = 2 * time.Minute

// TestRobustness runs every fault scenario against a fresh cluster and
// checks the recorded history. See the package doc for what is checked.
func TestRobustness(t *testing.T) {
	if testing.Short() {
		t.Skip("real-process robustness runs are skipped in -short mode")
	}
	configs := []scenarioConfig{fastConfig}
	if *leaseRuns {
		configs[0].leaseSlots = 2
	}
	if *longRuns {
		configs = longConfigs
	}
	for _, cfg := range configs {
		for _, f := range faults {
			if f.name == "reshape" && !*reshapeRuns {
				continue
			}
			t.Run(fmt.Sprintf("%dnodes/%s", cfg.nodes, f.name), func(t *testing.T) {
				runScenario(t, cfg, f)
			})
		}
	}
}

func runScenario(t *testing.T, cfg scenarioConfig, f fault) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("ROBUSTNESS_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("ROBUSTNESS_SEED: %v", err)
		}
	}
	t.Logf("seed %d (ROBUSTNESS_SEED reproduces the choices, not the timing)", seed)
	rng := rand.New(rand.NewPCG(seed, 0))

	c := newCluster(t, cfg.nodes, cfg.split)
	ranges, err := c.dataRanges(time.Now().Add(startTimeout))
	if err != nil {
		t.Fatal(err)
	}
	if len(ranges) < 4 {
		t.Fatalf("%d data ranges, want at least 4", len(ranges))
	}
	keys, err := keysFor(ranges, cfg.keysPerRange)
	if err != nil {
		t.Fatal(err)
	}
	var slots [][]string
	for s := range cfg.leaseSlots {
		slots = append(slots, leaseSlotKeys(ranges, s))
		keys = append(keys, slots[s]...)
	}
	if f.name == "transfer-leader" {
		// Probe before any traffic, so that an unimplemented RPC skips.
		if err := transferLeader(context.Background(), c, rng, 1); errors.Is(err, errUnsupported) {
			t.Skipf("skipping: %v", err)
		} else if err != nil {
			t.Fatal(err)
		}
	}

	var clients []*clientv3.Client
	for range cfg.clients {
		clients = append(clients, c.client())
	}
	tr := &traffic{h: NewHistory(), clients: clients, keys: keys, opTimeout: cfg.opTimeout, seed: seed}
	stop := tr.run(cfg.workers)
	lt := &leaseTraffic{tr: tr, slots: slots, longTTL: int64(4*cfg.traffic/time.Second) + 60, shortTTL: 2, expiryGap: 3 * time.Second}
	stopLeases := lt.run()
	trafficEnd := time.Now().Add(cfg.traffic)

	// Faults, from the end of the quiet start to the start of the quiet end.
	hold(context.Background(), cfg.quiet)
	fctx, cancel := context.WithDeadline(context.Background(), trafficEnd.Add(-cfg.quiet))
	injected := 0
	var faultErr error
	for i := 0; fctx.Err() == nil; i++ {
		if err := f.inject(fctx, c, rng, i); err != nil {
			faultErr = err
			break
		}
		injected++
		hold(fctx, f.pause)
	}
	cancel()
	// Whatever happened, every node runs and talks again before the end.
	c.net.Heal()
	for _, nd := range c.nodes {
		c.signal(nd, syscall.SIGCONT)
	}
	hold(context.Background(), time.Until(trafficEnd))
	stop()
	stopLeases()
	if faultErr != nil {
		t.Fatalf("fault %s (after %d injections): %v", f.name, injected, faultErr)
	}
	t.Logf("%s: %d injections; %d operations acknowledged, %d ambiguous, %d failed reads",
		f.name, injected, tr.acked.Load(), tr.unknown.Load(), tr.failed.Load())
	if injected == 0 {
		t.Errorf("no fault was injected")
	}

	if err := c.awaitServing(startTimeout); err != nil {
		t.Fatalf("cluster after the faults: %v", err)
	}
	if err := lt.finish(time.Now().Add(startTimeout)); err != nil {
		t.Fatalf("ending the leases: %v", err)
	}
	final := readBack(t, c, tr.h, keys)
	ops := tr.h.Ops()
	r := Check(ops, final, checkTimeout)
	t.Logf("checked %d operations (%d ambiguous) on %d keys: %v", r.Ops, r.Unknown, len(keys), r.Linearizable)
	if len(slots) > 0 {
		t.Logf("lease operations: %s", leaseSummary(ops))
	}
	if err := r.Err(); err != nil {
		keepFailure(t, r, ops, final, f.name)
		t.Fatalf("history of %s violates etcd's guarantees: %v", f.name, err)
	}
	checkHashes(t, c)
}

// readBack reads every key linearizably after the traffic, records the
// reads in the history (they take part in the check) and returns the
// values.
func readBack(t *testing.T, c *cluster, h *History, keys []string) map[string]*string {
	t.Helper()
	cli := c.client()
	stream := h.NewStream()
	final := map[string]*string{}
	for _, k := range keys {
		in := Input{Kind: OpGet, Key: k}
		err := poll(time.Now().Add(startTimeout), func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			call := h.Now()
			out, err := do(ctx, cli, in)
			if err != nil {
				return err
			}
			h.Add(stream, call, in, out)
			if out.Found {
				final[k] = &out.Value
			} else {
				final[k] = nil
			}
			return nil
		})
		if err != nil {
			t.Fatalf("read back %q: %v", k, err)
		}
	}
	return final
}

// keepFailure writes the history (testdata format) and porcupine's
// visualization to the test's artifact directory.
func keepFailure(t *testing.T, r *Report, ops []Op, final map[string]*string, scenario string) {
	dir := artifactDir(t)
	if dir == "" {
		return
	}
	hist := filepath.Join(dir, "history.json")
	err := WriteHistoryFile(hist, HistoryFile{
		Comment: fmt.Sprintf("%s, %s: %v", t.Name(), time.Now().Format(time.RFC3339), r.Err()),
		Want:    "violation", Final: final, Ops: ops,
	})
	if err != nil {
		t.Log(err)
	} else {
		t.Logf("history: %s", hist)
	}
	vis := filepath.Join(dir, "linearizability.html")
	if err := r.Visualize(vis); err != nil {
		t.Log(err)
	} else {
		t.Logf("porcupine visualization: %s", vis)
	}
}

// checkHashes compares every replica of every group (the meta group too)
// at the same applied index, through Internal.Hash. Replicas apply at
// their own pace, so it polls until their applied indexes agree.
func checkHashes(t *testing.T, c *cluster) {
	t.Helper()
	groups, err := c.leaders()
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]uint64, 0, len(groups))
	for id := range groups {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		g := groups[id]
		var last []*tesserapb.HashResponse
		err := poll(time.Now().Add(30*time.Second), func() error {
			last = last[:0]
			for _, r := range g.replicas {
				resp, err := hashOf(c.nodes[r-1], id)
				if err != nil {
					return err
				}
				last = append(last, resp)
			}
			for _, h := range last[1:] {
				if h.GetAppliedIndex() != last[0].GetAppliedIndex() {
					return fmt.Errorf("range %d: applied index %d on node %d, %d on node %d", id,
						last[0].GetAppliedIndex(), last[0].GetNodeId(), h.GetAppliedIndex(), h.GetNodeId())
				}
			}
			return nil
		})
		switch {
		case status.Code(errors.Unwrap(err)) == codes.Unimplemented:
			t.Logf("replica hashes not compared: Internal.Hash is not implemented yet (%v)", err)
			return
		case err != nil:
			t.Errorf("hash of range %d: %v", id, err)
			continue
		}
		for _, h := range last[1:] {
			if h.GetHash() != last[0].GetHash() {
				t.Errorf("range %d at applied index %d: hash %08x on node %d, %08x on node %d (revision %d vs %d)", id,
					h.GetAppliedIndex(), last[0].GetHash(), last[0].GetNodeId(), h.GetHash(), h.GetNodeId(), last[0].GetRevision(), h.GetRevision())
			}
		}
		t.Logf("range %d: %d replicas agree at applied index %d (hash %08x)", id, len(last), last[0].GetAppliedIndex(), last[0].GetHash())
	}
}

func hashOf(nd *node, rangeID uint64) (*tesserapb.HashResponse, error) {
	ic, done, err := nd.internal()
	if err != nil {
		return nil, err
	}
	defer done()
	ctx, cancel := context.WithTimeout(context.Background(), rpcTimeout)
	defer cancel()
	resp, err := ic.Hash(ctx, &tesserapb.HashRequest{RangeId: rangeID})
	if err != nil {
		return nil, fmt.Errorf("hash of range %d on %s: %w", rangeID, nd.name, err)
	}
	if re := resp.GetRoutingError(); re != nil {
		return nil, fmt.Errorf("hash of range %d on %s: routing error %v", rangeID, nd.name, re)
	}
	return resp, nil
}
