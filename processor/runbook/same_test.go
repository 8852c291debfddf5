package runbook_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eddy-streams/eddy/internal/kafkatest"
	"github.com/eddy-streams/eddy/processor"
	"github.com/eddy-streams/eddy/processor/runbook"
	"github.com/eddy-streams/eddy/topology"
)

// The same engine code computes previews and real pipelines: one block run
// as a preview and as a processor.App (what `eddy run` runs) over the same
// records on the real broker gives the same windows, and both the counts
// the test computes itself.
func TestKafkaPreviewSameWindowsAsApp(t *testing.T) {
	brokers := kafkatest.Real(t)
	t.Parallel()
	topic := kafkatest.Name(t, "in")
	kafkatest.CreateTopic(t, brokers, topic, 3)
	block := fmt.Sprintf(`source:
  topics: [%s]
time:
  field: ts
filter: 'endpoint != "/healthz"'
key: [endpoint]
window:
  type: tumbling
  size: 5s
  grace: 1s
aggregates:
  - {name: requests, op: count}
  - {name: errors, op: count, where: 'status >= 500'}
  - {name: latency_sum, op: sum, field: latency_ms}
  - {name: latency_max, op: max, field: latency_ms}
  - {name: p99_latency_ms, op: p99, field: latency_ms}
idle_timeout: 2s
---
display: table
rows: 100
`, topic)
	b := runbook.ParseBlock(0, 1, block, time.Now())
	if !b.OK() {
		t.Fatalf("block: %+v", b.Problems)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	hub := runbook.NewHub(runbook.HubConfig{Brokers: brokers, Logger: log})
	defer hub.Close()
	mgr := runbook.NewManager(runbook.ManagerConfig{Hub: hub, Logger: log, NewEngine: func(ctx context.Context, spec *topology.Spec) (runbook.Engine, error) {
		return processor.NewLocal(ctx, processor.LocalConfig{Spec: spec, Partitions: 1})
	}})
	defer mgr.Close()
	p, release, err := mgr.Open("same#0", b)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	waitUntil(t, 30*time.Second, "the preview to read", func() (bool, string) {
		s := p.Snapshot()
		return s.Stats.Reading, fmt.Sprintf("%+v", s.Stats)
	})

	// Six windows of requests to four endpoints (and health checks the
	// filter drops), over three partitions in time order.
	t0 := (time.Now().UnixMilli()/5000 + 1) * 5000
	type wk struct {
		key   string
		start int64
	}
	want := map[wk]float64{}
	var recs []*kgo.Record
	eps := []string{"/a", "/b", "/c", "/d", "/healthz"}
	for i := 0; i < 240; i++ {
		ts := t0 + int64(i)*125
		ep := eps[(i*7)%len(eps)]
		status := 200
		if i%9 == 0 {
			status = 503
		}
		v, _ := json.Marshal(map[string]any{"ts": ts, "endpoint": ep, "status": status, "latency_ms": float64(10 + (i*31)%700)})
		recs = append(recs, &kgo.Record{Topic: topic, Partition: int32(i % 3), Value: v})
		if ep != "/healthz" {
			want[wk{ep, ts / 5000 * 5000}]++
		}
	}
	produce(t, brokers, recs...)
	waitUntil(t, 30*time.Second, "the preview to read every record", func() (bool, string) {
		s := p.Snapshot()
		return s.Fed >= int64(len(recs)), fmt.Sprint(s.Fed)
	})
	// A request a minute later closes every window.
	produce(t, brokers, &kgo.Record{Topic: topic, Partition: 0, Value: []byte(fmt.Sprintf(`{"ts": %d, "endpoint": "/a", "status": 200, "latency_ms": 1}`, t0+60_000))})

	preview := map[wk]map[string]any{}
	waitUntil(t, 60*time.Second, "the preview's windows", func() (bool, string) {
		for _, w := range p.Snapshot().Table {
			preview[wk{w.Key, w.Start}] = w.Value
		}
		return len(preview) >= len(want), fmt.Sprintf("%d of %d", len(preview), len(want))
	})

	// The same block as a pipeline, run by the App.
	app := kafkatest.Name(t, "app")
	yml, err := b.Promote("same.md", runbook.PromoteOptions{App: app})
	if err != nil {
		t.Fatal(err)
	}
	spec, err := topology.Parse(yml)
	if err != nil {
		t.Fatal(err)
	}
	a, err := processor.New(processor.Config{Spec: spec, Brokers: brokers, StateDir: t.TempDir(), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	real := map[wk]map[string]any{}
	waitUntil(t, 120*time.Second, "the App's windows", func() (bool, string) {
		for _, r := range kafkatest.ReadAll(t, brokers, spec.Output.Topic, true) {
			var v map[string]any
			var k []string
			if json.Unmarshal(r.Value, &v) != nil || json.Unmarshal(r.Key, &k) != nil {
				continue
			}
			st, _ := time.Parse(time.RFC3339Nano, v["window_start"].(string))
			real[wk{k[0], st.UnixMilli()}] = v
		}
		return len(real) >= len(want), fmt.Sprintf("%d of %d", len(real), len(want))
	})

	for k, n := range want {
		pv, rv := preview[k], real[k]
		if pv == nil || rv == nil {
			t.Errorf("window %v: preview %v, app %v", k, pv, rv)
			continue
		}
		if !reflect.DeepEqual(pv, rv) {
			t.Errorf("window %v:\npreview %v\napp     %v", k, pv, rv)
		}
		if pv["requests"] != n {
			t.Errorf("window %v: %v requests, the test counted %v", k, pv["requests"], n)
		}
	}
	for k := range preview {
		if _, ok := want[k]; !ok {
			t.Errorf("the preview has a window the test did not expect: %v %v", k, preview[k])
		}
	}
}

func produce(t *testing.T, brokers []string, recs ...*kgo.Record) {
	t.Helper()
	cl := kafkatest.Client(t, brokers, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// waitUntil polls cond until it holds or timeout passes, then fails with
// what it last saw.
func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, last := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after %s; last seen: %s", what, timeout, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Past its read rate a preview runs on a sample and says so; past its
// open-window bound the engine refuses records and the page says so.
func TestKafkaPreviewBoundsSaid(t *testing.T) {
	brokers := kafkatest.Real(t)
	t.Parallel()
	topic := kafkatest.Name(t, "in")
	kafkatest.CreateTopic(t, brokers, topic, 1)
	block := fmt.Sprintf("source: {topics: [%s]}\ntime: {field: ts}\nkey: [k]\nwindow: {type: tumbling, size: 1h}\naggregates: [{name: n, op: count}]\n---\ndisplay: table\n", topic)
	b := runbook.ParseBlock(0, 1, block, time.Now())
	if !b.OK() {
		t.Fatalf("block: %+v", b.Problems)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	hub := runbook.NewHub(runbook.HubConfig{Brokers: brokers, Logger: log, MaxReadRate: 200})
	defer hub.Close()
	mgr := runbook.NewManager(runbook.ManagerConfig{Hub: hub, Logger: log, NewEngine: func(ctx context.Context, spec *topology.Spec) (runbook.Engine, error) {
		return processor.NewLocal(ctx, processor.LocalConfig{Spec: spec, MaxOpenWindows: 10})
	}})
	defer mgr.Close()
	p, release, err := mgr.Open("bounds#0", b)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	waitUntil(t, 30*time.Second, "the preview to read", func() (bool, string) {
		s := p.Snapshot()
		return s.Stats.Reading, fmt.Sprintf("%+v", s.Stats)
	})
	// 2,000 records of 100 keys at once: ten times the read rate, ten
	// times the open windows allowed.
	now := time.Now().UnixMilli()
	var recs []*kgo.Record
	for i := 0; i < 2000; i++ {
		recs = append(recs, &kgo.Record{Topic: topic, Value: []byte(fmt.Sprintf(`{"ts": %d, "k": "key-%d"}`, now, i%100))})
	}
	produce(t, brokers, recs...)
	var s runbook.Snapshot
	waitUntil(t, 30*time.Second, "both bounds said", func() (bool, string) {
		s = p.Snapshot()
		var sampled, memory bool
		for _, x := range s.Bounds {
			sampled = sampled || strings.HasPrefix(x, "sampled:")
			memory = memory || strings.HasPrefix(x, "memory:")
		}
		return sampled && memory && s.Stats.Read+s.Stats.Skipped == int64(len(recs)), fmt.Sprintf("%+v", s)
	})
	if s.Stats.Skipped == 0 || s.Stats.Read > int64(len(recs))/2 {
		t.Errorf("read %d, skipped %d of %d at 200 records/s: want most skipped", s.Stats.Read, s.Stats.Skipped, len(recs))
	}
}
