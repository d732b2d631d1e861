package backoff

import (
	"context"
	"testing"
	"time"
)

// TestNextGrowsCappedAndJittered: each delay lies in [d/2, d] for the
// nominal d = Min·2ⁿ capped at Max; Reset starts over.
func TestNextGrowsCappedAndJittered(t *testing.T) {
	cfg := Config{Min: 10 * time.Millisecond, Max: 80 * time.Millisecond}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	b := New(cfg)
	for round := 0; round < 2; round++ {
		nominal := cfg.Min
		for i := 0; i < 8; i++ {
			d := b.Next()
			if d < nominal/2 || d > nominal {
				t.Fatalf("attempt %d: delay %s outside [%s, %s]", i, d, nominal/2, nominal)
			}
			nominal = min(2*nominal, cfg.Max)
		}
		b.Reset()
	}
}

// TestJitterSpreads: loops that fail together do not retry together.
func TestJitterSpreads(t *testing.T) {
	seen := map[time.Duration]bool{}
	for i := 0; i < 100; i++ {
		seen[New(Config{Min: time.Second, Max: time.Second}).Next()] = true
	}
	if len(seen) < 50 {
		t.Fatalf("100 loops drew only %d distinct delays", len(seen))
	}
}

func TestWaitEndsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := New(Config{Min: time.Hour, Max: time.Hour}).Wait(ctx); err != context.Canceled {
		t.Fatalf("Wait on a cancelled context: %v", err)
	}
	if err := New(Config{Min: time.Millisecond, Max: time.Millisecond}).Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []Config{{}, {Min: time.Second, Max: time.Millisecond}, {Min: -1, Max: time.Second}} {
		if c.Validate() == nil {
			t.Errorf("%+v accepted", c)
		}
		if d := New(c).Next(); d <= 0 {
			t.Errorf("%+v: New corrected it to a delay of %s", c, d)
		}
	}
}
