package engine

import (
	"fmt"
	"testing"
	"time"

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

// benchPipeline is specYAML's pipeline and an empty store, closed when
// the benchmark ends.
func benchPipeline(b *testing.B, specYAML string) (*Pipeline, *state.DB) {
	spec, err := topology.Parse([]byte(specYAML))
	if err != nil {
		b.Fatal(err)
	}
	p, err := NewPipeline(spec)
	if err != nil {
		b.Fatal(err)
	}
	db, err := state.Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	return p, db
}

func benchTask(b *testing.B, specYAML string) *Task {
	p, db := benchPipeline(b, specYAML)
	t := NewTask(p, db.TaskStore("windows", 0, p.aggSpecs, 0), state.Checkpoint{}, time.Now())
	if err := t.Rebuild(true); err != nil {
		b.Fatal(err)
	}
	if err := t.LoadAlerts(); err != nil {
		b.Fatal(err)
	}
	return t
}

// benchProcess feeds b.N records of 100k keys, one ms apart, through
// Task.Process, committing every 10,000 records.
func benchProcess(b *testing.B, t *Task) {
	keys := make([]string, 100_000)
	for i := range keys {
		keys[i] = fmt.Sprintf(`["svc-%d","/ep/%d"]`, i%100, i)
	}
	fields := map[string]any{"status": 200.0, "latency_ms": 42.0}
	ts := int64(1764158400000)
	in := state.SourcePartition{Topic: "in"}
	var fx Effects
	now := time.Now()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		rec := Record{Input: in, Offset: int64(i), Source: in, SourceOffset: int64(i), Key: keys[i%len(keys)], Time: ts, Fields: fields}
		if err := t.Process(rec, now, &fx); err != nil {
			b.Fatal(err)
		}
		ts++
		i++
		if i%10_000 == 0 {
			changes, _, err := t.Flush(&fx)
			if err != nil {
				b.Fatal(err)
			}
			if err := t.store.Commit(changes, t.Checkpoint()); err != nil {
				b.Fatal(err)
			}
			t.Flushed()
		}
	}
}

func BenchmarkAggregate(b *testing.B) { benchProcess(b, benchTask(b, benchSpec)) }

func BenchmarkAggregateWithAlerts(b *testing.B) {
	benchProcess(b, benchTask(b, benchSpec+`alerts:
  rules:
    - {name: errors-high, kind: threshold, condition: 'requests >= 20 && errors > requests * 0.2'}
    - {name: traffic-stopped, kind: absence, for: 5m}
`))
}

// BenchmarkRebuild: the open-window index of a store of 200,000 open
// windows rebuilt by a fresh task, as after a restore (reported per
// window).
func BenchmarkRebuild(b *testing.B) {
	const n = 200_000
	p, db := benchPipeline(b, benchSpec)
	store := db.TaskStore("windows", 0, p.aggSpecs, 0)
	fill := NewTask(p, store, state.Checkpoint{}, time.Now())
	in := state.SourcePartition{Topic: "in"}
	fields := map[string]any{"status": 200.0, "latency_ms": 42.0}
	var fx Effects
	for i := range n {
		rec := Record{Input: in, Offset: int64(i), Source: in, SourceOffset: int64(i), Key: fmt.Sprintf(`["svc-%d","/ep/%d"]`, i%100, i), Time: 1764158400000, Fields: fields}
		if err := fill.Process(rec, time.Now(), &fx); err != nil {
			b.Fatal(err)
		}
	}
	changes, _, err := fill.Flush(&fx)
	if err != nil {
		b.Fatal(err)
	}
	if err := store.Commit(changes, fill.Checkpoint()); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		t := NewTask(p, db.TaskStore("windows", 0, p.aggSpecs, 0), state.Checkpoint{}, time.Now())
		if err := t.Rebuild(true); err != nil {
			b.Fatal(err)
		}
		if t.OpenWindows() != n {
			b.Fatalf("%d open windows, want %d", t.OpenWindows(), n)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/window")
}
