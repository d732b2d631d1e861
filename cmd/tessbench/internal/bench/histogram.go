package bench

import (
	"fmt"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
)

const (
	// histLowest is the smallest distinguishable latency: 1µs, in the
	// histogram's unit of microseconds. Nothing on the etcd API is faster.
	histLowest = 1
	// histHighest is the largest latency recorded exactly: 10 minutes, far
	// past any per-request timeout and any open-loop backlog the MaxLag bound
	// allows. Larger values are clamped to it and counted.
	histHighest = int64(10 * time.Minute / time.Microsecond)
	// histSigFigs keeps every value within 0.1% of what was recorded.
	histSigFigs = 3
)

// Histogram records latencies in microseconds. It is not safe for concurrent
// use: each client records into its own and they are merged at the end.
type Histogram struct {
	h *hdr.Histogram
	// clamped counts values above the trackable range, recorded as the
	// highest trackable value.
	clamped int64
}

// NewHistogram returns an empty latency histogram.
func NewHistogram() *Histogram {
	return &Histogram{h: hdr.New(histLowest, histHighest, histSigFigs)}
}

// Record adds one latency. Negative durations (a clock step) count as 0 and
// durations past the trackable range as its highest value.
func (h *Histogram) Record(d time.Duration) {
	us := d.Microseconds()
	switch {
	case us < 0:
		us = 0
	case us > histHighest:
		us = histHighest
		h.clamped++
	}
	// Cannot fail: us is within [0, histHighest].
	_ = h.h.RecordValue(us)
}

// Merge adds every value of o into h.
func (h *Histogram) Merge(o *Histogram) {
	if o == nil {
		return
	}
	h.h.Merge(o.h)
	h.clamped += o.clamped
}

// Count is the number of recorded values.
func (h *Histogram) Count() int64 { return h.h.TotalCount() }

// Clamped is the number of values that were past the trackable range.
func (h *Histogram) Clamped() int64 { return h.clamped }

// Quantile returns the latency at quantile q in [0, 100] (50 is the median),
// as the highest value equivalent to the recorded one, so it never
// understates; 0 for an empty histogram.
func (h *Histogram) Quantile(q float64) time.Duration {
	return time.Duration(h.h.ValueAtQuantile(q)) * time.Microsecond
}

// Max returns the largest recorded latency (within the histogram's precision).
func (h *Histogram) Max() time.Duration {
	if h.Count() == 0 {
		return 0
	}
	return time.Duration(h.h.Max()) * time.Microsecond
}

// Mean returns the mean recorded latency.
func (h *Histogram) Mean() time.Duration {
	return time.Duration(h.h.Mean() * float64(time.Microsecond))
}

// Encode returns the histogram in the HdrHistogram V2 compressed format,
// base64 encoded, as HdrHistogram's tools (and DecodeHistogram) read it.
func (h *Histogram) Encode() (string, error) {
	b, err := h.h.Encode(hdr.V2CompressedEncodingCookieBase)
	if err != nil {
		return "", fmt.Errorf("bench: encode histogram: %w", err)
	}
	return string(b), nil
}

// DecodeHistogram reads what Encode wrote.
func DecodeHistogram(s string) (*Histogram, error) {
	h, err := hdr.Decode([]byte(s))
	if err != nil {
		return nil, fmt.Errorf("bench: decode histogram: %w", err)
	}
	return &Histogram{h: h}, nil
}

// Summary reduces the histogram to the figures a report prints.
func (h *Histogram) Summary() LatencySummary {
	return LatencySummary{
		Mean:  ms(h.Mean()),
		P50:   ms(h.Quantile(50)),
		P90:   ms(h.Quantile(90)),
		P99:   ms(h.Quantile(99)),
		P999:  ms(h.Quantile(99.9)),
		Max:   ms(h.Max()),
		Clamp: h.clamped,
	}
}

// LatencySummary holds a histogram's figures in milliseconds.
type LatencySummary struct {
	Mean float64 `json:"mean"`
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p99_9"`
	Max  float64 `json:"max"`
	// Clamp counts latencies above the histogram's 10-minute range.
	Clamp int64 `json:"clamped,omitempty"`
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
