package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
)

// format is an output format (-w).
type format int

const (
	formatTable format = iota
	formatJSON
)

func parseFormat(s string) (format, error) {
	switch s {
	case "table":
		return formatTable, nil
	case "json":
		return formatJSON, nil
	}
	return 0, fmt.Errorf("tessctl: unknown output format %q (table or json)", s)
}

// writeRanges writes the ranges as an aligned table or as JSON
// ({"ranges": [...]}).
func writeRanges(w io.Writer, f format, ranges []rangeInfo) error {
	if ranges == nil {
		ranges = []rangeInfo{}
	}
	if f == formatJSON {
		return writeJSON(w, struct {
			Ranges []rangeInfo `json:"ranges"`
		}{ranges})
	}
	tw := newTable(w)
	fmt.Fprintln(tw, "RANGE\tSPAN\tREPLICAS\tLEADER\tTERM\tAPPLIED\tRESOLVED")
	for _, r := range ranges {
		id, span := strconv.FormatUint(r.ID, 10), r.Span
		if r.Meta {
			id, span = "meta", "-"
		}
		resolved := "-"
		if r.ResolvedRevision != nil {
			resolved = formatRevision(*r.ResolvedRevision)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n",
			id, span, joinReplicas(r.Replicas), nodeOrDash(r.Leader), r.Term, orDash(r.AppliedIndex), resolved)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprint(w, "\nREPLICAS: node id/replica id of each replica (a learner ends in \"L\").\n"+
		"RESOLVED: no write at or below this revision can still appear in the range (the leader's view).\n"+revisionLegend)
	return err
}

// writeStatus writes the nodes as an aligned table or as JSON
// ({"nodes": [...]}).
func writeStatus(w io.Writer, f format, nodes []nodeStatus) error {
	if nodes == nil {
		nodes = []nodeStatus{}
	}
	if f == formatJSON {
		return writeJSON(w, struct {
			Nodes []nodeStatus `json:"nodes"`
		}{nodes})
	}
	tw := newTable(w)
	fmt.Fprintln(tw, "ID\tNAME\tCLIENT URL\tREPLICAS\tLEADERS\tMETA\tHEALTH")
	for _, n := range nodes {
		meta := "-"
		switch {
		case n.MetaLeader:
			meta = "leader"
		case n.HasMeta:
			meta = "replica"
		}
		health := n.Health
		if n.Error != "" && !strings.Contains(health, n.Error) {
			health += " (" + n.Error + ")"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n",
			n.ID, orDash(&n.Name), orDash(&n.ClientURL), orDash(n.Replicas), orDash(n.Leaders), meta, health)
	}
	return tw.Flush()
}

func newTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
}

func writeJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// joinReplicas shows replicas as node/replica id: "1/1,2/3,3/2".
func joinReplicas(reps []replicaRef) string {
	if len(reps) == 0 {
		return "-"
	}
	s := make([]string, len(reps))
	for i, r := range reps {
		s[i] = fmt.Sprintf("%d/%d", r.Node, r.Replica)
		if r.Type == "learner" {
			s[i] += "L"
		}
	}
	return strings.Join(s, ",")
}

func joinIDs(ids []uint64) string {
	if len(ids) == 0 {
		return "-"
	}
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = strconv.FormatUint(id, 10)
	}
	return strings.Join(s, ",")
}

func nodeOrDash(id uint64) string {
	if id == 0 {
		return "-"
	}
	return strconv.FormatUint(id, 10)
}

// orDash formats *v, or "-" when v is nil or points to "".
func orDash[T any](v *T) string {
	if v == nil {
		return "-"
	}
	s := fmt.Sprint(*v)
	if s == "" {
		return "-"
	}
	return s
}
