package system_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestSplitBySizeProcesses: a 3-node cluster of real processes started
// with no split keys and a small --range-max-bytes ends, after its keys are
// written, in at least 10 ranges; every key reads back; tessctl check finds
// every range's replicas hash-equal; tessctl ranges -w json reports each
// range's size_bytes under twice the limit. The run (200,000 keys,
// 4 MiB; about a minute and a half on two cores) is `make split-long`
// (TESSERA_SPLIT_LONG=1); by default 20,000 keys and 256 KiB show the same
// behaviour in a fraction of the time.
func TestSplitBySizeProcesses(t *testing.T) {
	keys, maxBytes := 20000, 256<<10
	if os.Getenv("TESSERA_SPLIT_LONG") != "" {
		keys, maxBytes = 200000, 4<<20
	}
	c := newCluster(t, clusterConfig{nodes: 3, prepare: func(n *node) {
		n.args = append(n.args, "--range-max-bytes", strconv.Itoa(maxBytes), "--range-split-check-interval", "200ms")
	}})
	cli := c.client()
	val := strings.Repeat("v", 180) // ~200 bytes a key with its name
	start := time.Now()
	const writers = 32
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < keys; i += writers {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				_, err := cli.Put(ctx, fmt.Sprintf("key/%07d", i), val)
				cancel()
				if err != nil {
					errs <- fmt.Errorf("put key/%07d: %w", i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	t.Logf("%d keys written in %v", keys, time.Since(start).Round(time.Millisecond))

	type ranges struct {
		Ranges []struct {
			ID        uint64  `json:"range_id"`
			Meta      bool    `json:"meta"`
			SizeBytes *uint64 `json:"size_bytes"`
			Keys      *uint64 `json:"keys"`
		} `json:"ranges"`
	}
	var last ranges
	waitFor(t, 2*time.Minute, "the layout to settle under twice --range-max-bytes in >= 10 ranges", func() error {
		out, err := tessctl(t, "--endpoints", strings.Join(c.endpoints(), ","), "ranges", "-w", "json")
		if err != nil {
			return err
		}
		last = ranges{}
		if err := json.Unmarshal([]byte(out), &last); err != nil {
			return err
		}
		n := 0
		var sum uint64
		for _, r := range last.Ranges {
			if r.Meta {
				continue
			}
			n++
			if r.SizeBytes == nil {
				return fmt.Errorf("range %d: no size yet", r.ID)
			}
			if *r.SizeBytes > 2*uint64(maxBytes) {
				return fmt.Errorf("range %d holds %d bytes", r.ID, *r.SizeBytes)
			}
			sum += *r.Keys
		}
		if n < 10 {
			return fmt.Errorf("%d ranges", n)
		}
		if sum != uint64(keys) {
			return fmt.Errorf("the ranges count %d keys, want %d", sum, keys)
		}
		return nil
	})
	t.Logf("%d ranges after %v", len(last.Ranges)-1, time.Since(start).Round(time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	resp, err := cli.Get(ctx, "key/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil || resp.Count != int64(keys) {
		t.Fatalf("count: %v %v, want %d", resp, err, keys)
	}
	if out, err := tessctl(t, "--endpoints", strings.Join(c.endpoints(), ","), "--command-timeout", "60s", "check"); err != nil {
		t.Fatalf("tessctl check: %v\n%s", err, out)
	}
}
