package processor

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eddy-streams/eddy/state"
	"github.com/eddy-streams/eddy/topology"
)

const benchSpec = `app: bench
source: {topics: [in]}
time: {field: ts}
key: [service, endpoint]
window: {type: tumbling, size: 10s, grace: 5s}
aggregates:
  - {name: requests, op: count}
  - {name: errors, op: count, where: "status >= 500"}
  - {name: p99_latency_ms, op: p99, field: latency_ms}
output: {topic: out}
`

func benchPipeline(b *testing.B) (*pipeline, *task) { return benchPipelineOf(b, benchSpec) }

// benchPipelineOf builds the pipeline of specYAML and one task over a
// fresh Pebble store, its index (and alert state) loaded.
func benchPipelineOf(b *testing.B, specYAML string) (*pipeline, *task) {
	spec, err := topology.Parse([]byte(benchSpec))
	if err != nil {
		b.Fatal(err)
	}
	p, err := newPipeline(spec)
	if err != nil {
		b.Fatal(err)
	}
	db, err := state.Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	t := p.newTask(0, db.TaskStore("windows", 0, p.aggSpecs, 0), state.Checkpoint{}, time.Now())
	if err := t.rebuildIndex(); err != nil {
		b.Fatal(err)
	}
	return p, t
}

// BenchmarkPrepareJSON: decode, event time, filter and grouping key of one
// ~150-byte JSON record (the repartition step's per-record work).
func BenchmarkPrepareJSON(b *testing.B) {
	p, _ := benchPipeline(b)
	rec := &kgo.Record{Value: []byte(`{"ts":1764158400000,"service":"checkout","endpoint":"/api/pay","method":"POST","status":200,"latency_ms":118.5,"region":"eu-west-1"}`)}
	now := time.UnixMilli(1764158400000)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, re, err := p.prepare(ctx, rec, now); re != nil || err != nil {
			b.Fatal(re, err)
		}
	}
}

// BenchmarkAggregate: the window step's per-record work (where clauses,
// window assignment, cache update, close check) over 100k keys, event
// time advancing 1ms per record, with a commit to Pebble every 10k records.
