package bench

import (
	"sync/atomic"
	"time"
)

// Schedule hands out the requests of a run. Clients call Next concurrently;
// each request index is given to exactly one client.
//
// In an open loop (rate > 0) request i has the intended send time
// start + i/rate, fixed in advance: a client that claims it late (because all
// clients were busy) still measures from that time. In a closed loop there is
// no intended time; the request is sent when claimed.
//
// Worked example, rate 100/s (one request per 10ms), one client, each request
// taking 25ms: request 0 is intended at 0ms, sent at 0, done at 25 (latency
// 25); request 1 is intended at 10, sent at 25, done at 50 (latency 40);
// request 2 is intended at 20, sent at 50, done at 75 (latency 55). A closed
// loop, or an open loop that measured from the actual send, would report 25ms
// for all three and hide the queue that a real user at 100/s would see.
type Schedule struct {
	start    time.Time
	rate     float64
	total    int64 // 0: no count limit
	duration time.Duration
	next     atomic.Int64
}

// Ticket is one claimed request.
type Ticket struct {
	// Index counts requests from 0 in schedule order.
	Index int64
	// Intended is the time the request should be sent (open loop only; zero
	// in a closed loop).
	Intended time.Time
}

// NewSchedule returns the schedule of a run that starts at start. total and
// duration bound it (0: unbounded; at least one must be set); rate > 0 makes
// it an open loop.
func NewSchedule(start time.Time, rate float64, total int64, duration time.Duration) *Schedule {
	return &Schedule{start: start, rate: rate, total: total, duration: duration}
}

// Open reports whether the schedule is an open loop.
func (s *Schedule) Open() bool { return s.rate > 0 }

// Start is the time the run started.
func (s *Schedule) Start() time.Time { return s.start }

// IntendedAt returns the intended send time of request i (open loop).
func (s *Schedule) IntendedAt(i int64) time.Time {
	return s.start.Add(time.Duration(float64(i) * float64(time.Second) / s.rate))
}

// Next claims the next request. now is the caller's current time, used in a
// closed loop to stop at the duration. ok is false when the run has no more
// requests; later calls keep returning false.
func (s *Schedule) Next(now time.Time) (t Ticket, ok bool) {
	if !s.Open() && s.duration > 0 && now.Sub(s.start) >= s.duration {
		return Ticket{}, false
	}
	i := s.next.Add(1) - 1
	if s.total > 0 && i >= s.total {
		return Ticket{}, false
	}
	t = Ticket{Index: i}
	if s.Open() {
		t.Intended = s.IntendedAt(i)
		if s.duration > 0 && t.Intended.Sub(s.start) >= s.duration {
			return Ticket{}, false
		}
	}
	return t, true
}

// Remaining returns how many requests of an open-loop schedule were never
// claimed, counting from the next unclaimed index. It is 0 for a closed loop.
func (s *Schedule) Remaining() int64 {
	if !s.Open() {
		return 0
	}
	next := s.next.Load()
	end := s.End()
	if end <= next {
		return 0
	}
	return end - next
}

// End returns the number of requests an open-loop schedule holds.
func (s *Schedule) End() int64 {
	end := int64(-1)
	if s.total > 0 {
		end = s.total
	}
	if s.duration > 0 {
		// The first index whose intended time is at or past the duration.
		n := int64(s.duration.Seconds() * s.rate)
		for s.IntendedAt(n).Sub(s.start) < s.duration {
			n++
		}
		for n > 0 && s.IntendedAt(n-1).Sub(s.start) >= s.duration {
			n--
		}
		if end < 0 || n < end {
			end = n
		}
	}
	return end
}

// LastIntended is the intended time of the schedule's last request (open
// loop), or start when it holds none.
func (s *Schedule) LastIntended() time.Time {
	end := s.End()
	if end <= 0 {
		return s.start
	}
	return s.IntendedAt(end - 1)
}
