package proccluster

import (
	"context"
	"testing"
)

// StartForTest starts a cluster for test t and stops it (only it) when the
// test ends, after showing the end of every node's log if the test failed.
// The data root should be under t.TempDir(); it is kept for t to remove.
func StartForTest(t testing.TB, cfg Config) *Cluster {
	t.Helper()
	cfg.Keep = true
	ctx, cancel := context.WithTimeout(context.Background(), 3*cfg.StartTimeout)
	defer cancel()
	c, err := Start(ctx, cfg)
	if err != nil {
		t.Fatalf("start %s cluster: %v", cfg.Name, err)
	}
	t.Cleanup(func() {
		if err := c.Stop(); err != nil {
			t.Errorf("stop %s cluster: %v", cfg.Name, err)
		}
		if t.Failed() {
			for _, n := range c.Nodes() {
				t.Logf("--- %s log (tail) ---\n%s", n.Name, Tail(n.LogPath, 4000))
			}
		}
	})
	return c
}
