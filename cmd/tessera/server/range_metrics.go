package server

import (
	"github.com/prometheus/client_golang/prometheus"
)

// rangeMetrics are the distributions of the led ranges' sizes and loads,
// observed by the split loop at every check (one observation per range
// this node leads, every --range-split-check-interval).
type rangeMetrics struct {
	size prometheus.Histogram
	qps  prometheus.Histogram
}

func newRangeMetrics(reg prometheus.Registerer) (*rangeMetrics, error) {
	m := &rangeMetrics{
		size: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "tessera_range_size_bytes",
			Help:    "Sizes (live and history data) of the ranges this node leads, observed at every split check.",
			Buckets: prometheus.ExponentialBuckets(64<<10, 2, 16), // 64 KiB .. 2 GiB
		}),
		qps: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "tessera_range_qps",
			Help:    "Request rates (requests/s, decayed over about a minute) of the ranges this node leads, observed at every split check.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 16), // 1 .. 32768
		}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.size, m.qps} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

// observe records one led range's size and load (m may be nil).
func (m *rangeMetrics) observe(bytes int64, qps float64) {
	if m == nil {
		return
	}
	m.size.Observe(float64(bytes))
	m.qps.Observe(qps)
}
