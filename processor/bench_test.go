package processor

import (
	"context"
	"fmt"
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
	spec, err := topology.Parse([]byte(specYAML))
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
	t := newTask(0, db.TaskStore("windows", 0, p.aggSpecs, 0), state.Checkpoint{}, time.Now())
	if err := t.rebuildIndex(p); err != nil {
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
func BenchmarkAggregate(b *testing.B) {
	p, t := benchPipeline(b)
	keys := make([]string, 100_000)
	for i := range keys {
		keys[i] = fmt.Sprintf(`["svc-%d","/ep/%d"]`, i%100, i)
	}
	fields := map[string]any{"status": 200.0, "latency_ms": 42.0}
	ts := int64(1764158400000)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		ins, _, err := p.aggInputs(fields, p.insBuf)
		if err != nil {
			b.Fatal(err)
		}
		p.insBuf = ins
		if _, err := p.aggregate(t, keys[i%len(keys)], ts, ins); err != nil {
			b.Fatal(err)
		}
		if err := p.closeWindows(t, func(result) {}); err != nil {
			b.Fatal(err)
		}
		ts++
		i++
		if i%10_000 == 0 {
			if err := t.store.Commit(t.store.Dirty(), t.checkpoint()); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkAggregateWithAlerts: BenchmarkAggregate with a threshold rule
// (evaluated on every closed window) and an absence rule (updated on every
// record, due times checked after it), to show what alerting costs per
// record.
func BenchmarkAggregateWithAlerts(b *testing.B) {
	p, t := benchPipelineOf(b, benchSpec+`alerts:
  rules:
    - {name: errors-high, kind: threshold, condition: 'requests >= 20 && errors > requests * 0.2'}
    - {name: traffic-stopped, kind: absence, for: 5m}
`)
	keys := make([]string, 100_000)
	for i := range keys {
		keys[i] = fmt.Sprintf(`["svc-%d","/ep/%d"]`, i%100, i)
	}
	fields := map[string]any{"status": 200.0, "latency_ms": 42.0}
	ts := int64(1764158400000)
	none := func(alertEvent) {}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		ins, _, err := p.aggInputs(fields, p.insBuf)
		if err != nil {
			b.Fatal(err)
		}
		p.insBuf = ins
		key := keys[i%len(keys)]
		p.alerts.onRecord(t, key, ts, none)
		if _, err := p.aggregate(t, key, ts, ins); err != nil {
			b.Fatal(err)
		}
		if err := p.closeWindows(t, func(r result) { p.alerts.onWindow(p, t, r.wk, r.row, none) }); err != nil {
			b.Fatal(err)
		}
		p.alerts.checkDue(t, t.streamTime, none)
		ts++
		i++
		if i%10_000 == 0 {
			p.alerts.flush(t)
			if err := t.store.Commit(t.store.Dirty(), t.checkpoint()); err != nil {
				b.Fatal(err)
			}
		}
	}
}
