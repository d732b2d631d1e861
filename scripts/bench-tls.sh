#!/usr/bin/env bash
# bench-tls.sh: put throughput of a 3-member cluster with client and peer
# mutual TLS, etcd against Tessera, in alternating rounds, measured by etcd's
# own `benchmark` tool (the same client for both). Usage:
#
#   scripts/bench-tls.sh [rounds] [total-puts]
#
# Env: ETCD_DIR (etcd, benchmark; default /work/etcd373), TESSERA_BIN
# (default: built from this tree into the work dir), CLIENTS (100), CONNS (10),
# AUTH=1 to enable auth (simple tokens) and put as root with a password.
set -euo pipefail
rounds=${1:-2}
total=${2:-20000}
etcd_dir=${ETCD_DIR:-/work/etcd373}
clients=${CLIENTS:-100}
conns=${CONNS:-10}
work=$(mktemp -d /tmp/bench-tls.XXXXXX)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
	rm -rf "$work"
}
trap cleanup EXIT

if [[ -z "${TESSERA_BIN:-}" ]]; then
	TESSERA_BIN=$work/tessera
	go build -o "$TESSERA_BIN" ./cmd/tessera
fi

# One CA; every member's certificate serves as server and client
# certificate for both ports; the benchmark client has its own.
cd "$work"
openssl ecparam -name prime256v1 -genkey -noout -out ca-key.pem
openssl req -x509 -new -key ca-key.pem -subj /CN=bench-ca -days 1 -out ca.pem 2>/dev/null
issue() {
	openssl ecparam -name prime256v1 -genkey -noout -out "$1-key.pem"
	openssl req -new -key "$1-key.pem" -subj "/CN=$1" -out "$1.csr" 2>/dev/null
	printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n' >"$1.ext"
	openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 1 -extfile "$1.ext" -out "$1.pem" 2>/dev/null
}
for n in m1 m2 m3 client; do issue $n; done
cd - >/dev/null

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

# start <etcd|tessera>: starts 3 members, sets $endpoints.
start() {
	local bin=$1 initial="" i
	local -a cp pp
	for i in 1 2 3; do cp[$i]=$(port); pp[$i]=$(port); initial+="m$i=https://127.0.0.1:${pp[$i]},"; done
	initial=${initial%,}
	endpoints=""
	for i in 1 2 3; do
		local extra=()
		[[ $bin == tessera ]] && extra=(--log-level warn)
		"$([[ $bin == etcd ]] && echo "$etcd_dir/etcd" || echo "$TESSERA_BIN")" \
			--name m$i --data-dir "$work/data-$bin-m$i" \
			--listen-client-urls https://127.0.0.1:${cp[$i]} --advertise-client-urls https://127.0.0.1:${cp[$i]} \
			--listen-peer-urls https://127.0.0.1:${pp[$i]} --initial-advertise-peer-urls https://127.0.0.1:${pp[$i]} \
			--initial-cluster "$initial" --initial-cluster-state new \
			--cert-file "$work/m$i.pem" --key-file "$work/m$i-key.pem" --trusted-ca-file "$work/ca.pem" --client-cert-auth \
			--peer-cert-file "$work/m$i.pem" --peer-key-file "$work/m$i-key.pem" --peer-trusted-ca-file "$work/ca.pem" --peer-client-cert-auth \
			"${extra[@]}" >"$work/$bin-m$i.log" 2>&1 &
		pids+=($!)
		endpoints+="https://127.0.0.1:${cp[$i]},"
	done
	endpoints=${endpoints%,}
	local deadline=$((SECONDS + 60))
	until "$etcd_dir/etcdctl" --endpoints "$endpoints" --cacert "$work/ca.pem" --cert "$work/client.pem" --key "$work/client-key.pem" \
		--command-timeout 2s put ready 1 >/dev/null 2>&1; do
		((SECONDS < deadline)) || { echo "$bin did not start; logs in $work" >&2; exit 1; }
		sleep 0.5
	done
}

stop() {
	for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
	pids=()
	rm -rf "$work"/data-*
}

for r in $(seq "$rounds"); do
	for sys in etcd tessera; do
		start $sys
		userflag=()
		if [[ -n "${AUTH:-}" ]]; then
			ctl=("$etcd_dir/etcdctl" --endpoints "$endpoints" --cacert "$work/ca.pem" --cert "$work/client.pem" --key "$work/client-key.pem")
			"${ctl[@]}" user add root:rootpw >/dev/null
			"${ctl[@]}" user grant-role root root >/dev/null
			"${ctl[@]}" auth enable >/dev/null
			userflag=(--user root:rootpw)
		fi
		out=$("$etcd_dir/benchmark" "${userflag[@]}" --endpoints "$endpoints" --cacert "$work/ca.pem" --cert "$work/client.pem" --key "$work/client-key.pem" \
			--clients "$clients" --conns "$conns" put --total "$total" --key-size 8 --val-size 256 --sequential-keys 2>&1)
		rps=$(grep -m1 'Requests/sec' <<<"$out" | awk '{print $2}')
		p99=$(grep -m1 '99% in' <<<"$out" | awk '{print $3}')
		echo "round $r $sys: $rps puts/s, p99 ${p99}s"
		stop
	done
done
