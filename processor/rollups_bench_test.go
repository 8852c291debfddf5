package processor

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eddy-streams/eddy/topology"
)

// benchRollups are the three metrics of BenchmarkRollups: one key, three
// windows and aggregate sets, as an SRE would derive from one request
// event.
var benchRollups = []struct{ name, window, aggregates string }{
	{"requests_10s", "{type: tumbling, size: 10s, grace: 5s}", "[{name: requests, op: count}]"},
	{"latency_1m", "{type: tumbling, size: 1m, grace: 5s}", "[{name: requests, op: count}, {name: p99_latency_ms, op: p99, field: latency_ms}]"},
	{"latency_5m", "{type: tumbling, size: 5m, grace: 5s}", "[{name: max_latency_ms, op: max, field: latency_ms}, {name: latency_sum, op: sum, field: latency_ms}]"},
}

// BenchmarkRollups compares one pipeline of three rollups (the source read
// and decoded once) with three single-rollup pipelines (each its own
// group, reading and decoding the whole topic), running at the same time
// in this process, on b.N Avro records over 10,000 keys pre-loaded into an
// in-process kfake broker (keyed by the grouping key: no repartition, so
// what differs is the reads and decodes). records/s is input records over
// the time until every pipeline committed the whole input; cpu-µs/record
// is the process's CPU time per input record. Issue 20, BENCHMARKS.md
// "Several rollups in one read". Run with e.g. -benchtime 200000x.
func BenchmarkRollups(b *testing.B) {
	b.Run("one-pipeline-three-rollups", func(b *testing.B) {
		var rs []string
		for _, r := range benchRollups {
			rs = append(rs, fmt.Sprintf("  - {name: %s, key: [key], window: %s, aggregates: %s, output: {topic: out-%s}}\n", r.name, r.window, r.aggregates, r.name))
		}
		benchRollupsRun(b, []*topology.Spec{benchRollupSpec(b, "bench-rollups", "rollups:\n"+strings.Join(rs, ""))})
	})
	b.Run("three-pipelines", func(b *testing.B) {
		var specs []*topology.Spec
		for _, r := range benchRollups {
			specs = append(specs, benchRollupSpec(b, "bench-"+strings.ReplaceAll(r.name, "_", "-"),
				fmt.Sprintf("key: [key]\nwindow: %s\naggregates: %s\noutput: {topic: out-%s}\n", r.window, r.aggregates, r.name)))
		}
		benchRollupsRun(b, specs)
	})
}

func benchRollupSpec(b *testing.B, app, rollups string) *topology.Spec {
	spec, err := topology.Parse([]byte(`app: ` + app + `
source: {topics: [in], format: avro, keyed_by_group_key: true}
time: {field: ts, max_future: 1h}
commit_interval: 1s
idle_timeout: 24h
` + rollups))
	if err != nil {
		b.Fatal(err)
	}
	return spec
}

// benchRollupsRun pre-loads b.N records and runs every spec's App at once
// until each committed the whole input.
func benchRollupsRun(b *testing.B, specs []*topology.Spec) {
	cluster, brokers := benchCluster(b)
	defer cluster.Close()
	reg := benchPreload(b, brokers, b.N, func(i int, r *rand.Rand) int { return r.IntN(10_000) })
	b.ResetTimer()
	cpu0 := cpuTime()
	start := time.Now()
	var wg sync.WaitGroup
	for _, spec := range specs {
		dir := b.TempDir()
		wg.Add(1)
		go func() {
			defer wg.Done()
			benchRunUntilCommitted(b, brokers, spec, reg, dir)
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	cpu := cpuTime() - cpu0
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "records/s")
	b.ReportMetric(cpu.Seconds()*1e6/float64(b.N), "cpu-µs/record")
}
