package bench

import (
	"bytes"
	"strings"
	"testing"
)

func TestResultTable(t *testing.T) {
	res := sampleResult(t)
	res.Notes = []string{"something to know"}
	res.Unsent = 7
	var buf bytes.Buffer
	if err := res.WriteTable(&buf); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{
		"put: 4 clients on 1 conns, open loop at 50 req/s, 2.00s",
		"endpoints: 127.0.0.1:2379",
		"params: val-size=256",
		"op   count  errors  ops/s  p50 ms  p90 ms  p99 ms  p99.9 ms  max ms",
		"put  100    2       50.0   50.0    90.0    99.0    100       100",
		"get  1      0       0.5    0.500   0.500   0.500   0.500     0.500",
		"2  Unavailable: etcdserver: leader changed",
		"unsent: 7",
		"counters: txn_conflicts=3",
		"note: something to know",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	for _, l := range strings.Split(out, "\n") {
		if strings.HasSuffix(l, " ") {
			t.Errorf("trailing blank in %q", l)
		}
	}
}

func TestFormatMs(t *testing.T) {
	for _, tc := range []struct {
		in   float64
		want string
	}{{0, "0"}, {0.1234, "0.123"}, {1.234, "1.23"}, {12.34, "12.3"}, {123.4, "123"}, {12345.6, "12346"}} {
		if got := FormatMs(tc.in); got != tc.want {
			t.Errorf("FormatMs(%g) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
