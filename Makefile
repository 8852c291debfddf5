# Convenience targets; scripts/test.sh is the real test command (see docs/testing.md).
.PHONY: test test-fast build demo kafka-start kafka-stop vet bench

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

bench:
	go test -run '^$$' -bench . -benchmem ./...
