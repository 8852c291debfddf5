package processor_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eddy-streams/eddy/processor"
	"github.com/eddy-streams/eddy/topology"
)

// TestLocalRollups runs a pipeline of several rollups in process (the code
// `eddy run` runs, without Kafka): two rollups sharing a key (one
// repartition), one with a key from a derived field, a chain 10 s → 1 min
// → 5 min, over records of three source partitions in event-time order.
// Every rollup's final results must equal plain loops over the records; a
// record without the endpoint is dead-lettered once for the stage keyed by
// it (naming its first rollup) and still counted by the rollup keyed by
// status class; a record late for every window goes to the late topic once
// per rollup reading the source.
func TestLocalRollups(t *testing.T) {
	spec, err := topology.Parse([]byte(`app: lr
source: {topics: [in]}
time: {field: ts}
derived: [{name: class, expr: "int(status / 100)"}]
idle_timeout: 1h
rollups:
  - name: by_ep
    key: [endpoint]
    window: {type: tumbling, size: 10s}
    aggregates: [{name: n, op: count}, {name: lat, op: sum, field: latency_ms}, {name: top, op: max, field: latency_ms}]
    output: {topic: o-10s}
  - {name: by_ep_1m, from: by_ep, window: {type: tumbling, size: 1m}, output: {topic: o-1m}}
  - {name: by_ep_5m, from: by_ep_1m, window: {type: tumbling, size: 5m}, emit: update, output: {topic: o-5m}}
  - {name: by_class, key: [class], window: {type: tumbling, size: 30s}, aggregates: [{name: n, op: count}], output: {topic: o-class}}
  - {name: hop, key: [endpoint], window: {type: hopping, size: 20s, advance: 10s}, aggregates: [{name: n, op: count}], output: {topic: o-hop}}
`))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	l, err := processor.NewLocal(ctx, processor.LocalConfig{Spec: spec, Partitions: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()

	type ev struct {
		TS       int64  `json:"ts"`
		Endpoint string `json:"endpoint,omitempty"`
		Status   int    `json:"status"`
		Latency  int    `json:"latency_ms"`
	}
	rng := rand.New(rand.NewPCG(7, 7))
	base := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC).UnixMilli()
	now := time.UnixMilli(base + time.Hour.Milliseconds())
	var evs []ev
	ts := base
	for range 3000 {
		ts += rng.Int64N(250)
		e := ev{TS: ts, Endpoint: []string{"/a", "/b", "/c"}[rng.IntN(3)], Status: []int{200, 200, 404, 500}[rng.IntN(4)], Latency: rng.IntN(900)}
		if rng.IntN(100) == 0 {
			e.Endpoint = "" // no key for by_ep, by_ep_1m, by_ep_5m, hop
		}
		evs = append(evs, e)
	}
	offsets := make([]int64, 3)
	feed := func(e ev, p int32) {
		t.Helper()
		b, _ := json.Marshal(e)
		rec := &kgo.Record{Topic: "in", Partition: p, Offset: offsets[p], Value: b, Timestamp: time.UnixMilli(e.TS)}
		offsets[p]++
		if err := l.Feed(ctx, rec, now); err != nil {
			t.Fatal(err)
		}
	}
	for i, e := range evs {
		feed(e, int32(i%3))
	}
	flush := base + 2*time.Hour.Milliseconds()
	for p := range int32(3) {
		feed(ev{TS: flush, Endpoint: "/flush", Status: 100}, p)
	}
	feed(ev{TS: base + 1000, Endpoint: "/a", Status: 200}, 0) // late everywhere
	if err := l.Commit(now); err != nil {
		t.Fatal(err)
	}

	// The reference: plain loops.
	type agg struct{ n, lat, top int }
	want := map[string]*agg{}
	add := func(k string, e ev) {
		a := want[k]
		if a == nil {
			a = &agg{}
			want[k] = a
		}
		a.n++
		a.lat += e.Latency
		a.top = max(a.top, e.Latency)
	}
	floor := func(ts, size int64) int64 { return ts - ts%size }
	missing := 0
	for _, e := range evs {
		add(fmt.Sprintf("o-class|%d|%d", e.Status/100, floor(e.TS, 30_000)), e)
		if e.Endpoint == "" {
			missing++
			continue
		}
		add(fmt.Sprintf("o-10s|%s|%d", e.Endpoint, floor(e.TS, 10_000)), e)
		add(fmt.Sprintf("o-1m|%s|%d", e.Endpoint, floor(e.TS, 60_000)), e)
		add(fmt.Sprintf("o-5m|%s|%d", e.Endpoint, floor(e.TS, 300_000)), e)
		add(fmt.Sprintf("o-hop|%s|%d", e.Endpoint, floor(e.TS, 10_000)), e)
		add(fmt.Sprintf("o-hop|%s|%d", e.Endpoint, floor(e.TS, 10_000)-10_000), e)
	}
	got := map[string]string{}
	var dead, late []string
	for _, r := range l.Drain() {
		hdr := map[string]string{}
		for _, h := range r.Headers {
			hdr[h.Key] = string(h.Value)
		}
		switch r.Topic {
		case "lr-dlq":
			dead = append(dead, hdr["eddy.error.class"]+"/"+hdr["eddy.rollup"])
			continue
		case "lr-late":
			late = append(late, hdr["eddy.rollup"])
			continue
		}
		var m map[string]any
		if err := json.Unmarshal(r.Value, &m); err != nil {
			t.Fatalf("%s: %s: %v", r.Topic, r.Value, err)
		}
		start, _ := time.Parse(time.RFC3339Nano, fmt.Sprint(m["window_start"]))
		key := fmt.Sprint(m["endpoint"])
		if r.Topic == "o-class" {
			key = fmt.Sprint(m["class"])
		}
		if key == "/flush" || key == "1" {
			continue
		}
		v := fmt.Sprintf("n=%v", m["n"])
		if m["lat"] != nil {
			v += fmt.Sprintf(" lat=%v top=%v", m["lat"], m["top"])
		}
		got[fmt.Sprintf("%s|%s|%d", r.Topic, key, start.UnixMilli())] = v // emit update: the last one
	}
	for k, w := range want {
		v := fmt.Sprintf("n=%d", w.n)
		if !strings.HasPrefix(k, "o-class") && !strings.HasPrefix(k, "o-hop") {
			v += fmt.Sprintf(" lat=%d top=%d", w.lat, w.top)
		}
		if got[k] != v {
			t.Errorf("%s: got %q, want %q", k, got[k], v)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected result %s: %s", k, got[k])
		}
	}
	if missing == 0 {
		t.Fatal("the scenario has no record without an endpoint")
	}
	if n := strings.Count(strings.Join(dead, ","), "missing_key_field/by_ep"); n != missing || len(dead) != missing {
		t.Errorf("dead letters %v: want %d missing_key_field/by_ep", dead, missing)
	}
	slices.Sort(late)
	if fmt.Sprint(late) != "[by_class by_ep hop]" {
		t.Errorf("late records' rollups %v, want one each for by_class, by_ep, hop", late)
	}
	t.Logf("%d results equal the reference; %d dead letters; late for %v", len(want), len(dead), late)
}
