#!/usr/bin/env bash
# Builds the etcd that Tessera is compared against (etcd 3.7.3, its etcdctl,
# and etcd's `benchmark` tool) from the Go module proxy.
#
#   scripts/etcd-reference.sh [DIR]
#
# DIR defaults to $TESSERA_ETCD_DIR, else ${XDG_CACHE_HOME:-$HOME/.cache}/tessera/etcd-v3.7.3;
# tests look there (tests/proccluster.ReferenceEtcd). Nothing is rebuilt when
# DIR already holds etcd 3.7.3. The etcd modules carry `replace` directives,
# so `go install mod@version` refuses them: each tool is built inside a small
# throw-away module that requires it.
set -euo pipefail
ETCD_VERSION=${ETCD_VERSION:-v3.7.3}
# etcd's tools/benchmark lives in the root module, whose newest release on
# the proxy is 3.6.x.
BENCH_VERSION=${BENCH_VERSION:-v3.6.8}
GO=${GO:-go}
DIR=${1:-${TESSERA_ETCD_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tessera/etcd-${ETCD_VERSION}}}
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)

if [ -x "$DIR/etcd" ] && [ -x "$DIR/etcdctl" ] && [ -x "$DIR/benchmark" ] &&
  "$DIR/etcd" --version 2>/dev/null | grep -q "etcd Version: ${ETCD_VERSION#v}"; then
  echo "etcd ${ETCD_VERSION} already in $DIR"
  exit 0
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# wrapper NAME GOVERSION "module version"... -- "package:output"...
wrapper() {
  local name=$1 gover=$2 seen_sep=0 arg
  shift 2
  local dir="$tmp/$name"
  mkdir -p "$dir"
  local mods=() pkgs=()
  for arg in "$@"; do
    if [ "$arg" = -- ]; then seen_sep=1; continue; fi
    if [ $seen_sep = 1 ]; then pkgs+=("$arg"); else mods+=("$arg"); fi
  done
  {
    printf 'module tessera.local/%s\n\ngo %s\n\n' "$name" "$gover"
    for arg in "${mods[@]}"; do printf 'require %s\n' "$arg"; done
  } >"$dir/go.mod"
  {
    printf '//go:build tools\n\npackage tools\n\n'
    for arg in "${pkgs[@]}"; do printf 'import _ "%s"\n' "${arg%%:*}"; done
  } >"$dir/tools.go"
  (cd "$dir" && "$GO" mod tidy >/dev/null)
  for arg in "${pkgs[@]}"; do
    (cd "$dir" && "$GO" build -o "$DIR/${arg##*:}" "${arg%%:*}")
  done
}

wrapper server 1.26 "go.etcd.io/etcd/server/v3 $ETCD_VERSION" "go.etcd.io/etcd/etcdctl/v3 $ETCD_VERSION" -- \
  "go.etcd.io/etcd/server/v3:etcd" "go.etcd.io/etcd/etcdctl/v3:etcdctl"
wrapper bench 1.24.0 "go.etcd.io/etcd/v3 $BENCH_VERSION" -- "go.etcd.io/etcd/v3/tools/benchmark:benchmark"

"$DIR/etcd" --version | head -1
echo "built etcd, etcdctl and benchmark in $DIR"
