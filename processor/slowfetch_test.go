package processor

import (
	"context"
	"encoding/json"
	"log/slog"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eddy-streams/eddy/state"
	"github.com/eddy-streams/eddy/topology"
)

// TestSlowFirstFetchIsNotIdle: a source partition is assigned while empty
// and its first fetch is slow (held back by the test, as a loaded broker
// or machine would). Records arrive in it meanwhile, then on the other
// partition for longer than the idle timeout and past the first records'
// windows. The worker must learn from the partition's end offset that it
// has records to read (it is not caught up, so not idle): every record is
// counted in its window, none goes to the late topic. With only the end
// offset listed at assignment, the partition stayed "read to the end"
// until its first fetch, went idle, and its records came late.
func TestSlowFirstFetchIsNotIdle(t *testing.T) {
	for _, processing := range []string{"at_least_once", "exactly_once"} {
		t.Run(processing, func(t *testing.T) {
			t.Parallel()
			testSlowFirstFetch(t, processing)
		})
	}
}

func testSlowFirstFetch(t *testing.T, processing string) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "in"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close) // after the App stops (startApp)
	brokers := cluster.ListenAddrs()
	spec, err := topology.Parse([]byte(`app: slowfetch
source: {topics: [in]}
time: {field: ts}
key: [user]
window: {type: tumbling, size: 1s, grace: 200ms}
aggregates: [{name: n, op: count}]
output: {topic: out}
commit_interval: 100ms
idle_timeout: 1s
processing: ` + processing + `
`))
	if err != nil {
		t.Fatal(err)
	}
	held := state.SourcePartition{Topic: "in", Partition: 1}
	app, _ := startApp(t, Config{Spec: spec, Brokers: brokers, SessionTimeout: 6 * time.Second}, func(app *App) {
		app.hooks.holdFetch = fetchHold{sp: held, d: time.Hour} // released below
	})
	ctx := context.Background()
	waitUntil(t, 30*time.Second, "the worker ready", func() (bool, string) { return app.Ready(), "" })
	// Partition 1 has been read to the end (it is empty) for longer than
	// the idle timeout: idle, as it should be.
	time.Sleep(1500 * time.Millisecond)

	pcl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic("in"), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer pcl.Close()
	produced := 0
	send := func(p int32, user string) {
		v, _ := json.Marshal(map[string]any{"user": user, "ts": time.Now().UnixMilli()})
		if err := pcl.ProduceSync(ctx, &kgo.Record{Partition: p, Value: v}).FirstErr(); err != nil {
			t.Fatal(err)
		}
		produced++
	}
	// Records on the held partition, then a pause for the worker to
	// learn of them, then three seconds of records on the other one.
	for range 10 {
		send(1, "b")
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(time.Second)
	for start := time.Now(); time.Since(start) < 3*time.Second; {
		send(0, "a")
		time.Sleep(50 * time.Millisecond)
	}
	app.mu.Lock()
	app.heldUntil = time.Time{} // the first fetch may now happen
	app.mu.Unlock()

	// Every record ends up counted in a result or on the late topic.
	counted, late := countResults(t, ctx, brokers, "out", "slowfetch-late", produced)
	if late != 0 || counted != produced {
		t.Errorf("%d of %d records counted in results, %d on the late topic; want all counted, none late: the partition whose first fetch was slow was taken for idle", counted, produced, late)
	}
}

// countResults reads the count results (field n) of topic out and the
// records of topic late from their starts, read committed, until the
// counts and the late records add up to want (30 s at most: then the test
// fails), and returns both.
func countResults(t *testing.T, ctx context.Context, brokers []string, out, late string, want int) (counted, lateN int) {
	t.Helper()
	ccl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(out, late),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer ccl.Close()
	deadline := time.Now().Add(30 * time.Second)
	for counted+lateN < want {
		if time.Now().After(deadline) {
			t.Fatalf("after 30s, %d of %d records counted in a result and %d on the late topic", counted, want, lateN)
		}
		pctx, pcancel := context.WithTimeout(ctx, 500*time.Millisecond)
		fs := ccl.PollFetches(pctx)
		pcancel()
		fs.EachRecord(func(r *kgo.Record) {
			if r.Topic == late {
				lateN++
				return
			}
			var v struct {
				N float64 `json:"n"`
			}
			if err := json.Unmarshal(r.Value, &v); err != nil {
				t.Fatalf("result %s: %v", r.Value, err)
			}
			counted += int(v.N)
		})
	}
	return counted, lateN
}

// startApp makes an App of cfg (its log kept, and shown if the test
// fails), lets before set it up (test hooks), runs it until the test ends
// (then it must stop without an error), and returns it and its log.
func startApp(t *testing.T, cfg Config, before func(*App)) (*App, *lockedBuf) {
	t.Helper()
	log := &lockedBuf{}
	cfg.Logger = slog.New(slog.NewTextHandler(log, nil))
	if cfg.StateDir == "" {
		cfg.StateDir = t.TempDir()
	}
	app, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if before != nil {
		before(app)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("app: %v", err)
		}
		if t.Failed() {
			t.Logf("log:\n%s", log)
		}
	})
	return app, log
}
