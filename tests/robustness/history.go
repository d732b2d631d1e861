package robustness

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"
)

// Op is one recorded operation. Call and Return are nanoseconds since the
// history began; an operation with an unknown outcome has Return -1 until
// the history is closed (then: after every other return, "infinity").
type Op struct {
	Client int    `json:"client"`
	Call   int64  `json:"call"`
	Return int64  `json:"return"`
	Input  Input  `json:"input"`
	Output Output `json:"output"`
}

// History records operations from many goroutines.
type History struct {
	start time.Time
	mu    struct {
		sync.Mutex
		ops     []Op
		streams int
	}
}

// NewHistory starts an empty history; its clock starts now.
func NewHistory() *History { return &History{start: time.Now()} }

// Now returns the history's clock.
func (h *History) Now() int64 { return int64(time.Since(h.start)) }

// NewStream returns a fresh client id. A client takes a new one after an
// operation with an unknown outcome, whose interval stays open to the end.
func (h *History) NewStream() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.mu.streams++
	return h.mu.streams - 1
}

// Add records an operation that was called at call and returned now.
func (h *History) Add(client int, call int64, in Input, out Output) {
	ret := h.Now()
	if out.Unknown {
		ret = -1
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.mu.ops = append(h.mu.ops, Op{Client: client, Call: call, Return: ret, Input: in, Output: out})
}

// Ops closes the history: it returns the operations in call order with
// every unknown return set after the last known one.
func (h *History) Ops() []Op {
	h.mu.Lock()
	ops := slices.Clone(h.mu.ops)
	h.mu.Unlock()
	return CloseOps(ops)
}

// CloseOps sorts ops by call time and moves the return of every operation
// with an unknown outcome past the last known return.
func CloseOps(ops []Op) []Op {
	var last int64
	for _, op := range ops {
		last = max(last, op.Return, op.Call)
	}
	for i := range ops {
		if ops[i].Output.Unknown {
			ops[i].Return = last + int64(time.Second)
		}
	}
	slices.SortStableFunc(ops, func(a, b Op) int { return cmp.Compare(a.Call, b.Call) })
	return ops
}

// Report is the verdict on one history.
type Report struct {
	Ops, Unknown int
	// Linearizable is porcupine's verdict; Info is what it saw (for the
	// visualization).
	Linearizable porcupine.CheckResult
	Info         porcupine.LinearizationInfo
	// Errs holds every violation the simpler checks found.
	Errs []error
}

// Err joins the report's violations, porcupine's included.
func (r *Report) Err() error {
	errs := slices.Clone(r.Errs)
	switch r.Linearizable {
	case porcupine.Illegal:
		errs = append(errs, errors.New("history is not linearizable"))
	case porcupine.Unknown:
		errs = append(errs, errors.New("linearizability check timed out"))
	}
	return errors.Join(errs...)
}

// Check runs every checker on a closed history (see CloseOps): porcupine
// with KVModel (per key), header revisions against real time, and
// acknowledged writes against the final values (final maps every key to
// its value read after the traffic; missing: the key does not exist).
func Check(ops []Op, final map[string]*string, timeout time.Duration) *Report {
	r := &Report{Ops: len(ops)}
	history := make([]porcupine.Operation, len(ops))
	for i, op := range ops {
		if op.Output.Unknown {
			r.Unknown++
		}
		history[i] = porcupine.Operation{ClientId: op.Client, Call: op.Call, Return: op.Return, Input: op.Input, Output: op.Output}
	}
	r.Linearizable, r.Info = porcupine.CheckOperationsVerbose(KVModel.ToModel(), history, timeout)
	r.Errs = append(r.Errs, CheckRevisions(ops)...)
	if final != nil {
		r.Errs = append(r.Errs, CheckAcknowledged(ops, final)...)
	}
	return r
}

// maxReported bounds the violations a simple checker reports.
const maxReported = 10

// CheckRevisions checks header revisions against real time: if A returned
// before B was called, B's revision is at least A's, and above it if B
// wrote. Only operations with a known outcome count.
func CheckRevisions(ops []Op) []error {
	var known []Op
	for _, op := range ops {
		// Lease operations and refused puts answer no revision of theirs.
		if !op.Output.Unknown && !isLeaseOp(op.Input.Kind) && !op.Output.LeaseNotFound {
			known = append(known, op)
		}
	}
	byReturn := slices.Clone(known)
	slices.SortFunc(byReturn, func(a, b Op) int { return cmp.Compare(a.Return, b.Return) })
	byCall := slices.Clone(known)
	slices.SortFunc(byCall, func(a, b Op) int { return cmp.Compare(a.Call, b.Call) })
	var errs []error
	var best Op // the returned operation with the highest revision so far
	j := 0
	for _, b := range byCall {
		for ; j < len(byReturn) && byReturn[j].Return < b.Call; j++ {
			if byReturn[j].Output.Rev > best.Output.Rev {
				best = byReturn[j]
			}
		}
		if best.Output.Rev == 0 {
			continue
		}
		write := isWrite(b.Input, b.Output)
		if b.Output.Rev < best.Output.Rev || (write && b.Output.Rev == best.Output.Rev) {
			errs = append(errs, fmt.Errorf("revision went back in real time: %s (called at %s) after %s (returned at %s)",
				describeOp(b.Input, b.Output), time.Duration(b.Call), describeOp(best.Input, best.Output), time.Duration(best.Return)))
			if len(errs) == maxReported {
				break
			}
		}
	}
	return errs
}

// CheckAcknowledged checks that no acknowledged write is lost: each
// acknowledged put or successful cas either wrote the key's final value or
// has a write to the same key that may follow it (returned after it was
// called, or never returned); each acknowledged delete of a key that exists
// at the end likewise.
func CheckAcknowledged(ops []Op, final map[string]*string) []error {
	writes := map[string][]Op{}
	for _, op := range ops {
		if op.Input.Kind != OpGet && !isLeaseOp(op.Input.Kind) && (op.Output.Unknown || isWrite(op.Input, op.Output)) {
			writes[op.Input.Key] = append(writes[op.Input.Key], op)
		}
	}
	var errs []error
	for key, ws := range writes {
		cur, inFinal := final[key]
		if !inFinal {
			continue // not read back
		}
		for _, w := range ws {
			// A put with a lease may be undone by its lease's end: the
			// model checks those.
			if w.Output.Unknown || w.Input.Kind == OpPutLease {
				continue
			}
			if w.Input.Kind == OpDelete {
				if cur == nil {
					continue
				}
			} else if cur != nil && *cur == w.Input.Value {
				continue
			}
			overwritten := slices.ContainsFunc(ws, func(o Op) bool {
				return o.Return > w.Call && (o.Call != w.Call || o.Client != w.Client)
			})
			if !overwritten {
				errs = append(errs, fmt.Errorf("acknowledged %s is lost: the key's final value is %s and no later write to it exists",
					describeOp(w.Input, w.Output), describeValue(cur)))
				if len(errs) == maxReported {
					return errs
				}
			}
		}
	}
	return errs
}

func describeValue(v *string) string {
	if v == nil {
		return "<none>"
	}
	return fmt.Sprintf("%q", *v)
}

// Visualize writes porcupine's HTML view of the report to path.
func (r *Report) Visualize(path string) error {
	if err := porcupine.VisualizePath(KVModel.ToModel(), r.Info, path); err != nil {
		return fmt.Errorf("robustness: visualize to %s: %w", path, err)
	}
	return nil
}

// HistoryFile is a recorded history as stored under testdata/.
type HistoryFile struct {
	// Comment says where the history comes from and what it shows.
	Comment string `json:"comment"`
	// Want is the expected verdict: "ok" or "violation".
	Want string `json:"want"`
	// Final holds the values read back after the traffic (null: no key).
	Final map[string]*string `json:"final,omitempty"`
	Ops   []Op               `json:"ops"`
}

// WriteHistoryFile stores f as indented JSON.
func WriteHistoryFile(path string, f HistoryFile) error {
	b, err := json.MarshalIndent(f, "", " ")
	if err != nil {
		return fmt.Errorf("robustness: encode history: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("robustness: history dir: %w", err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return fmt.Errorf("robustness: write history: %w", err)
	}
	return nil
}

// ReadHistoryFile loads a history stored by WriteHistoryFile.
func ReadHistoryFile(path string) (HistoryFile, error) {
	var f HistoryFile
	b, err := os.ReadFile(path)
	if err != nil {
		return f, fmt.Errorf("robustness: read history: %w", err)
	}
	if err := json.Unmarshal(b, &f); err != nil {
		return f, fmt.Errorf("robustness: decode history %s: %w", path, err)
	}
	return f, nil
}
