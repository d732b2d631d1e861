# The README's test command is `make test`; .ci/run calls it.
GO ?= go

.PHONY: test build proto fuzz bench bench-compare system differential robustness dashboards etcd-reference split-long simulate

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

# The etcd Tessera is compared against (etcd 3.7.3, etcdctl, benchmark),
# built from the Go module proxy into ~/.cache/tessera/etcd-v3.7.3 (or
# $$TESSERA_ETCD_DIR), where the tests look for it. .ci/run builds it.
etcd-reference:
	GO=$(GO) bash scripts/etcd-reference.sh

# A long differential run against etcd 3.7.3 (make etcd-reference first).
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

# Tessera against etcd, side by side in one run (docs/benchmarks.md): every
# case A/B/A/B with tessbench, 100 clients on 10 connections, then one
# client sending to the first member, then to the second. ETCD_BIN is etcd
# 3.7.3 as `make etcd-reference` builds it; tessbench prints the ratio table
# and the CPU-seconds of all servers per 1,000 requests.
ETCD_BIN ?= $(or $(TESSERA_ETCD_DIR),$(HOME)/.cache/tessera/etcd-v3.7.3)/etcd
BENCH_BIN ?= $(or $(TMPDIR),/tmp)/tessera-bench-bin
BENCH_DURATION ?= 10s
BENCH_ROUNDS ?= 2
bench-compare:
	@test -x "$(ETCD_BIN)" || { echo "no etcd at $(ETCD_BIN): build etcd 3.7.3 with make etcd-reference or pass ETCD_BIN=/path/to/etcd" >&2; exit 1; }
	mkdir -p $(BENCH_BIN)
	$(GO) build -o $(BENCH_BIN)/tessera ./cmd/tessera
	$(GO) build -o $(BENCH_BIN)/tessbench ./cmd/tessbench
	$(BENCH_BIN)/tessbench compare --etcd-bin $(ETCD_BIN) --install-etcd=false --tessera-bin $(BENCH_BIN)/tessera \
		--clients 100 --conns 10 --duration $(BENCH_DURATION) --rounds $(BENCH_ROUNDS) --cases put,range-l,range-s,range-prefix
	for ep in 1 2; do $(BENCH_BIN)/tessbench compare --etcd-bin $(ETCD_BIN) --install-etcd=false --tessera-bin $(BENCH_BIN)/tessera \
		--clients 1 --conns 1 --duration $(BENCH_DURATION) --rounds $(BENCH_ROUNDS) --cases put --endpoint $$ep || exit 1; done

# The issue #11 size-split run at full size: 200,000 keys into a 3-node
# cluster with --range-max-bytes 4 MiB end in >= 10 ranges (`make test`
# runs the same test with 20,000 keys and 256 KiB).
split-long:
	TESSERA_SPLIT_LONG=1 $(GO) test -count=1 -timeout 20m -v -run TestSplitBySizeProcesses ./tests/system/

# The placement scheduler against a model cluster (no processes): 100 nodes
# x 100,000 ranges, then 10 nodes added, then one killed for good; prints
# the operations, the simulated time to converge within ±10% and the spread
# over time (docs/operations.md, "Balancing"). SIMULATE_FLAGS adds flags
# (tessbench simulate --help).
simulate:
	$(GO) run ./cmd/tessbench simulate $(SIMULATE_FLAGS)

# The backup round trip of docs/operations.md "Figures": a 3-node, 8-range
# cluster loaded with 1 GiB of values, etcdctl snapshot save under writes,
# tessctl snapshot restore into a new 3-node cluster, which is started and
# checked against the source at the backup revision. Not part of `make test`
# (about half an hour, 5 GB of disk). BACKUP_MIB=256 for a smaller run.
BACKUP_MIB ?= 1024
.PHONY: backup-1g
backup-1g:
	bash scripts/maintenance-figures.sh backup $(BACKUP_MIB)
