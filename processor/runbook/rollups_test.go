package runbook_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eddy-streams/eddy/internal/kafkatest"
	"github.com/eddy-streams/eddy/processor"
	"github.com/eddy-streams/eddy/processor/runbook"
	"github.com/eddy-streams/eddy/topology"
)

// rollupsBlock is a block of three rollups over one source read: by
// endpoint every 5s, the same chained into 20s windows, by user every 10s.
const rollupsBlock = `source: {topics: [%s]}
time: {field: ts}
rollups:
  - name: ep_5s
    key: [endpoint]
    window: {type: tumbling, size: 5s, grace: 1s}
    aggregates:
      - {name: requests, op: count}
      - {name: slow, op: count, where: 'latency_ms > 500'}
    output: {topic: rb-ep-5s}
  - name: ep_20s
    from: ep_5s
    window: {type: tumbling, size: 20s}
    output: {topic: rb-ep-20s}
  - name: per_user
    key: [user]
    window: {type: tumbling, size: 10s}
    aggregates:
      - {name: requests, op: count}
    output: {topic: rb-user-10s}
idle_timeout: 2s
---
`

// A block with a rollups list previews: each display shows the rollup its
// rollup key names (default the first), with that rollup's windows, and
// counts the late records of that rollup; the values are those the test
// computes itself.
func TestKafkaPreviewRollups(t *testing.T) {
	brokers := kafkatest.Real(t)
	t.Parallel()
	topic := kafkatest.Name(t, "in")
	kafkatest.CreateTopic(t, brokers, topic, 1)
	pipe := fmt.Sprintf(rollupsBlock, topic)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	hub := runbook.NewHub(runbook.HubConfig{Brokers: brokers, Logger: log})
	defer hub.Close()
	mgr := runbook.NewManager(runbook.ManagerConfig{Hub: hub, Logger: log, NewEngine: func(ctx context.Context, spec *topology.Spec) (runbook.Engine, error) {
		return processor.NewLocal(ctx, processor.LocalConfig{Spec: spec, Partitions: 1})
	}})
	defer mgr.Close()
	open := func(id, display string) *runbook.Preview {
		b := runbook.ParseBlock(0, 1, pipe+display, time.Now())
		if !b.OK() {
			t.Fatalf("block %s: %+v", id, b.Problems)
		}
		p, release, err := mgr.Open(id, b)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(release)
		waitUntil(t, 30*time.Second, id+" to read", func() (bool, string) {
			s := p.Snapshot()
			return s.Stats.Reading, fmt.Sprintf("%+v", s.Stats)
		})
		return p
	}
	first := open("rollups#0", "display: table\nrows: 100\n")
	chain := open("rollups#1", "display: chart\nrollup: ep_20s\nvalue: slow\n")
	users := open("rollups#2", "display: chart\nrollup: per_user\n")

	// 30 s of requests from t0 (a multiple of 20 s), counted here per
	// rollup: endpoint and 5 s window, endpoint and 20 s window (slow
	// ones: the chained rollup merges ep_5s's), user and 10 s window.
	t0 := (time.Now().UnixMilli()/20_000 + 1) * 20_000
	type wk struct {
		key   string
		start int64
	}
	ep5, slow20, user10 := map[wk]float64{}, map[wk]float64{}, map[wk]float64{}
	var recs []*kgo.Record
	eps, usersOf := []string{"/a", "/b", "/c"}, []string{"ann", "bob", "cy", "dee"}
	for i := 0; i < 240; i++ {
		ts := t0 + int64(i)*125
		ep, user, lat := eps[(i*7)%3], usersOf[(i*5)%4], (i*37)%1000
		v, _ := json.Marshal(map[string]any{"ts": ts, "endpoint": ep, "user": user, "latency_ms": lat})
		recs = append(recs, &kgo.Record{Topic: topic, Value: v})
		ep5[wk{ep, ts / 5000 * 5000}]++
		user10[wk{user, ts / 10_000 * 10_000}]++
		k20 := wk{ep, ts / 20_000 * 20_000}
		slow20[k20] += 0 // a window of the endpoint, slow or not
		if lat > 500 {
			slow20[k20]++
		}
	}
	produce(t, brokers, recs...)
	// A request a minute later closes every window; then one back at t0
	// is late for ep_5s and for per_user (a chained rollup reads results,
	// never records).
	produce(t, brokers, &kgo.Record{Topic: topic, Value: []byte(fmt.Sprintf(`{"ts": %d, "endpoint": "/a", "user": "ann", "latency_ms": 1}`, t0+60_000))})
	produce(t, brokers, &kgo.Record{Topic: topic, Value: []byte(fmt.Sprintf(`{"ts": %d, "endpoint": "/a", "user": "ann", "latency_ms": 1}`, t0))})

	// The first rollup (no rollup key): ep_5s windows.
	got := map[wk]float64{}
	waitUntil(t, 60*time.Second, "ep_5s windows", func() (bool, string) {
		s := first.Snapshot()
		for _, w := range s.Table {
			if w.Start < t0+60_000 {
				got[wk{w.Key, w.Start}] = w.Value["requests"].(float64)
			}
		}
		return len(got) >= len(ep5) && s.Late == 1, fmt.Sprintf("%d of %d windows, %d late", len(got), len(ep5), s.Late)
	})
	if s := first.Snapshot(); s.Rollup != "ep_5s" {
		t.Errorf("the default rollup shown is %q, want ep_5s", s.Rollup)
	}
	if fmt.Sprint(got) != fmt.Sprint(ep5) {
		t.Errorf("ep_5s windows\n got %v\nwant %v", got, ep5)
	}

	// per_user's chart of requests: 10 s windows, one series per user.
	got = map[wk]float64{}
	waitUntil(t, 60*time.Second, "per_user chart", func() (bool, string) {
		s := users.Snapshot()
		c := s.Chart
		got = map[wk]float64{}
		for _, sr := range c.Series {
			for i, v := range sr.Values {
				if v != nil && c.Times[i] < t0+60_000 {
					got[wk{sr.Key, c.Times[i]}] = *v
				}
			}
		}
		return len(got) >= len(user10) && s.Late == 1, fmt.Sprintf("%d of %d windows, %d late: %v", len(got), len(user10), s.Late, got)
	})
	if s := users.Snapshot(); s.Rollup != "per_user" || s.Chart.WindowMs != 10_000 {
		t.Errorf("per_user: rollup %q, window %d ms", s.Rollup, s.Chart.WindowMs)
	}
	if fmt.Sprint(got) != fmt.Sprint(user10) {
		t.Errorf("per_user windows\n got %v\nwant %v", got, user10)
	}

	// The chained rollup's chart of slow: 20 s windows merged from the
	// 5 s ones, one series per endpoint; no late records (it reads
	// results, never records).
	got = map[wk]float64{}
	waitUntil(t, 60*time.Second, "ep_20s chart", func() (bool, string) {
		c := chain.Snapshot().Chart
		got = map[wk]float64{}
		for _, sr := range c.Series {
			for i, v := range sr.Values {
				if v != nil && c.Times[i] < t0+60_000 {
					got[wk{sr.Key, c.Times[i]}] = *v
				}
			}
		}
		return len(got) >= len(slow20), fmt.Sprintf("%d of %d: %v", len(got), len(slow20), got)
	})
	if s := chain.Snapshot(); s.Rollup != "ep_20s" || s.Value != "slow" || s.Chart.WindowMs != 20_000 || s.Late != 0 {
		t.Errorf("ep_20s: rollup %q value %q, window %d ms, %d late", s.Rollup, s.Value, s.Chart.WindowMs, s.Late)
	}
	if fmt.Sprint(got) != fmt.Sprint(slow20) {
		t.Errorf("ep_20s slow per window\n got %v\nwant %v", got, slow20)
	}
}

// A display's rollup must name a rollup of the block, and only a block
// with a rollups list has one; its value is one of that rollup's
// aggregates (a chained rollup's are those it merges). A rollups block
// promotes to a pipeline file that parses.
func TestRollupsDisplayProblems(t *testing.T) {
	pipe := fmt.Sprintf(rollupsBlock, "in")
	for _, c := range []struct {
		display string
		problem string // "" when the block is fine
	}{
		{"display: chart\n", ""},
		{"display: chart\nrollup: ep_20s\nvalue: slow\n", ""},
		{"display: chart\nrollup: nope\n", `display rollup: "nope" is not a rollup of this pipeline; write one of ep_5s, ep_20s, per_user`},
		{"display: chart\nrollup: per_user\nvalue: slow\n", `display value: "slow" is not an aggregate of rollup per_user; write one of requests`},
	} {
		b := runbook.ParseBlock(0, 1, pipe+c.display, time.Now())
		var msgs []string
		for _, p := range b.Problems {
			msgs = append(msgs, p.Message)
		}
		if got := strings.Join(msgs, "; "); got != c.problem {
			t.Errorf("display %q: problems %q, want %q", c.display, got, c.problem)
		}
	}
	single := runbook.ParseBlock(0, 1, "source: {topics: [in]}\nkey: [k]\nwindow: {type: tumbling, size: 10s}\naggregates: [{name: n, op: count}]\n---\nrollup: x\n", time.Now())
	if len(single.Problems) != 1 || !strings.Contains(single.Problems[0].Message, "has no rollups list") {
		t.Errorf("a rollup in a block of one rollup: %+v", single.Problems)
	}

	b := runbook.ParseBlock(0, 1, pipe+"display: table\n", time.Now())
	yml, err := b.Promote("rollups.md", runbook.PromoteOptions{App: "rb-rollups"})
	if err != nil {
		t.Fatal(err)
	}
	spec, err := topology.Parse(yml)
	if err != nil {
		t.Fatal(err)
	}
	if spec.App != "rb-rollups" || len(spec.Rollups) != 3 || spec.Rollups[1].Output.Topic != "rb-ep-20s" || spec.Output.Topic != "" {
		t.Errorf("promoted:\n%s", yml)
	}
}
