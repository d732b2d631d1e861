// Command gen writes Tessera's Grafana dashboards (deploy/grafana/*.json)
// from the panel lists below: one definition, consistent layout, templated
// datasource and instance. Run `go run ./deploy/grafana/gen` (or `make
// dashboards`) after editing; a test checks the committed JSON is current.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
)

// sel is the selector every Tessera query carries: the job convention of
// deploy/prometheus and the instance variable.
const sel = `job=~"$job",instance=~"$instance"`

type target struct {
	Expr   string
	Legend string
}

type panel struct {
	Title   string
	Desc    string
	Unit    string // Grafana unit: s, bytes, reqps, short, percentunit
	Stat    bool   // a single-value stat panel instead of a time series
	Targets []target
}

type row struct {
	Title  string
	Panels []panel
}

type dashboard struct {
	File  string
	UID   string
	Title string
	Desc  string
	Rows  []row
}

func q(format string) string { return fmt.Sprintf(format, sel) }

func t(expr, legend string) target { return target{Expr: expr, Legend: legend} }

// p99 is the 99th percentile of a histogram by instance.
func p99(metric string) string {
	return fmt.Sprintf(`histogram_quantile(0.99, sum by (instance, le) (rate(%s_bucket{%s}[$__rate_interval])))`, metric, sel)
}

var dashboards = []dashboard{
	{
		File: "tessera-overview.json", UID: "tessera-overview", Title: "Tessera / Cluster overview",
		Desc: "Health, traffic, errors and latency of a Tessera cluster.",
		Rows: []row{{Title: "Health", Panels: []panel{
			{Title: "Nodes up", Stat: true, Unit: "short", Desc: "Tessera nodes Prometheus scrapes successfully.",
				Targets: []target{t(q(`sum(up{%s})`), "up")}},
			{Title: "Nodes with every group led", Stat: true, Unit: "short", Desc: "Nodes where every local Raft group (meta and ranges) knows a leader (etcd_server_has_leader).",
				Targets: []target{t(q(`sum(etcd_server_has_leader{%s})`), "has leader")}},
			{Title: "Ranges without a leader", Stat: true, Unit: "short", Desc: "Local replicas that know no leader, summed over nodes: above 0 for long means an unavailable range.",
				Targets: []target{t(q(`sum(tessera_shard_replicas{%s,state="no_leader"})`), "no leader")}},
			{Title: "Active alarms", Stat: true, Unit: "short", Desc: "Alarms (NOSPACE) active in the cluster, as the most recent node sees them.",
				Targets: []target{t(q(`max(tessera_alarms{%s})`), "alarms")}},
		}}, {Title: "Traffic", Panels: []panel{
			{Title: "Requests by method", Unit: "reqps", Desc: "etcd API requests handled per second, by gRPC method (client port).",
				Targets: []target{t(q(`sum by (grpc_method) (rate(grpc_server_handled_total{%s,grpc_type="unary"}[$__rate_interval]))`), "{{grpc_method}}")}},
			{Title: "Request errors", Unit: "reqps", Desc: "etcd API requests that ended with an error code, by method and code.",
				Targets: []target{t(q(`sum by (grpc_method, grpc_code) (rate(grpc_server_handled_total{%s,grpc_type="unary",grpc_code!="OK"}[$__rate_interval]))`), "{{grpc_method}} {{grpc_code}}")}},
			{Title: "Request latency p99", Unit: "s", Desc: "99th percentile of the handling time of unary etcd API requests, by method.",
				Targets: []target{t(fmt.Sprintf(`histogram_quantile(0.99, sum by (grpc_method, le) (rate(grpc_server_handling_seconds_bucket{%s,grpc_type="unary"}[$__rate_interval])))`, sel), "{{grpc_method}}")}},
			{Title: "Open watch streams", Unit: "short", Desc: "Watch streams open on each node.",
				Targets: []target{t(q(`tessera_watch_streams{%s}`), "{{instance}}")}},
		}}, {Title: "Storage", Panels: []panel{
			{Title: "Engine size", Unit: "bytes", Desc: "Bytes each node's Pebble engine takes on disk.",
				Targets: []target{t(q(`etcd_mvcc_db_total_size_in_bytes{%s}`), "{{instance}}")}},
			{Title: "Quota used", Unit: "percentunit", Desc: "Engine size over the size at which the node raises NOSPACE.",
				Targets: []target{t(q(`etcd_mvcc_db_total_size_in_bytes{%[1]s} / etcd_server_quota_backend_bytes{%[1]s}`), "{{instance}}")}},
			{Title: "WAL fsync p99", Unit: "s", Desc: "99th percentile of the synced write of one Raft round (all groups of a node, one fsync).",
				Targets: []target{t(p99("etcd_disk_wal_fsync_duration_seconds"), "{{instance}}")}},
		}}},
	},
	{
		File: "tessera-ranges.json", UID: "tessera-ranges", Title: "Tessera / Ranges and placement",
		Desc: "Range replicas, leadership, the busiest ranges, routing and the TSO.",
		Rows: []row{{Title: "Replicas", Panels: []panel{
			{Title: "Replicas by state", Unit: "short", Desc: "Range replicas on each node: leader, follower, or knowing no leader.",
				Targets: []target{t(q(`sum by (instance, state) (tessera_shard_replicas{%s})`), "{{instance}} {{state}}")}},
			{Title: "Range leaders per node", Unit: "short", Desc: "How evenly leadership (and so write load) is spread.",
				Targets: []target{t(q(`tessera_shard_replicas{%s,state="leader"}`), "{{instance}}")}},
			{Title: "Under-replicated ranges", Unit: "short", Desc: "Ranges whose leader has not heard from a voter within an election timeout.",
				Targets: []target{t(q(`sum(tessera_shard_ranges_underreplicated{%s})`), "under-replicated")}},
			{Title: "Raft groups per node", Unit: "short", Desc: "Raft groups hosted per node (ranges plus the meta group).",
				Targets: []target{t(q(`tessera_raft_groups{%s}`), "{{instance}}")}},
		}}, {Title: "Cluster", Panels: []panel{
			{Title: "Ranges and ranges led", Unit: "short", Desc: "Data ranges in the cluster's layout (from the meta leader) and ranges with a leader (summed over all nodes, whatever the instance variable).",
				Targets: []target{
					t(`max(tessera_placement_ranges{job=~"$job"})`, "ranges"),
					t(`sum(tessera_shard_replicas{job=~"$job",state="leader"})`, "led"),
				}},
			{Title: "Ranges without a leader", Unit: "short", Desc: "Ranges no node leads: they refuse linearizable reads and writes.",
				Targets: []target{t(`max(tessera_placement_ranges{job=~"$job"}) - sum(tessera_shard_replicas{job=~"$job",state="leader"})`, "without leader")}},
		}}, {Title: "Busiest ranges", Panels: []panel{
			{Title: "Top ranges by load", Unit: "reqps", Desc: "Requests per second of the busiest ranges (each node reports its --metrics-top-ranges busiest replicas).",
				Targets: []target{t(q(`topk(10, max by (range) (tessera_range_load_requests_per_second{%s}))`), "range {{range}}")}},
			{Title: "Leaders of the busiest ranges", Unit: "short", Desc: "Which node leads each of the busiest ranges.",
				Targets: []target{t(q(`max by (range, instance) (tessera_range_is_leader{%s}) == 1`), "range {{range}} on {{instance}}")}},
		}}, {Title: "Routing", Panels: []panel{
			{Title: "Range requests by target", Unit: "reqps", Desc: "Requests sent to one range: served by a local replica or forwarded to another node.",
				Targets: []target{t(q(`sum by (target) (rate(tessera_router_range_requests_total{%s}[$__rate_interval]))`), "{{target}}")}},
			{Title: "Retries by reason", Unit: "reqps", Desc: "Requests to a range tried again: not the leader, not found, unreachable, or waiting for an election.",
				Targets: []target{t(q(`sum by (reason) (rate(tessera_router_retries_total{%s}[$__rate_interval]))`), "{{reason}}")}},
			{Title: "Fan-out width p99", Unit: "short", Desc: "Ranges one Range request covers (99th percentile).",
				Targets: []target{t(p99("tessera_router_fanout_ranges"), "{{instance}}")}},
		}}, {Title: "TSO", Panels: []panel{
			{Title: "TSO call latency p99", Unit: "s", Desc: "99th percentile of a batched TSO call, retries included.",
				Targets: []target{t(p99("tessera_tso_call_duration_seconds"), "{{instance}}")}},
			{Title: "Requests per TSO call", Unit: "short", Desc: "Average requests coalesced into one TSO call.",
				Targets: []target{t(q(`sum by (instance) (rate(tessera_tso_batch_requests_sum{%[1]s}[$__rate_interval])) / sum by (instance) (rate(tessera_tso_batch_requests_count{%[1]s}[$__rate_interval]))`), "{{instance}}")}},
			{Title: "TSO retries, errors, leader changes", Unit: "short", Desc: "Retried and failed TSO calls, and TSO leader changes seen.",
				Targets: []target{
					t(q(`sum(rate(tessera_tso_retries_total{%s}[$__rate_interval]))`), "retries/s"),
					t(q(`sum(rate(tessera_tso_errors_total{%s}[$__rate_interval]))`), "errors/s"),
					t(q(`sum(increase(tessera_tso_leader_changes_total{%s}[1h]))`), "leader changes (1h)"),
				}},
		}}},
	},
	{
		File: "tessera-raft-storage.json", UID: "tessera-raft-storage", Title: "Tessera / Raft and storage",
		Desc: "Proposals, the batched Raft log, snapshots, the peer transport and the storage engine.",
		Rows: []row{{Title: "Proposals", Panels: []panel{
			{Title: "Writes proposed and failed", Unit: "ops", Desc: "Writes range leaders accepted, and those that failed without applying.",
				Targets: []target{
					t(q(`sum by (instance) (rate(tessera_shard_proposals_total{%s}[$__rate_interval]))`), "{{instance}} proposed"),
					t(q(`sum by (instance) (rate(tessera_shard_proposals_failed_total{%s}[$__rate_interval]))`), "{{instance}} failed"),
				}},
			{Title: "Write latency p99", Unit: "s", Desc: "From entering a leader's pipeline to applied (revision, commit, apply).",
				Targets: []target{t(p99("tessera_shard_proposal_duration_seconds"), "{{instance}}")}},
			{Title: "Pending writes", Unit: "short", Desc: "Writes held by range leaders that have not applied yet.",
				Targets: []target{t(q(`etcd_server_proposals_pending{%s}`), "{{instance}}")}},
			{Title: "Apply latency p99", Unit: "s", Desc: "Applying one round of committed entries of a range.",
				Targets: []target{t(p99("tessera_shard_apply_duration_seconds"), "{{instance}}")}},
		}}, {Title: "Raft log", Panels: []panel{
			{Title: "Log fsync p99", Unit: "s", Desc: "One synced write of all groups' Raft state per round.",
				Targets: []target{t(p99("tessera_raft_log_fsync_duration_seconds"), "{{instance}}")}},
			{Title: "Entries and groups per fsync", Unit: "short", Desc: "How much one fsync carries: log entries and groups per Raft round.",
				Targets: []target{
					t(q(`sum by (instance) (rate(tessera_raft_log_batch_entries_sum{%[1]s}[$__rate_interval])) / sum by (instance) (rate(tessera_raft_log_batch_entries_count{%[1]s}[$__rate_interval]))`), "{{instance}} entries"),
					t(q(`sum by (instance) (rate(tessera_raft_log_batch_groups_sum{%[1]s}[$__rate_interval])) / sum by (instance) (rate(tessera_raft_log_batch_groups_count{%[1]s}[$__rate_interval]))`), "{{instance}} groups"),
				}},
			{Title: "Leader changes", Unit: "short", Desc: "Leader changes of all hosted groups (raft) and of the meta group (etcd's name), last hour.",
				Targets: []target{
					t(q(`sum by (instance) (increase(tessera_raft_leader_changes_total{%s}[1h]))`), "{{instance}} all groups"),
					t(q(`sum by (instance) (increase(etcd_server_leader_changes_seen_total{%s}[1h]))`), "{{instance}} meta"),
				}},
			{Title: "Dropped proposals", Unit: "ops", Desc: "Proposals raft refused (not leader, uncommitted log full).",
				Targets: []target{t(q(`sum by (instance) (rate(tessera_raft_proposals_dropped_total{%s}[$__rate_interval]))`), "{{instance}}")}},
		}}, {Title: "Snapshots and transport", Panels: []panel{
			{Title: "Snapshots in progress", Unit: "short", Desc: "Replica snapshots streaming now, by direction.",
				Targets: []target{t(q(`sum by (instance, direction) (tessera_raft_transport_snapshots_in_progress{%s})`), "{{instance}} {{direction}}")}},
			{Title: "Snapshot throughput", Unit: "Bps", Desc: "Snapshot bytes sent and received: the progress of running snapshots.",
				Targets: []target{
					t(q(`sum by (instance) (rate(tessera_raft_transport_snapshot_sent_bytes_total{%s}[$__rate_interval]))`), "{{instance}} sent"),
					t(q(`sum by (instance) (rate(tessera_raft_transport_snapshot_received_bytes_total{%s}[$__rate_interval]))`), "{{instance}} received"),
				}},
			{Title: "Peer traffic", Unit: "Bps", Desc: "Raft batches sent to and received from peers.",
				Targets: []target{
					t(q(`sum by (instance) (rate(tessera_raft_transport_sent_bytes_total{%s}[$__rate_interval]))`), "{{instance}} sent"),
					t(q(`sum by (instance) (rate(tessera_raft_transport_received_bytes_total{%s}[$__rate_interval]))`), "{{instance}} received"),
				}},
			{Title: "Peer round trip p99", Unit: "s", Desc: "Health checks to each peer over the peer port.",
				Targets: []target{t(fmt.Sprintf(`histogram_quantile(0.99, sum by (instance, To, le) (rate(etcd_network_peer_round_trip_time_seconds_bucket{%s}[$__rate_interval])))`, sel), "{{instance}} to {{To}}")}},
			{Title: "Dropped raft messages", Unit: "short", Desc: "Raft messages dropped before reaching a peer's stream, by reason.",
				Targets: []target{t(q(`sum by (instance, reason) (rate(tessera_raft_transport_messages_dropped_total{%s}[$__rate_interval]))`), "{{instance}} {{reason}}")}},
		}}, {Title: "Engine", Panels: []panel{
			{Title: "Batch commit p99", Unit: "s", Desc: "Pebble batch commits (applies and other writes), synced or not.",
				Targets: []target{t(fmt.Sprintf(`histogram_quantile(0.99, sum by (instance, sync, le) (rate(tessera_engine_batch_commit_duration_seconds_bucket{%s}[$__rate_interval])))`, sel), "{{instance}} sync={{sync}}")}},
			{Title: "Engine fsyncs", Unit: "ops", Desc: "fsync calls of the engine by file kind.",
				Targets: []target{t(q(`sum by (instance, file) (rate(tessera_engine_fsyncs_total{%s}[$__rate_interval]))`), "{{instance}} {{file}}")}},
			{Title: "Compactions", Unit: "short", Desc: "MVCC compactions running, and versions they deleted per second.",
				Targets: []target{
					t(q(`sum by (instance) (tessera_shard_compactions_in_progress{%s})`), "{{instance}} running"),
					t(q(`sum by (instance) (rate(tessera_shard_compaction_deleted_versions_total{%s}[$__rate_interval]))`), "{{instance}} versions deleted/s"),
				}},
		}}},
	},
	{
		File: "tessera-watch.json", UID: "tessera-watch", Title: "Tessera / Watch",
		Desc: "Watchers, range feeds and how far behind writes watch events are delivered.",
		Rows: []row{{Title: "Watchers", Panels: []panel{
			{Title: "Watchers and streams", Unit: "short", Desc: "Watchers and watch gRPC streams open per node.",
				Targets: []target{
					t(q(`tessera_watch_watchers{%s}`), "{{instance}} watchers"),
					t(q(`tessera_watch_streams{%s}`), "{{instance}} streams"),
				}},
			{Title: "Range feed subscriptions", Unit: "short", Desc: "Range feeds the watch hub of each node subscribes to.",
				Targets: []target{t(q(`tessera_watch_range_subscriptions{%s}`), "{{instance}}")}},
			{Title: "Events sent", Unit: "ops", Desc: "Watch events sent to clients per second.",
				Targets: []target{t(q(`sum by (instance) (rate(tessera_watch_events_sent_total{%s}[$__rate_interval]))`), "{{instance}}")}},
		}}, {Title: "Lag", Panels: []panel{
			{Title: "Event latency p99", Unit: "s", Desc: "From an event's revision timestamp to its send to a watcher.",
				Targets: []target{t(p99("tessera_watch_event_latency_seconds"), "{{instance}}")}},
			{Title: "Pending events", Unit: "short", Desc: "Events received from feeds, waiting for other ranges to resolve.",
				Targets: []target{t(q(`tessera_watch_pending_events{%s}`), "{{instance}}")}},
			{Title: "Resubscriptions and slow watchers", Unit: "ops", Desc: "Feeds subscribed again after they ended, and watchers that fell behind and caught up from history.",
				Targets: []target{
					t(q(`sum by (instance) (rate(tessera_watch_resubscriptions_total{%s}[$__rate_interval]))`), "{{instance}} resubscriptions"),
					t(q(`sum by (instance) (rate(tessera_watch_unsynced_total{%s}[$__rate_interval]))`), "{{instance}} unsynced"),
				}},
		}}},
	},
	{
		File: "tessera-leases.json", UID: "tessera-leases", Title: "Tessera / Leases",
		Desc: "etcd Lease API traffic. Leases land with issue #13: until then Tessera registers no Lease service and these panels are empty.",
		Rows: []row{{Title: "Lease API", Panels: []panel{
			{Title: "Lease requests by method", Unit: "reqps", Desc: "LeaseGrant, LeaseRevoke, LeaseTimeToLive, LeaseLeases per second.",
				Targets: []target{t(q(`sum by (grpc_method) (rate(grpc_server_handled_total{%s,grpc_service="etcdserverpb.Lease",grpc_type="unary"}[$__rate_interval]))`), "{{grpc_method}}")}},
			{Title: "Lease request errors", Unit: "reqps", Desc: "Lease requests that failed, by method and code.",
				Targets: []target{t(q(`sum by (grpc_method, grpc_code) (rate(grpc_server_handled_total{%s,grpc_service="etcdserverpb.Lease",grpc_code!="OK"}[$__rate_interval]))`), "{{grpc_method}} {{grpc_code}}")}},
			{Title: "Keep-alive streams", Unit: "short", Desc: "LeaseKeepAlive streams open.",
				Targets: []target{t(q(`sum(grpc_server_started_total{%[1]s,grpc_service="etcdserverpb.Lease",grpc_type="bidi_stream"}) - sum(grpc_server_handled_total{%[1]s,grpc_service="etcdserverpb.Lease",grpc_type="bidi_stream"})`), "streams")}},
			{Title: "Lease request latency p99", Unit: "s", Desc: "99th percentile of Lease request handling, by method.",
				Targets: []target{t(fmt.Sprintf(`histogram_quantile(0.99, sum by (grpc_method, le) (rate(grpc_server_handling_seconds_bucket{%s,grpc_service="etcdserverpb.Lease",grpc_type="unary"}[$__rate_interval])))`, sel), "{{grpc_method}}")}},
		}}},
	},
	{
		File: "tessera-node.json", UID: "tessera-node", Title: "Tessera / Node detail",
		Desc: "One node in detail: process, disk, ports and its Raft groups (pick it with the instance variable).",
		Rows: []row{{Title: "Process", Panels: []panel{
			{Title: "CPU", Unit: "percentunit", Desc: "CPU time used per second.",
				Targets: []target{t(q(`rate(process_cpu_seconds_total{%s}[$__rate_interval])`), "{{instance}}")}},
			{Title: "Resident memory", Unit: "bytes", Desc: "Resident set size of the process.",
				Targets: []target{t(q(`process_resident_memory_bytes{%s}`), "{{instance}}")}},
			{Title: "Goroutines", Unit: "short", Desc: "Goroutines of the process.",
				Targets: []target{t(q(`go_goroutines{%s}`), "{{instance}}")}},
			{Title: "Open file descriptors", Unit: "short", Desc: "Open file descriptors over the limit.",
				Targets: []target{t(q(`process_open_fds{%[1]s} / process_max_fds{%[1]s}`), "{{instance}}")}},
		}}, {Title: "Disk", Panels: []panel{
			{Title: "Free disk", Unit: "bytes", Desc: "Free bytes in the data directory's file system (NOSPACE below --quota-free-bytes).",
				Targets: []target{t(q(`tessera_disk_free_bytes{%s}`), "{{instance}}")}},
			{Title: "Engine size", Unit: "bytes", Desc: "Bytes the engine takes on disk.",
				Targets: []target{t(q(`tessera_engine_disk_usage_bytes{%s}`), "{{instance}}")}},
			{Title: "Backend commit p99", Unit: "s", Desc: "etcd's backend commit: Pebble batch commits of applies.",
				Targets: []target{t(p99("etcd_disk_backend_commit_duration_seconds"), "{{instance}}")}},
		}}, {Title: "Ports", Panels: []panel{
			{Title: "Client traffic", Unit: "Bps", Desc: "Bytes received and sent on the client gRPC port.",
				Targets: []target{
					t(q(`rate(etcd_network_client_grpc_received_bytes_total{%s}[$__rate_interval])`), "{{instance}} in"),
					t(q(`rate(etcd_network_client_grpc_sent_bytes_total{%s}[$__rate_interval])`), "{{instance}} out"),
				}},
			{Title: "Peer port requests", Unit: "reqps", Desc: "RPCs handled on the peer port (forwarded requests, TSO, feeds), by method.",
				Targets: []target{t(q(`sum by (instance, grpc_method) (rate(tessera_peer_grpc_server_handled_total{%s}[$__rate_interval]))`), "{{instance}} {{grpc_method}}")}},
			{Title: "Peer port latency p99", Unit: "s", Desc: "99th percentile of unary RPCs on the peer port, by method.",
				Targets: []target{t(fmt.Sprintf(`histogram_quantile(0.99, sum by (instance, grpc_method, le) (rate(tessera_peer_grpc_server_handling_seconds_bucket{%s,grpc_type="unary"}[$__rate_interval])))`, sel), "{{instance}} {{grpc_method}}")}},
		}}, {Title: "Raft", Panels: []panel{
			{Title: "Committed and applied", Unit: "ops", Desc: "Raft entries committed and applied per second over the node's groups.",
				Targets: []target{
					t(q(`rate(etcd_server_proposals_committed_total{%s}[$__rate_interval])`), "{{instance}} committed"),
					t(q(`rate(etcd_server_proposals_applied_total{%s}[$__rate_interval])`), "{{instance}} applied"),
				}},
			{Title: "Meta group leader", Unit: "short", Desc: "1 on the node that leads the meta group (placement driver, TSO).",
				Targets: []target{t(q(`etcd_server_is_leader{%s}`), "{{instance}}")}},
		}}},
	},
}

func main() {
	out := flag.String("out", "deploy/grafana", "directory to write the dashboards to")
	flag.Parse()
	for _, d := range dashboards {
		b, err := render(d)
		if err != nil {
			fmt.Fprintln(os.Stderr, "gen:", err)
			os.Exit(1)
		}
		if err := os.WriteFile(filepath.Join(*out, d.File), b, 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "gen:", err)
			os.Exit(1)
		}
	}
}

type obj = map[string]any

var datasource = obj{"type": "prometheus", "uid": "${datasource}"}

// render lays the rows out on Grafana's 24-column grid: a row header, then
// its panels side by side, eight rows high.
func render(d dashboard) ([]byte, error) {
	var panels []any
	id, y := 1, 0
	for _, r := range d.Rows {
		panels = append(panels, obj{"type": "row", "id": id, "title": r.Title, "collapsed": false,
			"gridPos": obj{"h": 1, "w": 24, "x": 0, "y": y}, "panels": []any{}})
		id++
		y++
		w := 24 / len(r.Panels)
		for i, p := range r.Panels {
			var targets []any
			for j, tg := range p.Targets {
				targets = append(targets, obj{"datasource": datasource, "expr": tg.Expr, "legendFormat": tg.Legend,
					"refId": string(rune('A' + j))})
			}
			typ, h := "timeseries", 8
			if p.Stat {
				typ, h = "stat", 4
			}
			panels = append(panels, obj{
				"type": typ, "id": id, "title": p.Title, "description": p.Desc, "datasource": datasource,
				"gridPos":     obj{"h": h, "w": w, "x": i * w, "y": y},
				"fieldConfig": obj{"defaults": obj{"unit": p.Unit}, "overrides": []any{}},
				"options":     obj{"legend": obj{"displayMode": "list", "placement": "bottom", "showLegend": true}, "tooltip": obj{"mode": "multi"}},
				"targets":     targets,
			})
			id++
		}
		y += 8
	}
	dash := obj{
		"uid": d.UID, "title": d.Title, "description": d.Desc, "tags": []string{"tessera"},
		"schemaVersion": 39, "version": 1, "editable": true, "refresh": "30s",
		"time": obj{"from": "now-1h", "to": "now"}, "timezone": "browser",
		"annotations": obj{"list": []any{}},
		"links":       []any{obj{"type": "dashboards", "tags": []string{"tessera"}, "asDropdown": true, "title": "Tessera"}},
		"templating": obj{"list": []any{
			obj{"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus",
				"current": obj{}, "hide": 0, "refresh": 1, "regex": "", "options": []any{}},
			obj{"name": "job", "label": "Job", "type": "query", "datasource": datasource,
				"query":      obj{"query": `label_values(etcd_server_has_leader{job=~".*tessera.*"}, job)`, "refId": "job"},
				"definition": `label_values(etcd_server_has_leader{job=~".*tessera.*"}, job)`,
				"current":    obj{}, "hide": 0, "refresh": 2, "includeAll": false, "multi": false, "options": []any{}, "sort": 1},
			obj{"name": "instance", "label": "Instance", "type": "query", "datasource": datasource,
				"query":      obj{"query": `label_values(etcd_server_has_leader{job=~"$job"}, instance)`, "refId": "instance"},
				"definition": `label_values(etcd_server_has_leader{job=~"$job"}, instance)`,
				"current":    obj{"text": "All", "value": "$__all"}, "hide": 0, "refresh": 2, "includeAll": true, "allValue": ".+",
				"multi": true, "options": []any{}, "sort": 1},
		}},
		"panels": panels,
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(dash); err != nil {
		return nil, fmt.Errorf("encode %s: %w", d.File, err)
	}
	return buf.Bytes(), nil
}
