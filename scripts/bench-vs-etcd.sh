#!/usr/bin/env bash
# Compare Tessera with etcd on this machine, one workload at a time, in one
# run: builds tessbench (and tessera, when ./cmd/tessera builds), then runs
# `tessbench compare`, which installs Debian's etcd-server if etcd is
# missing, starts a 3-node etcd and a 3-node Tessera on loopback, runs every
# case against both in turn and prints each figure with the ratio
# Tessera/etcd. Without a Tessera binary it measures etcd alone.
#
# Usage: scripts/bench-vs-etcd.sh [tessbench compare flags…]
#   TESSERA_BIN=/path/to/tessera  use this binary instead of building one
#   e.g. scripts/bench-vs-etcd.sh --duration 15s --json-file bench.json
# The method and the numbers are in docs/benchmarks.md.
set -euo pipefail

cd "$(dirname "$0")/.."
bin=$(mktemp -d "${TMPDIR:-/tmp}/tessbench-bin.XXXXXX")
trap 'rm -rf "$bin"' EXIT

go build -o "$bin/tessbench" ./cmd/tessbench

tessera=()
if [[ -n "${TESSERA_BIN:-}" ]]; then
	tessera=(--tessera-bin "$TESSERA_BIN")
elif [[ "$(go list -f '{{.Name}}' ./cmd/tessera 2>/dev/null)" == main ]]; then
	if go build -o "$bin/tessera" ./cmd/tessera; then
		tessera=(--tessera-bin "$bin/tessera")
	else
		echo "bench-vs-etcd: ./cmd/tessera does not build; measuring etcd alone" >&2
	fi
else
	echo "bench-vs-etcd: ./cmd/tessera is not a command yet; measuring etcd alone" >&2
fi

"$bin/tessbench" compare ${tessera[@]+"${tessera[@]}"} "$@"
