package compare

import (
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestProcessCPU: the CPU time of this process grows while it spins, and
// by about the time spun.
func TestProcessCPU(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc")
	}
	before, err := processCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	var after float64
	for {
		for i := 0; i < 1_000_000; i++ {
			_ = i * i
		}
		if after, err = processCPU(os.Getpid()); err != nil {
			t.Fatal(err)
		}
		if after-before >= 0.05 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("CPU time did not grow by 50 ms in 10 s of spinning: %.2f → %.2f", before, after)
		}
	}
	if got := clusterCPU([]int{os.Getpid(), os.Getpid()}); got < 2*after {
		t.Fatalf("two processes' CPU %.2f, want at least %.2f", got, 2*after)
	}
	if got := clusterCPU([]int{-5}); got != -1 {
		t.Fatalf("a missing process gave %.2f, want -1", got)
	}
}

// TestEndpointSetting: --endpoint must name a member (or 0 for all), and
// the report says which member the clients used.
func TestEndpointSetting(t *testing.T) {
	cfg := DefaultConfig()
	for ep, ok := range map[int]bool{0: true, 1: true, 3: true, 4: false, -1: false} {
		cfg.Endpoint = ep
		if err := cfg.Validate(); (err == nil) != ok {
			t.Errorf("endpoint %d of 3 nodes: Validate() = %v", ep, err)
		}
	}
	rep := &Report{Settings: Settings{Nodes: 3, Conns: 1, Clients: 1, Duration: 10, Rounds: 2, Endpoint: 2}}
	var b strings.Builder
	if err := rep.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "clients sent every request to member 2 of each cluster") {
		t.Errorf("table does not name the endpoint:\n%s", b.String())
	}
}
