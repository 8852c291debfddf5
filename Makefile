# Convenience targets; scripts/test.sh is the real test command (see docs/testing.md).
.PHONY: test test-fast build demo kafka-start kafka-stop vet bench bench-quick bench-micro

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

# eddy against Kafka Streams and Goka (bench/goka, its own Go module) on a
# real broker, with the I/O ceiling and pass-through latency baselines
# (BENCHMARKS.md; settings in bench/cmd/harness/main.go). The harness,
# broker and load generator run on CPU 0, the system under test on
# EDDY_BENCH_CPUS (default 1).
bench:
	go build -o bin/bench-harness ./bench/cmd/harness
	taskset -c 0 bin/bench-harness

# A smoke run of the same: fewer records, one repetition.
bench-quick:
	go build -o bin/bench-harness ./bench/cmd/harness
	EDDY_BENCH_QUICK=1 EDDY_BENCH_OUT=$${EDDY_BENCH_OUT:-/tmp/eddy-bench-quick} taskset -c 0 bin/bench-harness

# The Go microbenchmarks of the per-record hot paths.
bench-micro:
	go test -run '^$$' -bench . -benchmem ./...
