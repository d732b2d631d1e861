package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"time"
)

// Result is what one run measured. It marshals to the JSON that --json
// prints.
type Result struct {
	// Workload is the workload's name, Case a label set by compare.
	Workload string `json:"workload"`
	Case     string `json:"case,omitempty"`
	// System names the server under test when known ("etcd", "tessera").
	System    string   `json:"system,omitempty"`
	Endpoints []string `json:"endpoints"`
	Conns     int      `json:"conns"`
	Clients   int      `json:"clients"`
	// Mode is "closed" or "open"; Rate is the open loop's target in req/s.
	Mode string  `json:"mode"`
	Rate float64 `json:"rate,omitempty"`
	// Params are the workload's parameters, by flag name.
	Params map[string]any `json:"params,omitempty"`
	// Start is when the first request was scheduled; Elapsed runs from then
	// to the last completion.
	Start   time.Time `json:"start"`
	Elapsed Seconds   `json:"elapsed_s"`
	// Ops holds one entry per kind of request, sorted by name.
	Ops []*OpResult `json:"ops"`
	// Errors counts failed requests by class (see Classify).
	Errors map[string]int64 `json:"errors"`
	// Unsent counts open-loop requests that the MaxLag bound kept from being
	// sent; their latency is in no histogram.
	Unsent int64 `json:"unsent,omitempty"`
	// Counters are workload-specific figures, e.g. "txn_conflicts".
	Counters map[string]int64 `json:"counters,omitempty"`
	// Notes explain anything a reader of the numbers must know.
	Notes []string `json:"notes,omitempty"`
}

// OpResult holds the figures of one kind of request.
type OpResult struct {
	Name string `json:"name"`
	// Count is the number of successful requests, Errors of failed ones.
	Count  int64 `json:"count"`
	Errors int64 `json:"errors"`
	// Throughput is successful requests per second over the run's elapsed
	// time (for the watch workload: events delivered per second).
	Throughput float64 `json:"throughput"`
	// Latency summarises the histogram in milliseconds.
	Latency LatencySummary `json:"latency_ms"`
	// HDR is the full histogram (microseconds), HdrHistogram V2 compressed
	// and base64 encoded.
	HDR string `json:"hdr"`

	hist *Histogram
}

// Histogram returns the op's latency histogram (nil for a Result read back
// from JSON until DecodeHDR is called).
func (o *OpResult) Histogram() *Histogram { return o.hist }

// DecodeHDR restores the histogram of an OpResult read from JSON.
func (o *OpResult) DecodeHDR() error {
	h, err := DecodeHistogram(o.HDR)
	if err != nil {
		return fmt.Errorf("bench: op %s: %w", o.Name, err)
	}
	o.hist = h
	return nil
}

// Op returns the named op, or nil.
func (r *Result) Op(name string) *OpResult {
	for _, o := range r.Ops {
		if o.Name == name {
			return o
		}
	}
	return nil
}

// TotalErrors sums the error counts.
func (r *Result) TotalErrors() int64 {
	var n int64
	for _, c := range r.Errors {
		n += c
	}
	return n
}

// fill computes the ops of r from a merged recorder.
func (r *Result) fill(rec *Recorder) error {
	r.Ops = nil
	r.Errors = maps.Clone(rec.errors)
	for _, name := range slices.Sorted(maps.Keys(rec.ops)) {
		o := rec.ops[name]
		elapsed := r.Elapsed.Duration()
		if o.span > 0 {
			elapsed = o.span
		}
		op, err := NewOpResult(name, o.hist, o.errors, elapsed)
		if err != nil {
			return err
		}
		r.Ops = append(r.Ops, op)
	}
	return nil
}

// NewOpResult summarises a histogram measured over elapsed.
func NewOpResult(name string, h *Histogram, errors int64, elapsed time.Duration) (*OpResult, error) {
	enc, err := h.Encode()
	if err != nil {
		return nil, err
	}
	op := &OpResult{
		Name:    name,
		Count:   h.Count(),
		Errors:  errors,
		Latency: h.Summary(),
		HDR:     enc,
		hist:    h,
	}
	if elapsed > 0 {
		op.Throughput = float64(h.Count()) / elapsed.Seconds()
	}
	return op, nil
}

// WriteJSON writes r as indented JSON.
func (r *Result) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("bench: write json: %w", err)
	}
	return nil
}

// ReadJSON reads a Result written by WriteJSON, histograms included.
func ReadJSON(rd io.Reader) (*Result, error) {
	var r Result
	if err := json.NewDecoder(rd).Decode(&r); err != nil {
		return nil, fmt.Errorf("bench: read json: %w", err)
	}
	for _, o := range r.Ops {
		if err := o.DecodeHDR(); err != nil {
			return nil, err
		}
	}
	return &r, nil
}

// Seconds is a duration that marshals as a number of seconds.
type Seconds float64

// Duration converts s back to a time.Duration.
func (s Seconds) Duration() time.Duration { return time.Duration(float64(s) * float64(time.Second)) }

// ToSeconds converts a duration.
func ToSeconds(d time.Duration) Seconds { return Seconds(d.Seconds()) }
