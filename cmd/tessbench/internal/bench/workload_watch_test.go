package bench

import (
	"strings"
	"testing"
	"time"
)

func TestStamp(t *testing.T) {
	buf := value(32)
	putStamp(buf, 1234567*time.Microsecond)
	got, ok := parseStamp(buf)
	if !ok || got != 1234567*time.Microsecond {
		t.Errorf("stamp round trip = %s %v", got, ok)
	}
	if _, ok := parseStamp([]byte("short")); ok {
		t.Error("short value parsed")
	}
	if _, ok := parseStamp([]byte(strings.Repeat("z", 16))); ok {
		t.Error("non-hex value parsed")
	}
}
