# The README's test command is `make test`; .ci/run calls it.
GO ?= go

.PHONY: test build proto fuzz bench

build:
	$(GO) build ./...

# Unit, integration and system tests, with the race detector on.
test:
	$(GO) vet ./...
	$(GO) test -race -timeout 15m ./...

# Longer fuzzing of the engine's key encoding (the seed corpora run in `make test`).
fuzz:
	$(GO) test -run '^$$' -fuzz FuzzKeyEncoding -fuzztime 60s ./engine/

# Regenerate the internal protobuf code (see proto/README.md).
proto:
	bash scripts/genproto.sh

# Micro-benchmarks of the storage layers.
bench:
	$(GO) test -run '^$$' -bench . -benchtime 3s ./engine/ ./raftgroup/
