package router

import (
	"testing"
	"time"
)

func TestParseAutoCompaction(t *testing.T) {
	for _, tc := range []struct {
		mode, retention string
		want            AutoCompaction
		err             bool
	}{
		{"periodic", "0", AutoCompaction{}, false},
		{"periodic", "", AutoCompaction{}, false},
		{"periodic", "1", AutoCompaction{Period: time.Hour}, false},
		{"periodic", "0.5", AutoCompaction{Period: 30 * time.Minute}, false},
		{"periodic", "5m", AutoCompaction{Period: 5 * time.Minute}, false},
		{"periodic", "-1", AutoCompaction{}, true},
		{"periodic", "soon", AutoCompaction{}, true},
		{"revision", "1000", AutoCompaction{Writes: 1000, RevisionInterval: DefaultRevisionCompactInterval}, false},
		{"revision", "1h", AutoCompaction{}, true},
		{"revision", "-5", AutoCompaction{}, true},
		{"weekly", "1", AutoCompaction{}, true},
	} {
		got, err := ParseAutoCompaction(AutoCompactionConfig{Mode: tc.mode, Retention: tc.retention})
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("%s %q: %+v, %v; want %+v, error %v", tc.mode, tc.retention, got, err, tc.want, tc.err)
		}
	}
	for _, tc := range []struct{ retention, want time.Duration }{
		{time.Second, time.Second}, {time.Minute, 6 * time.Second}, {100 * time.Hour, time.Hour},
	} {
		if got := autoCompactInterval(tc.retention); got != tc.want {
			t.Errorf("interval for %v: %v, want %v", tc.retention, got, tc.want)
		}
	}
}
