# The README's test command is `make test`; .ci/run calls it.
GO ?= go

.PHONY: test build proto fuzz bench system differential robustness dashboards

build:
	$(GO) build ./...

# Unit, integration and system tests, with the race detector on. The
# output is go test's; it ends with the tests that were skipped and why
# (scripts/testsummary), with how to install the tools they need.
test:
	$(GO) vet ./...
	$(GO) build -o bin/testsummary ./scripts/testsummary
	GO=$(GO) bin/testsummary -race -timeout 15m ./...

# Longer fuzzing (the seed corpora run in `make test`).
fuzz:
	$(GO) test -run '^$$' -fuzz FuzzKeyEncoding -fuzztime 60s ./engine/
	$(GO) test -run '^$$' -fuzz FuzzValidateRequest -fuzztime 60s ./shard/
	$(GO) test -run '^$$' -fuzz FuzzDecodeRaftBatch -fuzztime 60s ./raftgroup/

# Real-process system tests alone (crash recovery, etcdctl, SIGTERM).
system:
	$(GO) test -race -count=1 -timeout 10m -v ./tests/system/

# The linearizability harness at full length: 3- and 5-node clusters,
# longer traffic under every fault, three times (failure artifacts go to
# $ROBUSTNESS_ARTIFACTS, else a kept temporary directory).
robustness:
	ROBUSTNESS_LONG=1 $(GO) test -race -count=3 -timeout 60m -run TestRobustness ./tests/robustness/

# A long differential run against etcd (needs /usr/bin/etcd).
differential:
	$(GO) test -count=1 -timeout 30m ./tests/differential/ -run TestDifferentialTesseraVsEtcd -differential.seeds=30 -differential.ops=1500

# Regenerate the Grafana dashboards (deploy/grafana/*.json) from
# deploy/grafana/gen; a test in ./deploy checks they are current.
dashboards:
	$(GO) run ./deploy/grafana/gen

# Regenerate the internal protobuf code (see proto/README.md).
proto:
	bash scripts/genproto.sh

# Micro-benchmarks of the storage layers.
bench:
	$(GO) test -run '^$$' -bench . -benchtime 3s ./engine/ ./raftgroup/
	$(GO) test -run '^$$' -bench BenchmarkManyWatchers -benchtime 4000x -count 3 ./tests/integration/
