package processor

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eddy-streams/eddy/internal/benchdata"
	"github.com/eddy-streams/eddy/schema"
	"github.com/eddy-streams/eddy/topology"
)

// benchEventSchema is the input schema of the side-by-side benchmark.
const benchEventSchema = benchdata.EventSchema

// BenchmarkApp runs the whole App — fetch, Avro decode, window step,
// commits producing changelog rows and final results, Pebble — on an
// in-process kfake broker, over b.N records pre-loaded into 6 partitions
// keyed by the grouping key (the harness's count workloads, without a
// real broker). The in-process broker shares the CPU, so the numbers are
// for comparing eddy's changes, not for comparing with other systems;
// records/s is reported. Run with e.g. -benchtime 300000x.
func BenchmarkApp(b *testing.B) {
	for _, keys := range []int{1000, 100_000} {
		b.Run("count-u"+strconv.Itoa(keys/1000)+"k", func(b *testing.B) {
			benchApp(b, keys, "  - {name: requests, op: count}\n")
		})
	}
	b.Run("p99-u100k", func(b *testing.B) {
		benchApp(b, 100_000, "  - {name: requests, op: count}\n  - {name: p99_latency_ms, op: p99, field: latency_ms}\n")
	})
}

// BenchmarkAppParallel is count-u100k at Parallelism 1 (every task on the
// processing loop's goroutine) and at GOMAXPROCS (the default): run with
// -cpu 1,2 to see what parallel tasks add to what the runtime and the
// in-process broker gain from a second core (issue 17, BENCHMARKS.md
// "Parallel tasks").
func BenchmarkAppParallel(b *testing.B) {
	for _, par := range []int{1, 0} {
		name := "count-u100k/par1"
		if par == 0 {
			name = "count-u100k/parmax"
		}
		b.Run(name, func(b *testing.B) {
			benchAppPar(b, 100_000, "  - {name: requests, op: count}\n", par)
		})
	}
}

func benchApp(b *testing.B, keys int, aggregates string) { benchAppPar(b, keys, aggregates, 0) }

// benchAppPar is benchApp at Config.Parallelism par (0: GOMAXPROCS).
func benchAppPar(b *testing.B, keys int, aggregates string, par int) {
	cluster, brokers := benchCluster(b)
	defer cluster.Close()
	reg := benchPreload(b, brokers, b.N, func(i int, r *rand.Rand) int { return r.IntN(keys) })
	spec := benchSpecOf(b, "10s", "5s", aggregates)
	b.ResetTimer()
	cpu0 := cpuTime()
	start := time.Now()
	wait0 := runqWait()
	tenth := benchRunUntilCommittedPar(b, brokers, spec, reg, b.TempDir(), par)
	elapsed := time.Since(start)
	cpu := cpuTime() - cpu0
	wait := runqWait() - wait0
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "records/s")
	// After the start (group join, assignment, first fetches): the rate
	// from the first time a tenth of the records was seen committed to
	// the end.
	if !tenth.IsZero() {
		b.ReportMetric(0.9*float64(b.N)/start.Add(elapsed).Sub(tenth).Seconds(), "steady-records/s")
	}
	b.ReportMetric(cpu.Seconds()*1e6/float64(b.N), "cpu-µs/record")
	// Cores used, and the time the process's threads were ready to run
	// but waited for a core (the machine's other load), per second.
	b.ReportMetric(cpu.Seconds()/elapsed.Seconds(), "cores")
	b.ReportMetric(wait.Seconds()/elapsed.Seconds(), "runq-wait-s/s")
}

// runqWait is the time the process's threads have spent runnable but
// waiting for a CPU (the second field of /proc/self/task/*/schedstat;
// Linux only, 0 elsewhere): high when other processes load the machine.
func runqWait() time.Duration {
	ents, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return 0
	}
	var sum int64
	for _, e := range ents {
		b, err := os.ReadFile("/proc/self/task/" + e.Name() + "/schedstat")
		if err != nil {
			continue
		}
		f := strings.Fields(string(b))
		if len(f) < 2 {
			continue
		}
		if n, err := strconv.ParseInt(f[1], 10, 64); err == nil {
			sum += n
		}
	}
	return time.Duration(sum)
}

// BenchmarkAppRestore: an App starting with no local state restores a
// changelog of b.N rows (every record a new key, windows that cannot
// close), from Run to Ready; reports changelog records/s.
func BenchmarkAppRestore(b *testing.B) {
	cluster, brokers := benchCluster(b)
	defer cluster.Close()
	reg := benchPreload(b, brokers, b.N, func(i int, _ *rand.Rand) int { return i })
	spec := benchSpecOf(b, "24h", "24h", "  - {name: requests, op: count}\n")
	benchRunUntilCommitted(b, brokers, spec, reg, b.TempDir())

	app, err := New(Config{Spec: spec, Brokers: brokers, StateDir: b.TempDir(), Registry: reg,
		SessionTimeout: 6 * time.Second, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	cpu0 := cpuTime()
	start := time.Now()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx) }()
	for !app.Ready() {
		select {
		case err := <-done:
			cancel()
			b.Fatalf("app stopped: %v", err)
		case <-time.After(5 * time.Millisecond):
		}
	}
	elapsed := time.Since(start)
	cpu := cpuTime() - cpu0
	b.StopTimer()
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "records/s")
	b.ReportMetric(cpu.Seconds()*1e6/float64(b.N), "cpu-µs/record")
}

func benchCluster(b testing.TB) (*kfake.Cluster, []string) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(6, "in"))
	if err != nil {
		b.Fatal(err)
	}
	return cluster, cluster.ListenAddrs()
}

// benchPreload writes n records to "in": event time +1 ms per record,
// ending now, the key of record i key(i) (as k-%07d), keyed by the
// grouping key. It returns a registry holding their schema.
func benchPreload(b testing.TB, brokers []string, n int, key func(i int, r *rand.Rand) int) *fakeRegistry {
	parsed, err := schema.ParseSchema(benchEventSchema)
	if err != nil {
		b.Fatal(err)
	}
	reg := &fakeRegistry{byID: map[int]*schema.Schema{1: {ID: 1, Subject: "in-value", Version: 1, Text: benchEventSchema, Avro: parsed}}}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic("in"), kgo.MaxBufferedRecords(100_000))
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	ctx := context.Background()
	r := rand.New(rand.NewPCG(1, 2))
	ts := time.Now().UnixMilli() - int64(n)
	for i := range n {
		k := fmt.Sprintf("k-%07d", key(i, r))
		body, err := avro.Marshal(parsed, map[string]any{
			"ts": ts + int64(i), "key": k, "service": "checkout", "endpoint": "/api/pay",
			"status": 200, "latency_ms": float64(r.IntN(50000)) / 100, "region": "eu-west-1",
			"user_agent": "okhttp/4.12.0 (Android 14)", "tags": []string{"web", "beta"},
			"request_id": "req-" + strconv.Itoa(i),
		})
		if err != nil {
			b.Fatal(err)
		}
		v := binary.BigEndian.AppendUint32([]byte{0}, 1)
		cl.Produce(ctx, &kgo.Record{Key: []byte(`["` + k + `"]`), Value: append(v, body...)}, func(_ *kgo.Record, err error) {
			if err != nil {
				b.Error(err)
			}
		})
	}
	if err := cl.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	return reg
}

func benchSpecOf(b testing.TB, size, grace, aggregates string) *topology.Spec {
	spec, err := topology.Parse([]byte(`app: bench
source: {topics: [in], format: avro, keyed_by_group_key: true}
time: {field: ts, max_future: 1h}
key: [key]
window: {type: tumbling, size: ` + size + `, grace: ` + grace + `}
aggregates:
` + aggregates + `emit: close
output: {topic: out}
commit_interval: 1s
idle_timeout: 24h
`))
	if err != nil {
		b.Fatal(err)
	}
	return spec
}

// benchRunUntilCommitted runs an App until the group has committed the
// end of every partition of "in", then stops it.
func benchRunUntilCommitted(b testing.TB, brokers []string, spec *topology.Spec, reg *fakeRegistry, dir string) {
	benchRunUntilCommittedPar(b, brokers, spec, reg, dir, 0)
}

// benchRunUntilCommittedPar is benchRunUntilCommitted at
// Config.Parallelism par.
//
// It returns when a tenth of the records was first seen committed (zero
// if never before the end), to tell the start from the steady state.
func benchRunUntilCommittedPar(b testing.TB, brokers []string, spec *topology.Spec, reg *fakeRegistry, dir string, par int) (tenth time.Time) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx := context.Background()
	ends, err := adm.ListEndOffsets(ctx, "in")
	if err != nil {
		b.Fatal(err)
	}
	app, err := New(Config{Spec: spec, Brokers: brokers, StateDir: dir, Registry: reg, Parallelism: par,
		SessionTimeout: 6 * time.Second, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- app.Run(runCtx) }()
	for {
		select {
		case err := <-done:
			b.Fatalf("app stopped: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
		offs, err := adm.FetchOffsets(ctx, spec.GroupID())
		if err != nil {
			continue
		}
		all := true
		var total, committed int64
		ends.Each(func(e kadm.ListedOffset) {
			total += e.Offset
			o, ok := offs.Lookup(e.Topic, e.Partition)
			if ok {
				committed += o.At
			}
			if e.Offset > 0 && (!ok || o.At < e.Offset) {
				all = false
			}
		})
		if all {
			break
		}
		if tenth.IsZero() && committed*10 >= total {
			tenth = time.Now()
		}
	}
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	return tenth
}

// cpuTime is the process's user+system CPU time (all threads, the
// in-process broker included): on a shared machine a steadier measure
// than elapsed time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
