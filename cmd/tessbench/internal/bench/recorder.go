package bench

import "time"

// Recorder collects the outcomes of one client's requests. It is not safe
// for concurrent use; the runner gives each client its own and merges them.
type Recorder struct {
	ops    map[string]*opRecord
	errors map[string]int64
}

type opRecord struct {
	hist   *Histogram
	errors int64
	// span, when set, replaces the run's elapsed time in the op's
	// throughput (watch events arrive after the last put).
	span time.Duration
}

// NewRecorder returns an empty recorder.
func NewRecorder() *Recorder {
	return &Recorder{ops: map[string]*opRecord{}, errors: map[string]int64{}}
}

func (r *Recorder) op(name string) *opRecord {
	o, ok := r.ops[name]
	if !ok {
		o = &opRecord{hist: NewHistogram()}
		r.ops[name] = o
	}
	return o
}

// Record adds the outcome of one request of the named op: its latency when it
// succeeded, its error class when it failed.
func (r *Recorder) Record(op string, latency time.Duration, err error) {
	o := r.op(op)
	if err != nil {
		o.errors++
		r.errors[Classify(err)]++
		return
	}
	o.hist.Record(latency)
}

// RecordError counts a failure that belongs to no single request (a watcher
// that missed events, a stream that broke) under the given class.
func (r *Recorder) RecordError(op, class string, n int64) {
	r.op(op).errors += n
	r.errors[class] += n
}

// Histogram returns the named op's histogram, creating it if needed, so that
// workloads can record latencies the runner does not see (watch events).
func (r *Recorder) Histogram(op string) *Histogram { return r.op(op).hist }

// SetSpan sets the time over which the named op's throughput is computed.
func (r *Recorder) SetSpan(op string, d time.Duration) { r.op(op).span = d }

// Merge adds everything o recorded into r.
func (r *Recorder) Merge(o *Recorder) {
	for name, rec := range o.ops {
		mine := r.op(name)
		mine.hist.Merge(rec.hist)
		mine.errors += rec.errors
		mine.span = max(mine.span, rec.span)
	}
	for k, n := range o.errors {
		r.errors[k] += n
	}
}
