package server

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

func gatherAliases(t *testing.T, reg *prometheus.Registry, aliases []etcdAlias) map[string]*dto.MetricFamily {
	t.Helper()
	mfs, err := aliasGatherer{src: reg, aliases: aliases}.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*dto.MetricFamily{}
	for _, mf := range mfs {
		out[mf.GetName()] = mf
	}
	return out
}

// TestAliasMergesHistograms: a histogram vector becomes one etcd histogram
// whose count, sum and buckets are the sums of its series.
func TestAliasMergesHistograms(t *testing.T) {
	reg := prometheus.NewRegistry()
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "tessera_x_seconds", Buckets: []float64{0.1, 1}}, []string{"sync"})
	reg.MustRegister(h)
	h.WithLabelValues("true").Observe(0.05)
	h.WithLabelValues("true").Observe(0.5)
	h.WithLabelValues("false").Observe(0.05)
	h.WithLabelValues("false").Observe(5)

	got := gatherAliases(t, reg, []etcdAlias{{etcd: "etcd_x_seconds", tessera: "tessera_x_seconds", merge: true}})
	mf := got["etcd_x_seconds"]
	if mf == nil || len(mf.GetMetric()) != 1 {
		t.Fatalf("etcd_x_seconds: %v", mf)
	}
	m := mf.GetMetric()[0]
	if len(m.GetLabel()) != 0 {
		t.Errorf("merged series keeps labels %v", m.GetLabel())
	}
	hist := m.GetHistogram()
	if hist.GetSampleCount() != 4 || hist.GetSampleSum() != 5.6 {
		t.Errorf("count %d sum %v, want 4 and 5.6", hist.GetSampleCount(), hist.GetSampleSum())
	}
	var cum []uint64
	for _, b := range hist.GetBucket() {
		cum = append(cum, b.GetCumulativeCount())
	}
	if len(cum) != 2 || cum[0] != 2 || cum[1] != 3 {
		t.Errorf("cumulative buckets %v, want [2 3]", cum)
	}
	// The source is untouched.
	src, _ := reg.Gather()
	for _, f := range src {
		if f.GetName() == "tessera_x_seconds" && len(f.GetMetric()) != 2 {
			t.Errorf("source has %d series after aliasing, want 2", len(f.GetMetric()))
		}
	}
}

// TestAliasRenamesLabel: the peer label becomes etcd's To, values kept.
func TestAliasRenamesLabel(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tessera_y_total"}, []string{"peer"})
	reg.MustRegister(c)
	c.WithLabelValues("2").Add(3)
	c.WithLabelValues("3").Add(4)

	got := gatherAliases(t, reg, []etcdAlias{
		{etcd: "etcd_y_total", tessera: "tessera_y_total", renameLabel: [2]string{"peer", "To"}},
		{etcd: "etcd_absent_total", tessera: "tessera_absent_total"},
	})
	if _, ok := got["etcd_absent_total"]; ok {
		t.Errorf("alias of a metric that does not exist is exported")
	}
	mf := got["etcd_y_total"]
	if mf == nil || len(mf.GetMetric()) != 2 {
		t.Fatalf("etcd_y_total: %v", mf)
	}
	want := map[string]float64{"2": 3, "3": 4}
	for _, m := range mf.GetMetric() {
		l := m.GetLabel()
		if len(l) != 1 || l[0].GetName() != "To" || want[l[0].GetValue()] != m.GetCounter().GetValue() {
			t.Errorf("series %v = %v", l, m.GetCounter().GetValue())
		}
	}
}

func TestConfigValidateMetrics(t *testing.T) {
	for _, tc := range []struct {
		top  int
		ok   bool
		what string
	}{
		{0, true, "off"}, {DefaultMetricsTopRanges, true, "default"}, {maxMetricsTopRanges, true, "max"},
		{-1, false, "negative"}, {maxMetricsTopRanges + 1, false, "above max"},
	} {
		cfg := DefaultConfig()
		cfg.MetricsTopRanges = tc.top
		if err := cfg.Validate(); (err == nil) != tc.ok {
			t.Errorf("%s (%d): Validate() = %v", tc.what, tc.top, err)
		}
	}
}
