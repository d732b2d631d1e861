package bench

import (
	"math"
	"testing"
	"time"
)

// within reports whether got is within rel of want.
func within(got, want time.Duration, rel float64) bool {
	return math.Abs(float64(got-want)) <= rel*float64(want)
}

func TestHistogramQuantilesOfUniform(t *testing.T) {
	h := NewHistogram()
	// 1ms, 2ms, …, 10000ms: quantile q is q% of 10s.
	for i := 1; i <= 10000; i++ {
		h.Record(time.Duration(i) * time.Millisecond)
	}
	if h.Count() != 10000 {
		t.Fatalf("count = %d, want 10000", h.Count())
	}
	for _, tc := range []struct {
		q    float64
		want time.Duration
	}{
		{50, 5000 * time.Millisecond},
		{90, 9000 * time.Millisecond},
		{99, 9900 * time.Millisecond},
		{99.9, 9990 * time.Millisecond},
		{100, 10000 * time.Millisecond},
	} {
		// Three significant figures: every value within 0.1%.
		if got := h.Quantile(tc.q); !within(got, tc.want, 0.001) {
			t.Errorf("p%g = %s, want %s ±0.1%%", tc.q, got, tc.want)
		}
	}
	if got := h.Max(); !within(got, 10*time.Second, 0.001) {
		t.Errorf("max = %s, want 10s", got)
	}
	if got := h.Mean(); !within(got, 5000500*time.Microsecond, 0.001) {
		t.Errorf("mean = %s, want 5.0005s", got)
	}
}

func TestHistogramSmallValuesAreExact(t *testing.T) {
	h := NewHistogram()
	// Below 2048µs a 3-figure HDR histogram has unit buckets.
	for _, us := range []int64{1, 7, 250, 999, 2047} {
		h.Record(time.Duration(us) * time.Microsecond)
	}
	if got := h.Quantile(0); got != time.Microsecond {
		t.Errorf("min = %s, want 1µs", got)
	}
	if got := h.Quantile(50); got != 250*time.Microsecond {
		t.Errorf("p50 = %s, want 250µs", got)
	}
	if got := h.Max(); got != 2047*time.Microsecond {
		t.Errorf("max = %s, want 2047µs", got)
	}
}

func TestHistogramSkewedTail(t *testing.T) {
	// 99% fast, 1% slow: the p99 is fast and the p99.9 slow, the shape a
	// mean hides.
	h := NewHistogram()
	for range 9900 {
		h.Record(time.Millisecond)
	}
	for range 100 {
		h.Record(time.Second)
	}
	if got := h.Quantile(99); !within(got, time.Millisecond, 0.001) {
		t.Errorf("p99 = %s, want 1ms", got)
	}
	if got := h.Quantile(99.9); !within(got, time.Second, 0.001) {
		t.Errorf("p99.9 = %s, want 1s", got)
	}
	if got := h.Mean(); !within(got, 10990*time.Microsecond, 0.001) {
		t.Errorf("mean = %s, want 10.99ms", got)
	}
}

func TestHistogramMergeEqualsRecordingTogether(t *testing.T) {
	a, b, all := NewHistogram(), NewHistogram(), NewHistogram()
	for i := 1; i <= 5000; i++ {
		d := time.Duration(i*i) * time.Microsecond
		if i%3 == 0 {
			a.Record(d)
		} else {
			b.Record(d)
		}
		all.Record(d)
	}
	merged := NewHistogram()
	merged.Merge(a)
	merged.Merge(b)
	merged.Merge(nil)
	if merged.Count() != all.Count() {
		t.Fatalf("merged count %d, want %d", merged.Count(), all.Count())
	}
	for _, q := range []float64{0, 10, 50, 90, 99, 99.9, 100} {
		if g, w := merged.Quantile(q), all.Quantile(q); g != w {
			t.Errorf("p%g: merged %s, together %s", q, g, w)
		}
	}
}

func TestHistogramClampsOutOfRange(t *testing.T) {
	h := NewHistogram()
	h.Record(-time.Second) // a clock step: counted as 0
	h.Record(time.Hour)    // past the 10-minute range
	if h.Count() != 2 {
		t.Fatalf("count = %d, want 2", h.Count())
	}
	if h.Clamped() != 1 {
		t.Errorf("clamped = %d, want 1", h.Clamped())
	}
	if got := h.Max(); !within(got, 10*time.Minute, 0.001) {
		t.Errorf("max = %s, want 10m", got)
	}
	if got := h.Quantile(0); got != 0 {
		t.Errorf("min = %s, want 0", got)
	}
	if s := h.Summary(); s.Clamp != 1 {
		t.Errorf("summary clamp = %d, want 1", s.Clamp)
	}
}

func TestHistogramEmpty(t *testing.T) {
	h := NewHistogram()
	if h.Quantile(99) != 0 || h.Max() != 0 || h.Mean() != 0 {
		t.Errorf("empty histogram: p99 %s max %s mean %s, want zeros", h.Quantile(99), h.Max(), h.Mean())
	}
	if s := h.Summary(); s != (LatencySummary{}) {
		t.Errorf("empty summary = %+v", s)
	}
}

func TestHistogramEncodeRoundTrip(t *testing.T) {
	h := NewHistogram()
	for i := 1; i <= 1000; i++ {
		h.Record(time.Duration(i) * 37 * time.Microsecond)
	}
	enc, err := h.Encode()
	if err != nil {
		t.Fatal(err)
	}
	back, err := DecodeHistogram(enc)
	if err != nil {
		t.Fatal(err)
	}
	if back.Count() != h.Count() {
		t.Fatalf("count %d, want %d", back.Count(), h.Count())
	}
	if back.Summary() != h.Summary() {
		t.Errorf("summary %+v, want %+v", back.Summary(), h.Summary())
	}
	if _, err := DecodeHistogram("not base64!"); err == nil {
		t.Error("decoding garbage succeeded")
	}
}

func TestSummaryIsInMilliseconds(t *testing.T) {
	h := NewHistogram()
	h.Record(1500 * time.Microsecond)
	s := h.Summary()
	if math.Abs(s.P50-1.5) > 0.0015 || math.Abs(s.Max-1.5) > 0.0015 {
		t.Errorf("summary %+v, want 1.5ms figures", s)
	}
}
