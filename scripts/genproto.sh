#!/usr/bin/env bash
# Regenerates the Go code of Tessera's internal protobufs (proto/**/*.proto).
#
#   scripts/genproto.sh tools   # install the pinned protoc plugins into $(go env GOPATH)/bin
#   scripts/genproto.sh proto   # regenerate proto/**/*.pb.go (the default target)
#   scripts/genproto.sh all     # both
#
# protoc itself comes from the system (Debian: apt-get install -y protobuf-compiler).
# The plugin versions are pinned to match go.mod: protoc-gen-go must equal the
# google.golang.org/protobuf version in go.mod; protoc-gen-go-grpc v1.6.x emits
# code for grpc.SupportPackageIsVersion9 (grpc >= v1.64).
set -euo pipefail

PROTOC_GEN_GO_VERSION=v1.36.12
PROTOC_GEN_GO_GRPC_VERSION=v1.6.2

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

tools() {
	go install "google.golang.org/protobuf/cmd/protoc-gen-go@${PROTOC_GEN_GO_VERSION}"
	go install "google.golang.org/grpc/cmd/protoc-gen-go-grpc@${PROTOC_GEN_GO_GRPC_VERSION}"
}

proto() {
	command -v protoc >/dev/null || { echo "genproto: protoc not found (apt-get install -y protobuf-compiler)" >&2; exit 1; }
	local gobin
	gobin="$(go env GOBIN)"
	[ -n "$gobin" ] || gobin="$(go env GOPATH)/bin"
	export PATH="$gobin:$PATH"
	for plugin in protoc-gen-go protoc-gen-go-grpc; do
		command -v "$plugin" >/dev/null || { echo "genproto: $plugin not found: run '$0 tools'" >&2; exit 1; }
	done
	# Each .proto is compiled with proto/ as the import root, so its Go file
	# lands next to it (paths=source_relative).
	find proto -name '*.proto' -print0 | sort -z | xargs -0 -r protoc \
		-I proto \
		--go_out=proto --go_opt=paths=source_relative \
		--go-grpc_out=proto --go-grpc_opt=paths=source_relative
}

case "${1:-proto}" in
tools) tools ;;
proto) proto ;;
all) tools && proto ;;
*)
	echo "usage: $0 [tools|proto|all]" >&2
	exit 2
	;;
esac
