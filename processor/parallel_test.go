package processor

// Parallel tasks (issue 17, parallel.go): with Parallelism > 1 the tasks
// of a worker really process at the same time (two tasks are inside
// their jobs at once), and the results are those of a sequential run,
// which are those of an independent count over the input (plain loops
// below), under both guarantees, with and without a repartition topic.

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hamba/avro/v2"
	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eddy-streams/eddy/schema"
	"github.com/eddy-streams/eddy/topology"
)

const (
	parBase    = int64(1_700_000_000_000) // event time of the first record (a multiple of the window size)
	parSpan    = int64(1_000_000)         // records' event times are in [parBase, parBase+parSpan)
	parWindow  = int64(10_000)
	parParts   = 4
	parUsers   = 40
	parRecords = 4000
)

// parInput is the scenario's input: record i of user i%parUsers at event
// time parBase + i*parSpan/parRecords (so increasing in every partition),
// then one record per partition at parBase+parSpan+10005, which closes
// every window ending at or before parBase+parSpan (size 10s, grace 5s)
// and is itself in a window that stays open. byUser puts a user's records
// in one partition (the source is keyed by the grouping key); else the
// partition is random.
type parRecord struct {
	part int32
	user string
	ts   int64
}

func parInput(byUser bool) []parRecord {
	r := rand.New(rand.NewPCG(17, 1))
	var recs []parRecord
	for i := range parRecords {
		u := i % parUsers
		p := int32(r.IntN(parParts))
		if byUser {
			p = int32(u % parParts)
		}
		recs = append(recs, parRecord{part: p, user: fmt.Sprintf("u%02d", u), ts: parBase + int64(i)*parSpan/parRecords})
	}
	for p := range int32(parParts) {
		recs = append(recs, parRecord{part: p, user: fmt.Sprintf("u%02d", p), ts: parBase + parSpan + 10_005})
	}
	return recs
}

// parExpected counts the input per user and window, for the windows that
// close (end <= parBase+parSpan).
func parExpected(recs []parRecord) map[string]float64 {
	want := map[string]float64{}
	for _, rec := range recs {
		start := rec.ts - rec.ts%parWindow
		if start+parWindow > parBase+parSpan {
			continue
		}
		want[fmt.Sprintf("%s@%d", rec.user, start)]++
	}
	return want
}

type parRun struct {
	parallelism int
	processing  string
	probe       func(partition int32)
	// reg, when set, makes the input Avro (parAvroSchema, id 1), read
	// through reg; started, when set, is called once the App runs, with
	// the channel of Run's result.
	reg     *fakeRegistry
	started func(app *App, done chan error)
}

// parAvroSchema is the scenario's input as Avro.
const parAvroSchema = `{"type":"record","name":"Par","namespace":"test","fields":[
 {"name":"ts","type":"long"},{"name":"user","type":"string"},{"name":"lat","type":"long"},{"name":"ep","type":"string"}]}`

// runParallelScenario runs the pipeline on a fresh kfake cluster over
// recs and returns its results, user@window_start -> requests and
// user@window_start -> the whole result value, once as many as want have
// arrived (and failing on a result seen twice).
func runParallelScenario(t *testing.T, recs []parRecord, byUser bool, run parRun, want int) (map[string]float64, map[string]string) {
	t.Helper()
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(parParts, "in"))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	brokers := cluster.ListenAddrs()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	pcl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic("in"), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	format := ""
	if run.reg != nil {
		format = ", format: avro"
	}
	for _, rec := range recs {
		m := map[string]any{"ts": rec.ts, "user": rec.user, "lat": rec.ts % 997, "ep": fmt.Sprintf("/e%d", rec.ts%7)}
		v, _ := json.Marshal(m)
		if run.reg != nil {
			body, err := avro.Marshal(run.reg.byID[1].Avro, m)
			if err != nil {
				t.Fatal(err)
			}
			v = append(binary.BigEndian.AppendUint32([]byte{0}, 1), body...)
		}
		kr := &kgo.Record{Partition: rec.part, Value: v}
		if byUser {
			kr.Key = []byte(`["` + rec.user + `"]`)
		}
		pcl.Produce(ctx, kr, func(_ *kgo.Record, err error) {
			if err != nil {
				t.Error(err)
			}
		})
	}
	if err := pcl.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	pcl.Close()

	keyed := ""
	if byUser {
		keyed = ", keyed_by_group_key: true"
	}
	spec, err := topology.Parse([]byte(`app: par
source: {topics: [in]` + keyed + format + `}
time: {field: ts}
key: [user]
window: {type: tumbling, size: 10s, grace: 5s}
aggregates:
  - {name: requests, op: count}
  - {name: slow, op: count, where: "lat > 500"}
  - {name: p99_lat, op: p99, field: lat}
  - {name: mean_lat, op: mean, field: lat}
  - {name: endpoints, op: distinct, field: ep}
  - {name: top_endpoints, op: top_k, field: ep, k: 2}
emit: close
output: {topic: out}
commit_interval: 200ms
idle_timeout: 24h
processing: ` + run.processing + `
`))
	if err != nil {
		t.Fatal(err)
	}
	var reg schema.Registry
	if run.reg != nil {
		reg = run.reg
	}
	app, err := New(Config{Spec: spec, Brokers: brokers, StateDir: t.TempDir(), Parallelism: run.parallelism, Registry: reg,
		SessionTimeout: 6 * time.Second, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	app.aggProbe = run.probe
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx) }()
	if run.started != nil {
		run.started(app, done)
	}
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("app: %v", err)
		}
	}()

	ccl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics("out"),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer ccl.Close()
	got, values := map[string]float64{}, map[string]string{}
	deadline := time.Now().Add(60 * time.Second)
	for len(got) < want {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %d results; have %d", want, len(got))
		}
		select {
		case err := <-done:
			done <- err
			t.Fatalf("app stopped: %v", err)
		default:
		}
		pctx, pcancel := context.WithTimeout(ctx, 500*time.Millisecond)
		fs := ccl.PollFetches(pctx)
		pcancel()
		fs.EachRecord(func(r *kgo.Record) {
			var v struct {
				User     string  `json:"user"`
				Start    string  `json:"window_start"`
				Requests float64 `json:"requests"`
			}
			if err := json.Unmarshal(r.Value, &v); err != nil {
				t.Fatalf("result %s: %v", r.Value, err)
			}
			ts, err := time.Parse(time.RFC3339Nano, v.Start)
			if err != nil {
				t.Fatalf("window_start of %s: %v", r.Value, err)
			}
			k := fmt.Sprintf("%s@%d", v.User, ts.UnixMilli())
			if _, dup := got[k]; dup {
				t.Errorf("result for %s twice: %s", k, r.Value)
			}
			got[k] = v.Requests
			values[k] = string(r.Value)
		})
	}
	return got, values
}

// TestParallelTasksRunConcurrently: at Parallelism 4, two tasks are
// inside their jobs at the same time (a probe at the start of each job
// waits, a bounded time, for another task to join it); at Parallelism 1
// never. Both runs' results equal the independent count, under both
// guarantees, with the source keyed by the grouping key (one task per
// source partition) and through a repartition topic.
func TestParallelTasksRunConcurrently(t *testing.T) {
	t.Parallel()
	for _, byUser := range []bool{true, false} {
		name := "repartition"
		if byUser {
			name = "keyed"
		}
		t.Run(name, func(t *testing.T) {
			recs := parInput(byUser)
			want := parExpected(recs)
			if len(want) < 100*parUsers/parParts {
				t.Fatalf("scenario too small: %d windows", len(want))
			}

			// Sequential: never two tasks at once.
			var seqInside, seqMax atomic.Int32
			seq, seqValues := runParallelScenario(t, recs, byUser, parRun{parallelism: 1, processing: topology.AtLeastOnce,
				probe: func(int32) {
					n := seqInside.Add(1)
					defer seqInside.Add(-1)
					for m := seqMax.Load(); n > m && !seqMax.CompareAndSwap(m, n); m = seqMax.Load() {
					}
				}}, len(want))
			if m := seqMax.Load(); m != 1 {
				t.Errorf("parallelism 1: %d tasks processed at once, want 1", m)
			}
			if !maps.Equal(seq, want) {
				t.Errorf("parallelism 1: results differ from the independent count:%s", diffCounts(seq, want))
			}

			for _, processing := range []string{topology.AtLeastOnce, topology.ExactlyOnce} {
				var inside, most, waits atomic.Int32
				probe := func(int32) {
					inside.Add(1)
					defer inside.Add(-1)
					if most.Load() >= 2 || waits.Add(1) > 6 {
						return
					}
					for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
						if n := inside.Load(); n >= 2 {
							most.Store(n)
							return
						}
					}
				}
				par, parValues := runParallelScenario(t, recs, byUser, parRun{parallelism: 4, processing: processing, probe: probe}, len(want))
				if most.Load() < 2 {
					t.Errorf("%s, parallelism 4: no two tasks were processing at the same time", processing)
				}
				if !maps.Equal(par, seq) {
					t.Errorf("%s, parallelism 4: results differ from the sequential run's:%s", processing, diffCounts(par, seq))
				}
				// Every aggregate (quantile, mean, distinct, top_k,
				// filtered count), byte for byte.
				n := 0
				for k, v := range seqValues {
					if parValues[k] != v {
						if n++; n <= 3 {
							t.Errorf("%s, parallelism 4: result %s is %s, sequentially %s", processing, k, parValues[k], v)
						}
					}
				}
			}
		})
	}
}

// TestParallelRegistryOutage: the schema registry is down when a worker
// with 4 tasks on 4 goroutines starts, so the tasks' first records are
// undecided in the same turn; each goroutine stops at its own and the
// loop, after the parallel phase, stalls each partition (at-least-once)
// or aborts the transaction (exactly-once). When the registry answers,
// the results are the independent count: nothing lost, nothing counted
// twice, nothing dead-lettered (a dead-lettered record would be missing
// from its count).
func TestParallelRegistryOutage(t *testing.T) {
	t.Parallel()
	parsed, err := schema.ParseSchema(parAvroSchema)
	if err != nil {
		t.Fatal(err)
	}
	recs := parInput(true)
	want := parExpected(recs)
	for _, processing := range []string{topology.AtLeastOnce, topology.ExactlyOnce} {
		t.Run(processing, func(t *testing.T) {
			reg := &fakeRegistry{byID: map[int]*schema.Schema{1: {ID: 1, Subject: "in-value", Version: 1, Text: parAvroSchema, Avro: parsed}}}
			reg.down.Store(true)
			got, _ := runParallelScenario(t, recs, true, parRun{parallelism: 4, processing: processing, reg: reg,
				started: func(app *App, done chan error) {
					// Up once the worker waits for it (registry_wait.go).
					waitUntil(t, 30*time.Second, "the worker to wait for the registry", func() (bool, string) {
						select {
						case err := <-done:
							done <- err
							t.Fatalf("app stopped: %v", err)
						default:
						}
						var m dto.Metric
						if err := app.m.registryWaiting.Write(&m); err != nil {
							t.Fatal(err)
						}
						g := m.GetGauge().GetValue()
						return g == 1, fmt.Sprintf("eddy_registry_waiting %v after %d registry calls", g, reg.calls.Load())
					})
					reg.down.Store(false)
				}}, len(want))
			if !maps.Equal(got, want) {
				t.Errorf("results differ from the independent count:%s", diffCounts(got, want))
			}
		})
	}
}

// TestParallelismThresholdAlerts: Parallelism is what it says, with or
// without threshold alert rules (their expression environment is per task:
// processor/engine TestThresholdRulesConcurrentTasks), and 0 is GOMAXPROCS.
func TestParallelismThresholdAlerts(t *testing.T) {
	base := `app: par-alerts
source: {topics: [in]}
time: {field: ts}
key: [user]
window: {type: tumbling, size: 10s, grace: 5s}
aggregates:
  - {name: requests, op: count}
output: {topic: out}
`
	plain, err := topology.Parse([]byte(base))
	if err != nil {
		t.Fatal(err)
	}
	alerting, err := topology.Parse([]byte(base + `alerts:
  rules:
    - {name: busy, kind: threshold, condition: "requests > 100"}
`))
	if err != nil {
		t.Fatal(err)
	}
	if n, why := parallelism(plain, 3); n != 3 || why != "" {
		t.Errorf("without alerts, Parallelism 3: %d (%q), want 3", n, why)
	}
	if n, _ := parallelism(plain, 0); n != runtime.GOMAXPROCS(0) {
		t.Errorf("without alerts, Parallelism 0: %d, want GOMAXPROCS %d", n, runtime.GOMAXPROCS(0))
	}
	if n, why := parallelism(alerting, 3); n != 3 || why != "" {
		t.Errorf("with threshold rule busy, Parallelism 3: %d (%q), want 3 (tasks keep their own alert environment)", n, why)
	}
}

func diffCounts(got, want map[string]float64) string {
	s, n := "", 0
	for k, w := range want {
		if g, ok := got[k]; !ok || g != w {
			if n++; n <= 5 {
				s += fmt.Sprintf(" %s: got %v (present %v), want %v;", k, g, ok, w)
			}
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok {
			if n++; n <= 10 {
				s += fmt.Sprintf(" %s: got %v, not expected;", k, g)
			}
		}
	}
	return fmt.Sprintf("%s (%d differences)", s, n)
}
