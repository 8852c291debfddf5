# Convenience targets; scripts/test.sh is the real test command (see docs/testing.md).
.PHONY: test test-fast build demo kafka-start kafka-stop vet bench bench-harness bench-parallel bench-standby bench-quick bench-micro

test:
	scripts/test.sh

test-fast:
	scripts/test.sh --fast

build:
	go build -o bin/eddy ./cmd/eddy

demo:
	go run ./cmd/eddy demo

kafka-start:
	scripts/kafka.sh start

kafka-stop:
	scripts/kafka.sh stop

vet:
	go vet ./...

# Every benchmark of BENCHMARKS.md's issue-17 targets: the harness, the
# parallel scaling in process and the standby failover time.
bench: bench-harness bench-parallel bench-standby

# eddy against Kafka Streams and Goka (bench/goka, its own Go module) on a
# real broker, with the I/O ceiling and pass-through latency baselines
# (BENCHMARKS.md; settings in bench/cmd/harness/main.go). The harness,
# broker and load generator run on CPU 0, the system under test on
# EDDY_BENCH_CPUS (default 1).
bench-harness:
	go build -o bin/bench-harness ./bench/cmd/harness
	taskset -c 0 bin/bench-harness

# Parallel tasks: count-u100k in process at one and two cores
# (BENCHMARKS.md "Parallel tasks"; 3M records for a steady state, issue 17
# item 7: compare records/s and steady-records/s).
bench-parallel:
	go test ./processor -run '^$$' -bench 'BenchmarkAppParallel' -benchtime 3000000x -cpu 1,2 -count 3

# Standby replicas: SIGKILL to results flowing again, 1M keys, with and
# without a standby, on a real broker this target starts and stops
# (BENCHMARKS.md "Standby replicas").
BENCH_STANDBY_RUN ?= TestKafkaStandbyFailoverTime
bench-standby:
	@set -e; st=$$(mktemp -d); \
	addr=$$(EDDY_KAFKA_STATE=$$st scripts/kafka.sh start | tail -1); \
	trap "EDDY_KAFKA_STATE=$$st scripts/kafka.sh stop" EXIT; \
	EDDY_TEST_BROKERS=$$addr EDDY_REQUIRE_KAFKA=1 go test -tags standbybench -count=1 -run '$(BENCH_STANDBY_RUN)' -v -timeout 60m ./cmd/eddy/

# A smoke run of the same: fewer records, one repetition.
bench-quick:
	go build -o bin/bench-harness ./bench/cmd/harness
	EDDY_BENCH_QUICK=1 EDDY_BENCH_OUT=$${EDDY_BENCH_OUT:-/tmp/eddy-bench-quick} taskset -c 0 bin/bench-harness

# The Go microbenchmarks of the per-record hot paths.
bench-micro:
	go test -run '^$$' -bench . -benchmem ./...
