#!/usr/bin/env bash
# Measures the maintenance figures of docs/operations.md on this machine:
#
#   scripts/maintenance-figures.sh defrag  [tessera|etcd]  # put p99 with and without defrag
#   scripts/maintenance-figures.sh backup  [MiB]           # save/restore times, writes during the save
#
# Each run starts a local 3-node cluster on free ports in a temporary
# directory, drives it with etcd's benchmark tool and etcdctl (ETCD_BIN_DIR,
# default /work/etcd373), and stops exactly the processes it started.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${ETCD_BIN_DIR:-/work/etcd373}"
work="$(mktemp -d /tmp/tessera-figures-XXXXXX)"
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	rm -rf "$work"
}
trap cleanup EXIT

freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

build() {
	(cd "$root" && go build -o "$work/tessera" ./cmd/tessera && go build -o "$work/tessctl" ./cmd/tessctl)
}

# start3 SYSTEM DIRPREFIX [extra flags…]: starts 3 members, sets $eps.
start3() {
	local sys=$1 prefix=$2; shift 2
	local cps=() pps=() initial=""
	for i in 1 2 3; do cps+=("$(freeport)"); pps+=("$(freeport)"); done
	for i in 0 1 2; do initial+="n$i=http://127.0.0.1:${pps[$i]},"; done
	initial=${initial%,}
	eps=""
	for i in 0 1 2; do
		local args=(--name "n$i" --data-dir "$work/$prefix$i" --listen-client-urls "http://127.0.0.1:${cps[$i]}"
			--advertise-client-urls "http://127.0.0.1:${cps[$i]}" --listen-peer-urls "http://127.0.0.1:${pps[$i]}"
			--initial-advertise-peer-urls "http://127.0.0.1:${pps[$i]}" --initial-cluster "$initial" --initial-cluster-state new)
		if [ "$sys" = etcd ]; then
			"$bin/etcd" "${args[@]}" --log-level error --quota-backend-bytes $((8<<30)) "$@" >"$work/$prefix$i.log" 2>&1 &
		else
			"$work/tessera" "${args[@]}" --gossip-addr "127.0.0.1:$(freeport)" "$@" >"$work/$prefix$i.log" 2>&1 &
		fi
		pids+=($!)
		eps+="127.0.0.1:${cps[$i]},"
	done
	eps=${eps%,}
	initial_cluster=$initial
	peer_ports=("${pps[@]}")
	for _ in $(seq 300); do
		if "$bin/etcdctl" --endpoints="$eps" endpoint health >/dev/null 2>&1; then return; fi
		sleep 0.2
	done
	echo "cluster did not become healthy" >&2; exit 1
}

p99() { awk '/99% in/ {print $3}' ; }

defrag() {
	local sys=${1:-tessera}
	[ "$sys" = tessera ] && build
	if [ "$sys" = tessera ]; then start3 tessera d --initial-split-keys "/,k,s"; else start3 etcd d; fi
	local bench=("$bin/benchmark" --endpoints="$eps" --clients 100 --conns 10)
	echo "preload: 200k puts of 1 KiB over 20k keys (garbage for defrag to reclaim)"
	"${bench[@]}" put --total 200000 --key-space-size 20000 --val-size 1024 >/dev/null 2>&1
	for round in 1 2; do
		echo "round $round without defrag: put p99 $("${bench[@]}" put --total 20000 --key-space-size 20000 --val-size 1024 2>&1 | p99) s"
		( while :; do "$bin/etcdctl" --endpoints="$eps" --command-timeout 5m defrag --cluster >>"$work/defrag.out" 2>&1; done ) &
		local dpid=$!
		echo "round $round during defrag --cluster (in a loop): put p99 $("${bench[@]}" put --total 20000 --key-space-size 20000 --val-size 1024 2>&1 | p99) s"
		kill "$dpid"; wait "$dpid" 2>/dev/null || true
		echo "  defrag passes finished meanwhile: $(grep -c 'Finished defragmenting' "$work/defrag.out" || true)"
		: >"$work/defrag.out"
	done
}

backup() {
	local mib=${1:-1024}
	build
	start3 tessera s --initial-split-keys "/0,/1,/2,/3,/4,/5,/6"
	local n=$((mib * 1024)) # 1 KiB values
	echo "load: $n keys of 1 KiB ($mib MiB of values)"
	local t0=$SECONDS
	"$bin/benchmark" --endpoints="$eps" --clients 64 --conns 8 put --total "$n" --key-space-size "$n" --sequential-keys --key-size 16 --val-size 1024 2>&1 | grep -E "Requests/sec|Total:" || true
	echo "  load took $((SECONDS - t0)) s"
	local ep1=${eps%%,*}
	local s0 s1
	s0=$(date +%s.%N)
	"$bin/etcdctl" --endpoints="$ep1" snapshot save "$work/backup.db" >/dev/null
	s1=$(date +%s.%N)
	ls -l "$work/backup.db"
	"$work/tessctl" snapshot status "$work/backup.db" | sed -n 1,3p
	echo "  save: $(echo "$s1 - $s0" | bc) s"
	# Writes: the same put run alone, then while saves run back to back.
	local wr=("$bin/benchmark" --endpoints="$eps" --clients 32 --conns 4 put --total 30000 --key-space-size 100000 --key-size 16 --val-size 256)
	echo "  puts/s alone:        $("${wr[@]}" 2>&1 | awk '/Requests\/sec/ {print $2}')"
	( set +e; while :; do
		rm -f "$work/loop.db"
		if "$bin/etcdctl" --endpoints="$ep1" snapshot save "$work/loop.db" >"$work/loop.out" 2>&1; then
			echo ok >>"$work/loops"
		else
			echo failed >>"$work/loops"; cat "$work/loop.out" >>"$work/loop.err"
		fi
	done ) &
	local spid=$!
	echo "  puts/s during saves: $("${wr[@]}" 2>&1 | awk '/Requests\/sec/ {print $2}')"
	kill "$spid" 2>/dev/null || true; wait "$spid" 2>/dev/null || true
	echo "  saves during the puts: $(grep -c ok "$work/loops" || true) done, $(grep -c failed "$work/loops" || true) failed"
	[ ! -s "$work/loop.err" ] || tail -n 5 "$work/loop.err"
	# The restored cluster is a new one: its own ports (the source still
	# runs, holds its ports and answers the reads at the backup revision
	# the check compares with).
	local src_eps=$eps rev
	rev=$("$work/tessctl" snapshot status "$work/backup.db" -w json | python3 -c 'import json,sys; print(json.load(sys.stdin)["revision"])')
	local cps=() pps=() initial=""
	for i in 0 1 2; do cps+=("$(freeport)"); pps+=("$(freeport)"); done
	for i in 0 1 2; do initial+="n$i=http://127.0.0.1:${pps[$i]},"; done
	initial=${initial%,}
	local r0
	r0=$(date +%s.%N)
	for i in 0 1 2; do
		"$work/tessctl" snapshot restore "$work/backup.db" --name "n$i" --data-dir "$work/r$i" \
			--initial-cluster "$initial" --initial-advertise-peer-urls "http://127.0.0.1:${pps[$i]}"
	done
	echo "  restore of 3 members: $(echo "$(date +%s.%N) - $r0" | bc) s"
	r0=$(date +%s.%N)
	eps=""
	for i in 0 1 2; do
		"$work/tessera" --name "n$i" --data-dir "$work/r$i" --listen-client-urls "http://127.0.0.1:${cps[$i]}" \
			--advertise-client-urls "http://127.0.0.1:${cps[$i]}" --listen-peer-urls "http://127.0.0.1:${pps[$i]}" \
			--initial-advertise-peer-urls "http://127.0.0.1:${pps[$i]}" --initial-cluster "$initial" \
			--initial-cluster-state new --gossip-addr "127.0.0.1:$(freeport)" >"$work/r$i.log" 2>&1 &
		pids+=($!)
		eps+="127.0.0.1:${cps[$i]},"
	done
	eps=${eps%,}
	local healthy=""
	for _ in $(seq 600); do
		if "$bin/etcdctl" --endpoints="$eps" endpoint health >/dev/null 2>&1; then healthy=1; break; fi
		sleep 0.2
	done
	if [ -z "$healthy" ]; then
		echo "restored cluster did not become healthy; its logs:" >&2
		tail -n 20 "$work"/r?.log >&2
		exit 1
	fi
	echo "  restored cluster healthy after: $(echo "$(date +%s.%N) - $r0" | bc) s"
	# Check: key count at the backup revision, and samples of 1,000 keys
	# (keys, values, create/mod revisions, versions) from 16 points of the
	# keyspace, on the source and on every restored member.
	local e want got
	want=$("$bin/etcdctl" --endpoints="${src_eps%%,*}" get --from-key '' --rev "$rev" --count-only -w fields | awk '/^"Count"/ {print $3}')
	for e in ${eps//,/ }; do
		got=$("$bin/etcdctl" --endpoints="$e" get --from-key '' --rev "$rev" --count-only -w fields | awk '/^"Count"/ {print $3}')
		[ "$got" = "$want" ] || { echo "CHECK FAILED: $e has $got keys at revision $rev, the source $want" >&2; exit 1; }
	done
	local b sampled=0
	for b in 10 20 30 40 50 60 70 80 90 a0 b0 c0 d0 e0 f0 ff; do
		local start
		start=$(printf "\\x$b")
		"$bin/etcdctl" --endpoints="${src_eps%%,*}" get --from-key "$start" --rev "$rev" --limit 1000 -w json >"$work/want.json"
		for e in ${eps//,/ }; do
			"$bin/etcdctl" --endpoints="$e" get --from-key "$start" --rev "$rev" --limit 1000 -w json >"$work/got.json"
			python3 - "$work/want.json" "$work/got.json" <<'PY' || { echo "CHECK FAILED: $e differs from the source at revision $rev from key 0x$b" >&2; exit 1; }
import json, sys
w, g = (json.load(open(f)).get("kvs", []) for f in sys.argv[1:3])
sys.exit(0 if w == g else 1)
PY
		done
		sampled=$((sampled + $(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1])).get("kvs",[])))' "$work/want.json")))
	done
	local put
	put=$("$bin/etcdctl" --endpoints="$eps" put after-restore x -w json | python3 -c 'import json,sys; print(json.load(sys.stdin)["header"]["revision"])')
	[ "$put" -gt "$rev" ] || { echo "CHECK FAILED: a put after the restore got revision $put, not above $rev" >&2; exit 1; }
	echo "  check: $want keys at revision $rev on every restored member; $sampled sampled keys equal to the source on each; a new put at revision $put"
}

case "${1:-}" in
defrag) defrag "${2:-tessera}" ;;
backup) backup "${2:-1024}" ;;
*) echo "usage: $0 defrag [tessera|etcd] | backup [MiB]" >&2; exit 2 ;;
esac
