package processor

// Derived fields, lookup tables and top_k end to end on the real broker:
// eddy's results must equal an independent computation over the input
// (plain loops below, sharing no code with eddy), for a pipeline whose
// key is a lookup field and a derived field, whose lookup table is
// updated mid-stream, and whose aggregates use derived and lookup fields
// and top_k; and records whose derived field fails or whose lookup
// misses (on_miss dead_letter) go to the dead-letter topic with the
// class and field.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eddy-streams/eddy/internal/kafkatest"
	"github.com/eddy-streams/eddy/topology"
)

// waitUntil polls cond until it holds or timeout passes, then fails with
// what cond last reported.
func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	last := ""
	for {
		ok, seen := cond()
		if ok {
			return
		}
		last = seen
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s; last saw: %s", timeout, what, last)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// metricsEvent is one input record of the scenario.
type metricsEvent struct {
	ID       int    `json:"id"`
	TS       int64  `json:"ts"`
	Endpoint string `json:"endpoint"`
	Customer string `json:"customer"`
	Status   int    `json:"status"`
	Latency  int    `json:"latency_ms"`
	UA       string `json:"ua,omitempty"` // missing: the derived field agent fails
}

// expectedRow is one (key, window) result of the reference computation.
type expectedRow struct {
	requests, slow, gold int
	latencySum           int
	agents               map[string]int
}

func TestKafkaDerivedLookupTopK(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Real(t)
	src := kafkatest.Name(t, "src")
	owners := kafkatest.Name(t, "owners")
	plans := kafkatest.Name(t, "plans")
	out := kafkatest.Name(t, "out")
	app := kafkatest.Name(t, "app")
	kafkatest.CreateTopic(t, brokers, src, 3)
	kafkatest.CreateCompactedTopic(t, brokers, owners, 2)
	kafkatest.CreateCompactedTopic(t, brokers, plans, 1)

	cl := kafkatest.Client(t, brokers, kgo.ProducerLinger(0))
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	produce := func(recs ...*kgo.Record) {
		t.Helper()
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	table := func(topic, key, value string) *kgo.Record {
		r := &kgo.Record{Topic: topic, Key: []byte(key)}
		if value != "" {
			r.Value = []byte(value)
		}
		return r
	}

	// The tables before the stream starts. The reference copies below
	// are what the test expects the lookups to return.
	ownersV1 := map[string]string{"/pay": "payments", "/search": "discovery", "/cart": "payments"}
	plansTable := map[string]string{"c1": "gold", "c2": "free", "c3": "gold"}
	produce(
		table(owners, "/pay", `{"team":"payments","oncall":"ann"}`),
		table(owners, "/search", `{"team":"discovery"}`),
		table(owners, "/cart", `{"team":"old-team"}`),
		table(owners, "/cart", `{"team":"payments"}`), // a later value of the same key wins
		table(owners, "/gone", `{"team":"nobody"}`),
		table(owners, "/gone", ""), // tombstone: deleted
		table(plans, "c1", `{"plan":"gold"}`),
		table(plans, "c2", `{"plan":"free"}`),
		table(plans, "c3", `{"plan":"gold"}`),
	)

	spec, err := topology.Parse([]byte(fmt.Sprintf(`
app: %s
source: {topics: [%s]}
time: {field: ts}
derived:
  - {name: status_class, expr: "int(status / 100)"}
  - {name: slow, expr: "latency_ms > 500"}
  - {name: agent, expr: 'lower(split(ua, "/")[0])'}
lookups:
  - {name: owners, topic: %s, on: endpoint, fields: [team], defaults: {team: unowned}}
  - {name: plans, topic: %s, on: customer, fields: [plan], on_miss: dead_letter}
key: [team, status_class]
window: {type: tumbling, size: 10s, grace: 30m}
emit: update
aggregates:
  - {name: requests, op: count}
  - {name: slow_requests, op: count, where: slow}
  - {name: gold_requests, op: count, where: 'plan == "gold"'}
  - {name: latency_sum, op: sum, field: latency_ms}
  - {name: top_agents, op: top_k, k: 3, field: agent}
output: {topic: %s}
processing: exactly_once
commit_interval: 200ms
`, app, src, owners, plans, out)))
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(Config{Spec: spec, Brokers: brokers, StateDir: t.TempDir(),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), SessionTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- a.Run(runCtx) }()
	defer func() {
		stop()
		if err := <-done; err != nil && err != context.Canceled {
			t.Errorf("Run: %v", err)
		}
	}()

	// The stream, in two phases around an update of the owners table.
	rng := rand.New(rand.NewPCG(20, 26))
	base := time.Now().Add(-10 * time.Minute).Truncate(10 * time.Second).UnixMilli()
	endpoints := []string{"/pay", "/search", "/cart", "/login", "/gone"}
	customers := []string{"c1", "c2", "c3", "c1", "c2", "c9"} // c9 is in no plan: dead-lettered
	agents := []string{"Mozilla/5.0", "curl/8.1", "Go-http-client/1.1", "okhttp/4.9", "python-requests/2.31", "MOZILLA/4.0"}
	id := 0
	phase := func(n int, from, span int64) []metricsEvent {
		evs := make([]metricsEvent, n)
		for i := range evs {
			id++
			e := metricsEvent{ID: id, TS: base + from + rng.Int64N(span),
				Endpoint: endpoints[rng.IntN(len(endpoints))], Customer: customers[rng.IntN(len(customers))],
				Status: []int{200, 200, 200, 201, 404, 500, 503}[rng.IntN(7)], Latency: rng.IntN(1000)}
			if rng.IntN(50) != 0 {
				e.UA = agents[rng.IntN(len(agents))]
			}
			evs[i] = e
		}
		return evs
	}
	send := func(evs []metricsEvent) {
		t.Helper()
		recs := make([]*kgo.Record, len(evs))
		for i, e := range evs {
			b, _ := json.Marshal(e)
			recs[i] = &kgo.Record{Topic: src, Key: []byte(fmt.Sprint(e.ID)), Value: b}
		}
		produce(recs...)
	}
	adm := kadm.NewClient(cl)
	// The stateless step (where lookups are made) has read every record
	// produced so far once the group's committed offsets reach the ends.
	waitCommitted := func(what string) {
		t.Helper()
		waitUntil(t, 2*time.Minute, what, func() (bool, string) {
			ends, err := adm.ListEndOffsets(ctx, src)
			if err != nil {
				return false, err.Error()
			}
			committed, err := adm.FetchOffsets(ctx, app)
			if err != nil {
				return false, err.Error()
			}
			ok := true
			var seen []string
			ends.Each(func(o kadm.ListedOffset) {
				c, _ := committed.Lookup(src, o.Partition)
				seen = append(seen, fmt.Sprintf("p%d %d/%d", o.Partition, c.At, o.Offset))
				ok = ok && c.At >= o.Offset
			})
			return ok, strings.Join(seen, ", ")
		})
	}

	phase1 := phase(1500, 0, 60_000)
	send(phase1)
	waitCommitted("phase 1 to be read")

	// Mid-stream update: /search changes team, /login gets an owner,
	// /pay is deleted (it falls back to the default).
	ownersV2 := map[string]string{"/search": "search", "/cart": "payments", "/login": "identity"}
	produce(
		table(owners, "/search", `{"team":"search"}`),
		table(owners, "/login", `{"team":"identity"}`),
		table(owners, "/pay", ""),
	)
	waitUntil(t, time.Minute, "the owners update to reach the worker's table", func() (bool, string) {
		a.mu.Lock() // the processing loop's lock: orders this read after Run set the tables
		tb := a.p.tables.tables[0]
		a.mu.Unlock()
		l, okL, _ := tb.get("/login")
		_, okP, _ := tb.get("/pay")
		return okL && l["team"] == "identity" && !okP, fmt.Sprintf("/login %v %v, /pay present %v", l, okL, okP)
	})
	phase2 := phase(1500, 30_000, 60_000) // overlaps phase 1's windows
	send(phase2)
	waitCommitted("phase 2 to be read")

	// The reference computation: plain loops over the input.
	want := make(map[string]*expectedRow) // "team|class|window start"
	var wantBadAgent, wantMiss []int
	for p, evs := range [][]metricsEvent{phase1, phase2} {
		owner := ownersV1
		if p == 1 {
			owner = ownersV2
		}
		for _, e := range evs {
			if e.UA == "" {
				wantBadAgent = append(wantBadAgent, e.ID)
				continue
			}
			plan, ok := plansTable[e.Customer]
			if !ok {
				wantMiss = append(wantMiss, e.ID)
				continue
			}
			team, ok := owner[e.Endpoint]
			if !ok {
				team = "unowned"
			}
			class := e.Status / 100
			win := e.TS - e.TS%10_000
			k := fmt.Sprintf("%s|%d|%d", team, class, win)
			r := want[k]
			if r == nil {
				r = &expectedRow{agents: map[string]int{}}
				want[k] = r
			}
			r.requests++
			if e.Latency > 500 {
				r.slow++
			}
			if plan == "gold" {
				r.gold++
			}
			r.latencySum += e.Latency
			agent := strings.ToLower(e.UA[:strings.Index(e.UA, "/")])
			r.agents[agent]++
		}
	}
	wantText := make(map[string]string, len(want))
	for k, r := range want {
		type entry struct {
			v string
			n int
		}
		var es []entry
		for v, n := range r.agents {
			es = append(es, entry{v, n})
		}
		sort.Slice(es, func(i, j int) bool {
			if es[i].n != es[j].n {
				return es[i].n > es[j].n
			}
			return es[i].v < es[j].v
		})
		if len(es) > 3 {
			es = es[:3]
		}
		var top []string
		for _, e := range es {
			top = append(top, fmt.Sprintf("%s=%d", e.v, e.n))
		}
		wantText[k] = fmt.Sprintf("requests=%d slow=%d gold=%d latency_sum=%d top=%s", r.requests, r.slow, r.gold, r.latencySum, strings.Join(top, ","))
	}

	// eddy's results: the last update of each (key, window).
	var lastDiff string
	waitUntil(t, 2*time.Minute, "eddy's results to equal the reference", func() (bool, string) {
		got := make(map[string]string)
		for _, rec := range kafkatest.ReadAll(t, brokers, out, true) {
			var r struct {
				Team        string  `json:"team"`
				StatusClass string  `json:"status_class"`
				WindowStart string  `json:"window_start"`
				Requests    float64 `json:"requests"`
				Slow        float64 `json:"slow_requests"`
				Gold        float64 `json:"gold_requests"`
				LatencySum  float64 `json:"latency_sum"`
				Top         []struct {
					Value string `json:"value"`
					Count int    `json:"count"`
				} `json:"top_agents"`
			}
			if err := json.Unmarshal(rec.Value, &r); err != nil {
				t.Fatalf("result %s: %v", rec.Value, err)
			}
			ws, err := time.Parse(time.RFC3339Nano, r.WindowStart)
			if err != nil {
				t.Fatalf("window_start %q: %v", r.WindowStart, err)
			}
			var top []string
			for _, e := range r.Top {
				top = append(top, fmt.Sprintf("%s=%d", e.Value, e.Count))
			}
			got[fmt.Sprintf("%s|%s|%d", r.Team, r.StatusClass, ws.UnixMilli())] = fmt.Sprintf("requests=%d slow=%d gold=%d latency_sum=%d top=%s",
				int(r.Requests), int(r.Slow), int(r.Gold), int(r.LatencySum), strings.Join(top, ","))
		}
		lastDiff = diffMaps(wantText, got)
		if lastDiff == "" {
			t.Logf("%d (key, window) results equal the reference, e.g. %v", len(got), firstEntry(got))
		}
		return lastDiff == "", lastDiff
	})

	// The dead letters: a failing derived field names it; a lookup miss
	// names the join field.
	waitUntil(t, time.Minute, "the dead letters", func() (bool, string) {
		var badAgent, miss []int
		var other []string
		for _, rec := range kafkatest.ReadAll(t, brokers, spec.DeadLetterTopic, true) {
			var e metricsEvent
			_ = json.Unmarshal(rec.Value, &e)
			h := map[string]string{}
			for _, x := range rec.Headers {
				h[x.Key] = string(x.Value)
			}
			if _, leaked := h[hdrFields]; leaked {
				other = append(other, "dead letter carries the internal eddy.fields header")
			}
			switch {
			case h[hdrErrClass] == "expression" && h[hdrErrField] == "agent":
				badAgent = append(badAgent, e.ID)
			case h[hdrErrClass] == "lookup_miss" && h[hdrErrField] == "customer":
				miss = append(miss, e.ID)
			default:
				other = append(other, fmt.Sprintf("id %d class %q field %q: %s", e.ID, h[hdrErrClass], h[hdrErrField], h[hdrErrMessage]))
			}
		}
		sort.Ints(badAgent)
		sort.Ints(miss)
		sort.Ints(wantBadAgent)
		sort.Ints(wantMiss)
		ok := fmt.Sprint(badAgent) == fmt.Sprint(wantBadAgent) && fmt.Sprint(miss) == fmt.Sprint(wantMiss) && len(other) == 0
		return ok, fmt.Sprintf("expression/agent %d (want %d), lookup_miss/customer %d (want %d), other %v",
			len(badAgent), len(wantBadAgent), len(miss), len(wantMiss), other)
	})
	if len(wantBadAgent) == 0 || len(wantMiss) == 0 {
		t.Fatalf("the scenario has no failing derived field (%d) or no lookup miss (%d)", len(wantBadAgent), len(wantMiss))
	}
}

// diffMaps lists the differences between want and got, "" if none (at
// most 10).
func diffMaps(want, got map[string]string) string {
	var d []string
	for k, w := range want {
		if g, ok := got[k]; !ok {
			d = append(d, fmt.Sprintf("missing %s (want %s)", k, w))
		} else if g != w {
			d = append(d, fmt.Sprintf("%s: got %s, want %s", k, g, w))
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok {
			d = append(d, fmt.Sprintf("unexpected %s: %s", k, g))
		}
	}
	sort.Strings(d)
	if len(d) > 10 {
		d = append(d[:10], fmt.Sprintf("... %d more", len(d)-10))
	}
	return strings.Join(d, "; ")
}

// firstEntry is the smallest key of m with its value, for logs.
func firstEntry(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if len(keys) == 0 {
		return ""
	}
	return keys[0] + " " + m[keys[0]]
}

// TestKafkaLookupTopicMissing: a lookup table whose topic does not exist
// stops the worker at start, naming the topic, before it joins the group.
func TestKafkaLookupTopicMissing(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Real(t)
	src, missing := kafkatest.Name(t, "src"), kafkatest.Name(t, "nosuch")
	kafkatest.CreateTopic(t, brokers, src, 1)
	spec, err := topology.Parse([]byte(fmt.Sprintf(`app: %s
source: {topics: [%s]}
lookups: [{name: owners, topic: %s, on: endpoint, fields: [team]}]
key: [team]
window: {type: tumbling, size: 10s}
aggregates: [{name: n, op: count}]
output: {topic: %s}
`, kafkatest.Name(t, "app"), src, missing, kafkatest.Name(t, "out"))))
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(Config{Spec: spec, Brokers: brokers, StateDir: t.TempDir(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err = a.Run(ctx)
	if err == nil || !strings.Contains(err.Error(), missing) || ctx.Err() != nil {
		t.Fatalf("Run: %v (context %v); want an error naming topic %s", err, ctx.Err(), missing)
	}
	t.Log(err)
}

// TestKafkaLocalLookups: a Local given client options loads the pipeline's
// lookup tables from their topics as the App does, joins records with
// them (defaults on a miss), follows updates of the topic, and without
// them dead-letters every record (class lookup_miss).
func TestKafkaLocalLookups(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Real(t)
	owners := kafkatest.Name(t, "owners")
	kafkatest.CreateCompactedTopic(t, brokers, owners, 1)
	cl := kafkatest.Client(t, brokers)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: owners, Key: []byte("/pay"), Value: []byte(`{"team":"payments"}`)}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	spec, err := topology.Parse([]byte(fmt.Sprintf(`app: ll
source: {topics: [in]}
time: {field: ts}
lookups: [{name: owners, topic: %s, on: endpoint, fields: [team], defaults: {team: unowned}}]
key: [team]
window: {type: tumbling, size: 10s}
aggregates: [{name: n, op: count}]
output: {topic: out}
`, owners)))
	if err != nil {
		t.Fatal(err)
	}
	base := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	feed := func(l *Local, off int64, endpoint string) []*kgo.Record {
		t.Helper()
		v := fmt.Sprintf(`{"ts":%d,"endpoint":%q}`, base.UnixMilli()+off, endpoint)
		if err := l.Feed(ctx, &kgo.Record{Topic: "in", Offset: off, Value: []byte(v)}, base); err != nil {
			t.Fatal(err)
		}
		return l.Drain()
	}
	teams := func(l *Local) map[string]float64 {
		t.Helper()
		out := map[string]float64{}
		for _, team := range []string{"payments", "unowned", "search"} {
			ws, err := l.OpenWindows(`["` + team + `"]`)
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range ws {
				out[team] += w.Values["n"]
			}
		}
		return out
	}

	l, err := NewLocal(ctx, LocalConfig{Spec: spec, LookupClient: []kgo.Opt{kgo.SeedBrokers(brokers...)}})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	feed(l, 0, "/pay")
	feed(l, 1, "/search")
	if got := teams(l); got["payments"] != 1 || got["unowned"] != 1 {
		t.Fatalf("windows by team %v, want payments 1 and unowned 1", got)
	}
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: owners, Key: []byte("/search"), Value: []byte(`{"team":"search"}`)}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	off := int64(2)
	waitUntil(t, 30*time.Second, "the update of the table to reach the Local", func() (bool, string) {
		feed(l, off, "/search")
		off++
		got := teams(l)
		return got["search"] > 0, fmt.Sprint(got)
	})

	// Without client options: every record is a lookup miss.
	l2, err := NewLocal(ctx, LocalConfig{Spec: spec})
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	out := feed(l2, 0, "/pay")
	if len(out) != 1 || out[0].Topic != spec.DeadLetterTopic {
		t.Fatalf("without lookup client: %d records (%v), want one dead letter", len(out), out)
	}
}
