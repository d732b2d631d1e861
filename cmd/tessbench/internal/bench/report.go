package bench

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
)

// WriteTable writes r for a person: a header naming the run, one row per op
// with its throughput and latency percentiles, and the errors by class.
func (r *Result) WriteTable(w io.Writer) error {
	var b strings.Builder
	label := r.Workload
	if r.Case != "" && r.Case != r.Workload {
		label = r.Case + " (" + r.Workload + ")"
	}
	if r.System != "" {
		label += " on " + r.System
	}
	loop := "closed loop"
	if r.Mode == "open" {
		loop = fmt.Sprintf("open loop at %g req/s", r.Rate)
	}
	fmt.Fprintf(&b, "%s: %d clients on %d conns, %s, %.2fs\n", label, r.Clients, r.Conns, loop, float64(r.Elapsed))
	fmt.Fprintf(&b, "endpoints: %s\n", strings.Join(r.Endpoints, ","))
	if len(r.Params) > 0 {
		var ps []string
		for _, k := range slices.Sorted(maps.Keys(r.Params)) {
			ps = append(ps, fmt.Sprintf("%s=%v", k, r.Params[k]))
		}
		fmt.Fprintf(&b, "params: %s\n", strings.Join(ps, " "))
	}
	b.WriteString("\n")

	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "op\tcount\terrors\tops/s\tp50 ms\tp90 ms\tp99 ms\tp99.9 ms\tmax ms\t")
	for _, o := range r.Ops {
		l := o.Latency
		fmt.Fprintf(tw, "%s\t%d\t%d\t%.1f\t%s\t%s\t%s\t%s\t%s\t\n",
			o.Name, o.Count, o.Errors, o.Throughput,
			FormatMs(l.P50), FormatMs(l.P90), FormatMs(l.P99), FormatMs(l.P999), FormatMs(l.Max))
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("bench: write table: %w", err)
	}

	if len(r.Errors) == 0 {
		b.WriteString("\nerrors: none\n")
	} else {
		b.WriteString("\nerrors:\n")
		keys := slices.SortedFunc(maps.Keys(r.Errors), func(a, c string) int {
			if d := r.Errors[c] - r.Errors[a]; d != 0 {
				return int(min(max(d, -1), 1))
			}
			return strings.Compare(a, c)
		})
		for _, k := range keys {
			fmt.Fprintf(&b, "  %8d  %s\n", r.Errors[k], k)
		}
	}
	if r.Unsent > 0 {
		fmt.Fprintf(&b, "unsent: %d\n", r.Unsent)
	}
	if len(r.Counters) > 0 {
		var cs []string
		for _, k := range slices.Sorted(maps.Keys(r.Counters)) {
			cs = append(cs, fmt.Sprintf("%s=%d", k, r.Counters[k]))
		}
		fmt.Fprintf(&b, "counters: %s\n", strings.Join(cs, " "))
	}
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "note: %s\n", n)
	}
	_, err := io.WriteString(w, trimLines(b.String()))
	if err != nil {
		return fmt.Errorf("bench: write table: %w", err)
	}
	return nil
}

// FormatMs prints a latency in milliseconds with three significant digits
// at least (0.123, 1.23, 12.3, 123).
func FormatMs(v float64) string {
	switch {
	case v == 0:
		return "0"
	case v < 1:
		return fmt.Sprintf("%.3f", v)
	case v < 10:
		return fmt.Sprintf("%.2f", v)
	case v < 100:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.0f", v)
}

// trimLines drops the trailing blanks tabwriter leaves on each line.
func trimLines(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = strings.TrimRight(l, " ")
	}
	return strings.Join(lines, "\n")
}
