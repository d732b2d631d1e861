package shard

import (
	"bytes"
	"math/rand/v2"
	"sync"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// Load-based splits.
//
// Every request a replica serves is counted per second (a ring of the last
// loadSeconds seconds) and its key offered to a split finder, as
// CockroachDB's split decider and finder do: the finder keeps a reservoir
// of loadCandidates request keys and, for each candidate, how many later
// requests fell left of it, right of it, or across it (a range request
// that spans it). The node's split loop asks LoadSplitKey whether the
// range was above its QPS threshold in every one of the last seconds and,
// if so, which candidate leaves about half the load on each side with few
// requests crossing it. The candidates are request keys, that is user
// keys: a split never falls between the versions of one key.

const (
	loadSeconds    = 64 // the per-second ring: longest sustain window
	loadCandidates = 20 // the finder's reservoir
	// loadMinSamples: requests the finder must have seen before it names
	// a key (CockroachDB waits for its reservoir to fill and some more).
	loadMinSamples = 200
	// loadMaxImbalance: a candidate with more than this share of its
	// load's difference between the sides is not chosen.
	loadMaxImbalance = 0.3
)

// loadCandidate is one reservoir key and the requests seen since.
type loadCandidate struct {
	key                  []byte
	left, right, crossed int
}

// loadSplitter is a replica's per-second load ring and split finder.
type loadSplitter struct {
	mu      sync.Mutex
	sec     int64 // unix second of counts[sec%loadSeconds]
	counts  [loadSeconds]int
	samples int
	cands   []loadCandidate
	rng     *rand.Rand
}

// opKeys returns the key span of a single-key or range request (no key:
// a transaction, whose keys are not sampled).
func opKeys(op *pb.RequestOp) (key, end []byte) {
	switch {
	case op == nil:
		return nil, nil
	case op.GetRequestPut() != nil:
		return op.GetRequestPut().GetKey(), nil
	case op.GetRequestRange() != nil:
		return op.GetRequestRange().GetKey(), op.GetRequestRange().GetRangeEnd()
	case op.GetRequestDeleteRange() != nil:
		return op.GetRequestDeleteRange().GetKey(), op.GetRequestDeleteRange().GetRangeEnd()
	}
	return nil, nil
}

// record counts one request at now on [key, end) (end empty: one key).
func (l *loadSplitter) record(now time.Time, key, end []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.advanceLocked(now.Unix())
	l.counts[l.sec%loadSeconds]++
	if len(key) == 0 {
		return
	}
	if l.rng == nil {
		l.rng = rand.New(rand.NewPCG(uint64(now.UnixNano()), 0))
	}
	for i := range l.cands {
		c := &l.cands[i]
		switch {
		case len(end) > 0 && bytes.Compare(key, c.key) < 0 && (end[0] == 0 && len(end) == 1 || bytes.Compare(end, c.key) > 0):
			c.crossed++
		case bytes.Compare(key, c.key) < 0:
			c.left++
		default:
			c.right++
		}
	}
	l.samples++
	// Reservoir sampling: every request key has the same chance to be a
	// candidate.
	if len(l.cands) < loadCandidates {
		l.cands = append(l.cands, loadCandidate{key: bytes.Clone(key)})
	} else if j := l.rng.IntN(l.samples); j < loadCandidates {
		l.cands[j] = loadCandidate{key: bytes.Clone(key)}
	}
}

// advanceLocked moves the ring to second s, zeroing the seconds skipped.
func (l *loadSplitter) advanceLocked(s int64) {
	if s <= l.sec {
		return
	}
	for t := l.sec + 1; t <= s && t <= l.sec+loadSeconds; t++ {
		l.counts[t%loadSeconds] = 0
	}
	l.sec = s
}

// hot reports whether every complete second of the last sustain had at
// least qps requests.
func (l *loadSplitter) hot(now time.Time, qps float64, sustain time.Duration) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.advanceLocked(now.Unix())
	n := min(int(sustain/time.Second), loadSeconds-1)
	if n <= 0 || qps <= 0 {
		return false
	}
	for i := 1; i <= n; i++ {
		if float64(l.counts[(l.sec-int64(i))%loadSeconds]) < qps {
			return false
		}
	}
	return true
}

// reset forgets the finder's candidates (the range is not hot, or its
// span changed).
func (l *loadSplitter) reset() {
	l.mu.Lock()
	l.cands, l.samples = nil, 0
	l.mu.Unlock()
}

// splitKey returns the best candidate strictly inside (start, end), or nil.
func (l *loadSplitter) splitKey(valid func([]byte) bool) []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.samples < loadMinSamples {
		return nil
	}
	var best []byte
	bestScore := 2.0
	for _, c := range l.cands {
		total := c.left + c.right + c.crossed
		if total == 0 || c.left == 0 || c.right == 0 || !valid(c.key) {
			continue
		}
		imbalance := float64(abs(c.left-c.right)) / float64(total)
		if imbalance > loadMaxImbalance {
			continue
		}
		// Crossing requests would become two: they weigh more.
		score := imbalance + 2*float64(c.crossed)/float64(total)
		if score < bestScore {
			best, bestScore = c.key, score
		}
	}
	return bytes.Clone(best)
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

// noteLoad counts a request the replica serves (load and split finder).
func (r *Replica) noteLoad(now time.Time, op *pb.RequestOp) {
	r.load.add(now, 1)
	key, end := opKeys(op)
	r.loadSplit.record(now, key, end)
}

// LoadSplitKey returns the key at which a load-based split should cut the
// range, if every complete second of the last sustain served at least qps
// requests and the finder found a key with about half the load on each
// side; nil otherwise (the finder then starts afresh).
func (r *Replica) LoadSplitKey(qps float64, sustain time.Duration) []byte {
	if !r.loadSplit.hot(time.Now(), qps, sustain) {
		r.loadSplit.reset()
		return nil
	}
	desc := r.Descriptor()
	return r.loadSplit.splitKey(func(k []byte) bool { return ValidateSplitKey(desc, k) == nil })
}
