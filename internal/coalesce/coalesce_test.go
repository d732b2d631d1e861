package coalesce

import (
	"reflect"
	"testing"
	"time"
)

// gatedRun is a run function that reports each batch and blocks until the
// test lets it finish.
type gatedRun struct {
	batches chan []string // each batch as it starts
	finish  chan struct{} // one send lets one batch finish
}

func newGatedRun() *gatedRun {
	return &gatedRun{batches: make(chan []string, 16), finish: make(chan struct{})}
}

func (g *gatedRun) run(batch []string) {
	g.batches <- append([]string(nil), batch...)
	<-g.finish
}

func (g *gatedRun) next(t *testing.T) []string {
	t.Helper()
	select {
	case b := <-g.batches:
		return b
	case <-time.After(10 * time.Second):
		t.Fatal("no batch started")
		return nil
	}
}

func newBatcher(t *testing.T, tail int, run func([]string)) *Batcher[string] {
	t.Helper()
	b, err := New(Config{Tail: tail}, run)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b
}

// addAsync calls Add on a goroutine of its own and reports when it returns.
func addAsync(b *Batcher[string], item string, done <-chan struct{}) <-chan struct{} {
	returned := make(chan struct{})
	go func() {
		b.Add(item, done)
		close(returned)
	}()
	return returned
}

func waitClosed(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s did not happen", what)
	}
}

func isOpen(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return false
	default:
		return true
	}
}

// TestBatchesFormWhileOneRuns: items that arrive while a batch runs form
// the next batch, never the running one, and a non-leading Add returns at
// once.
func TestBatchesFormWhileOneRuns(t *testing.T) {
	g := newGatedRun()
	b := newBatcher(t, 5, g.run)
	aReturned := addAsync(b, "a", nil)
	if got := g.next(t); !reflect.DeepEqual(got, []string{"a"}) {
		t.Fatalf("first batch %v, want [a]", got)
	}
	b.Add("b", nil) // returns at once: a batch is running
	b.Add("c", nil)
	g.finish <- struct{}{}
	if got := g.next(t); !reflect.DeepEqual(got, []string{"b", "c"}) {
		t.Fatalf("second batch %v, want [b c]", got)
	}
	g.finish <- struct{}{}
	waitClosed(t, aReturned, "the leader's return once the queue is empty")
}

// TestTailBounded: a leader whose own request stays open runs its own batch
// and at most Tail more, then hands the queue to another goroutine and
// returns while that batch is still running.
func TestTailBounded(t *testing.T) {
	g := newGatedRun()
	b := newBatcher(t, 1, g.run)
	never := make(chan struct{})
	aReturned := addAsync(b, "a", never)
	g.next(t) // [a]
	b.Add("b", nil)
	g.finish <- struct{}{}
	g.next(t) // [b]: the one batch of tail
	b.Add("c", nil)
	g.finish <- struct{}{}
	if got := g.next(t); !reflect.DeepEqual(got, []string{"c"}) {
		t.Fatalf("third batch %v, want [c]", got)
	}
	// [c] is running and blocked, yet a's caller is free: c runs elsewhere.
	waitClosed(t, aReturned, "the leader's return after its tail")
	g.finish <- struct{}{}
}

// TestDoneLeaderHandsOff: a leader whose own request is done after its
// batch does not serve the next one.
func TestDoneLeaderHandsOff(t *testing.T) {
	g := newGatedRun()
	b := newBatcher(t, 3, g.run)
	done := make(chan struct{})
	aReturned := addAsync(b, "a", done)
	g.next(t) // [a]
	b.Add("b", nil)
	close(done) // a's request is answered by its batch
	g.finish <- struct{}{}
	if got := g.next(t); !reflect.DeepEqual(got, []string{"b"}) {
		t.Fatalf("second batch %v, want [b]", got)
	}
	waitClosed(t, aReturned, "the answered leader's return")
	g.finish <- struct{}{}
}

// TestDrainAndClose: Drain takes the queued items, not the running batch;
// after Close a leader runs the queue itself (no hand-off goroutine).
func TestDrainAndClose(t *testing.T) {
	g := newGatedRun()
	b := newBatcher(t, 0, g.run)
	aReturned := addAsync(b, "a", make(chan struct{}))
	g.next(t)
	b.Add("b", nil)
	b.Add("c", nil)
	if got := b.Drain(); !reflect.DeepEqual(got, []string{"b", "c"}) {
		t.Fatalf("Drain %v, want [b c]", got)
	}
	b.Add("d", nil)
	closed := make(chan struct{})
	go func() {
		b.Close()
		close(closed)
	}()
	waitClosed(t, closed, "Close with no hand-off goroutine")
	g.finish <- struct{}{}
	// Closed: the leader runs [d] itself although its tail is 0.
	if got := g.next(t); !reflect.DeepEqual(got, []string{"d"}) {
		t.Fatalf("batch after Close %v, want [d]", got)
	}
	if !isOpen(aReturned) {
		t.Fatal("the leader returned before running the queue after Close")
	}
	g.finish <- struct{}{}
	waitClosed(t, aReturned, "the leader's return")
}

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	if _, err := New(Config{Tail: -1}, func([]int) {}); err == nil {
		t.Fatal("a negative tail was accepted")
	}
	if _, err := New[int](DefaultConfig(), nil); err == nil {
		t.Fatal("a nil run was accepted")
	}
}
