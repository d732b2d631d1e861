package system_test

import (
	"bytes"
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tesseradb/tessera/proto/tesserapb"
)

// ack is an acknowledged put: the key held value from revision rev on.
type ack struct {
	key, value string
	rev        int64
}

// want is an expected read: key holds value with mod revision modRev at
// revision atRev (0: the current state).
type want struct {
	key, value string
	modRev     int64
	atRev      int64
}

func (w want) String() string {
	at := "now"
	if w.atRev != 0 {
		at = fmt.Sprintf("rev %d", w.atRev)
	}
	return fmt.Sprintf("%q at %s", w.key, at)
}

// get reads w's key as w says; err is a failed request, mismatch a wrong
// answer.
func get(cli *clientv3.Client, w want, serializable bool) (mismatch, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	var opts []clientv3.OpOption
	if w.atRev != 0 {
		opts = append(opts, clientv3.WithRev(w.atRev))
	}
	if serializable {
		opts = append(opts, clientv3.WithSerializable())
	}
	resp, err := cli.Get(ctx, w.key, opts...)
	if err != nil {
		return nil, err
	}
	switch {
	case len(resp.Kvs) != 1:
		return fmt.Errorf("%v: got %d kvs, want value %q mod revision %d", w, len(resp.Kvs), w.value, w.modRev), nil
	case string(resp.Kvs[0].Value) != w.value || resp.Kvs[0].ModRevision != w.modRev:
		return fmt.Errorf("%v: got value %q mod revision %d, want %q mod revision %d",
			w, resp.Kvs[0].Value, resp.Kvs[0].ModRevision, w.value, w.modRev), nil
	}
	return nil, nil
}

// checkReads reads every w through cli with 16 readers. A linearizable read
// must be right at its first answer (failed requests are retried until the
// timeout: ranges may still be electing leaders); a serializable one is
// retried until it is right or the timeout passes, since the replica it
// reads may lag. It returns the wrong answers (at most 20) and the time the
// last read took to be right.
func checkReads(cli *clientv3.Client, wants []want, serializable bool, timeout time.Duration) (wrong []error, took time.Duration) {
	start := time.Now()
	deadline := start.Add(timeout)
	var (
		mu   sync.Mutex
		wg   sync.WaitGroup
		next = make(chan want)
	)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for w := range next {
				for {
					mismatch, err := get(cli, w, serializable)
					if err == nil && (mismatch == nil || !serializable) {
						if mismatch != nil {
							mu.Lock()
							wrong = append(wrong, mismatch)
							mu.Unlock()
						}
						break
					}
					if time.Now().After(deadline) {
						mu.Lock()
						wrong = append(wrong, fmt.Errorf("after %v: %w", timeout, errorsJoin(mismatch, err)))
						mu.Unlock()
						break
					}
					<-time.After(pollInterval)
				}
			}
		}()
	}
	for _, w := range wants {
		mu.Lock()
		n := len(wrong)
		mu.Unlock()
		if n >= 20 {
			break
		}
		next <- w
	}
	close(next)
	wg.Wait()
	return wrong, time.Since(start)
}

func errorsJoin(a, b error) error {
	switch {
	case a == nil:
		return b
	case b == nil:
		return a
	}
	return fmt.Errorf("%v; %v", a, b)
}

// checkScan reads the whole keyspace through cli in one request: every key
// of state must be there with its value and mod revision, and any other key
// must be one of maybe with that value (a write whose outcome is unknown).
// err is a failed request, mismatch a wrong answer.
func checkScan(cli *clientv3.Client, state map[string]ack, maybe map[string]string, serializable bool) (mismatch, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	opts := []clientv3.OpOption{clientv3.WithFromKey()}
	if serializable {
		opts = append(opts, clientv3.WithSerializable())
	}
	resp, err := cli.Get(ctx, "\x00", opts...)
	if err != nil {
		return nil, err
	}
	var problems []string
	seen := map[string]bool{}
	for _, kv := range resp.Kvs {
		k := string(kv.Key)
		seen[k] = true
		if a, ok := state[k]; ok {
			if string(kv.Value) != a.value || kv.ModRevision != a.rev {
				problems = append(problems, fmt.Sprintf("%q: value %q mod revision %d, want %q mod revision %d", k, kv.Value, kv.ModRevision, a.value, a.rev))
			}
			continue
		}
		if v, ok := maybe[k]; !ok || v != string(kv.Value) {
			problems = append(problems, fmt.Sprintf("%q: unexpected key with value %q mod revision %d", k, kv.Value, kv.ModRevision))
		}
	}
	for k := range state {
		if !seen[k] {
			problems = append(problems, fmt.Sprintf("%q: missing", k))
		}
	}
	if len(problems) > 0 {
		sort.Strings(problems)
		return fmt.Errorf("scan at revision %d: %d problems: %s", resp.Header.Revision, len(problems), strings.Join(problems[:min(20, len(problems))], "; ")), nil
	}
	return nil, nil
}

// currentState returns the state acks leave: per key, the acknowledged put
// with the highest revision. It fails t if two acks share a revision or if
// one client's puts to a key did not get increasing revisions (acks must be
// in the order each key's writer saw them acknowledged).
func currentState(t *testing.T, acks []ack) map[string]ack {
	t.Helper()
	byRev := map[int64]ack{}
	state := map[string]ack{}
	for _, a := range acks {
		if b, dup := byRev[a.rev]; dup {
			t.Errorf("puts %q=%q and %q=%q both got revision %d", a.key, a.value, b.key, b.value, a.rev)
		}
		byRev[a.rev] = a
		if prev, ok := state[a.key]; ok && prev.rev >= a.rev {
			t.Errorf("put %q=%q acknowledged after %q got revision %d, not above %d", a.key, a.value, prev.value, a.rev, prev.rev)
		}
		state[a.key] = a
	}
	return state
}

// dataRanges returns the node's data range descriptors in key order.
func dataRanges(t *testing.T, n *node) []*tesserapb.RangeDescriptor {
	t.Helper()
	resp, err := n.ranges()
	if err != nil {
		t.Fatalf("Ranges of %s: %v", n.name, err)
	}
	var out []*tesserapb.RangeDescriptor
	for _, r := range resp.GetRanges() {
		if !r.GetIsMeta() {
			out = append(out, r.GetRangeDescriptor())
		}
	}
	sort.Slice(out, func(i, j int) bool { return bytes.Compare(out[i].GetStartKey(), out[j].GetStartKey()) < 0 })
	return out
}

// requireSpread fails t unless the node holds at least minRanges data
// ranges and every one of them holds at least one of keys.
func requireSpread(t *testing.T, n *node, minRanges int, keys []string) {
	t.Helper()
	ranges := dataRanges(t, n)
	if len(ranges) < minRanges {
		t.Fatalf("%s holds %d data ranges, want at least %d", n.name, len(ranges), minRanges)
	}
	for _, d := range ranges {
		count := 0
		for _, k := range keys {
			if bytes.Compare([]byte(k), d.GetStartKey()) >= 0 && (len(d.GetEndKey()) == 0 || bytes.Compare([]byte(k), d.GetEndKey()) < 0) {
				count++
			}
		}
		if count == 0 {
			t.Fatalf("range %d [%q, %q) gets none of the test's keys", d.GetRangeId(), d.GetStartKey(), d.GetEndKey())
		}
	}
}
