package main

// One read, many metrics, end to end on the real broker (issue 20): a
// pipeline of three rollups over one source read (two of them sharing a
// key, so a repartition topic), a chained rollup (10 s → 1 min), a
// derived field and a lookup table updated mid-stream, run by two `eddy
// run` workers, one of which is killed with SIGKILL in the middle and
// restarted. Every rollup's results must equal an independent computation
// over the input (plain loops below, no eddy code), under both
// guarantees; under exactly-once each window's result is written once.
// Records that arrive after every window they belong to closed go to the
// late topic once per rollup reading the source, and change no result of
// the chained rollup.

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eddy-streams/eddy/internal/kafkatest"
)

func TestKafkaRollupsKill(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"exactly_once", "at_least_once"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			testRollupsKill(t, mode)
		})
	}
}

// revent is one input record of the rollups scenario.
type revent struct {
	ID       int    `json:"id"`
	TS       int64  `json:"ts"`
	Endpoint string `json:"endpoint"`
	Customer string `json:"customer"`
	Status   int    `json:"status"`
	Latency  int    `json:"latency_ms"`

	part  int32
	team  string // the owners table's team when the record was produced
	phase int
}

func testRollupsKill(t *testing.T, processing string) {
	brokers := kafkatest.Real(t)
	src, owners := kafkatest.Name(t, "src"), kafkatest.Name(t, "owners")
	app := kafkatest.Name(t, "app")
	out10s, out1m, outTeam, outHop := kafkatest.Name(t, "o10s"), kafkatest.Name(t, "o1m"), kafkatest.Name(t, "oteam"), kafkatest.Name(t, "ohop")
	late := app + "-late"
	kafkatest.CreateTopic(t, brokers, src, 3)
	kafkatest.CreateCompactedTopic(t, brokers, owners, 1)

	spec := filepath.Join(t.TempDir(), "rollups.yaml")
	y := fmt.Sprintf(`app: %s
source: {topics: [%s]}
time: {field: ts}
derived:
  - {name: status_class, expr: "int(status / 100)"}
lookups:
  - {name: owners, topic: %s, on: endpoint, fields: [team], defaults: {team: unowned}}
processing: %s
commit_interval: 300ms
rollups:
  - name: requests_10s
    key: [endpoint]
    window: {type: tumbling, size: 10s}
    aggregates:
      - {name: requests, op: count}
      - {name: latency_sum, op: sum, field: latency_ms}
      - {name: latency_min, op: min, field: latency_ms}
      - {name: latency_max, op: max, field: latency_ms}
      - {name: latency_mean, op: mean, field: latency_ms}
      - {name: latency_p99, op: p99, field: latency_ms}
      - {name: customers, op: distinct, field: customer}
      - {name: top_customers, op: top_k, k: 3, field: customer}
    output: {topic: %s}
  - name: requests_1m
    from: requests_10s
    window: {type: tumbling, size: 1m}
    output: {topic: %s}
  - name: errors_by_team
    key: [team, status_class]
    window: {type: tumbling, size: 30s}
    aggregates:
      - {name: requests, op: count}
      - {name: errors, op: count, where: "status >= 500"}
    output: {topic: %s}
  - name: requests_hopping
    key: [endpoint]
    window: {type: hopping, size: 20s, advance: 10s}
    aggregates:
      - {name: requests, op: count}
    output: {topic: %s}
`, app, src, owners, processing, out10s, out1m, outTeam, outHop)
	if err := os.WriteFile(spec, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cl := kafkatest.Client(t, brokers, kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.MaxProduceRequestsInflightPerBroker(1))
	produce := func(recs ...*kgo.Record) {
		t.Helper()
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	setOwner := func(endpoint, team string) *kgo.Record {
		r := &kgo.Record{Topic: owners, Key: []byte(endpoint)}
		if team != "" {
			r.Value = []byte(fmt.Sprintf(`{"team":%q}`, team))
		}
		return r
	}
	ownersV1 := map[string]string{"/pay": "payments", "/search": "discovery", "/cart": "payments"}
	ownersV2 := map[string]string{"/search": "search", "/cart": "payments", "/login": "identity"} // /pay deleted
	produce(setOwner("/pay", "payments"), setOwner("/search", "discovery"), setOwner("/cart", "payments"))

	// The input: per source partition in event-time order (so nothing is
	// late however the partitions interleave), phase 2 ten minutes after
	// phase 1 (the wait for the table update between them moves stream
	// time by idle advance, by far less).
	rng := rand.New(rand.NewPCG(20, 20))
	base := time.Now().Add(-30 * time.Minute).Truncate(time.Minute).UnixMilli()
	endpoints := []string{"/pay", "/search", "/cart", "/login"}
	customers := []string{"c1", "c2", "c3", "c4", "c5"}
	var events []revent
	gen := func(phase, n int, from int64) []revent {
		var evs []revent
		ts := base + from
		for range n {
			ts += rng.Int64N(200)
			owner := ownersV1
			if phase == 2 {
				owner = ownersV2
			}
			e := revent{ID: len(events) + len(evs), TS: ts, Endpoint: endpoints[rng.IntN(len(endpoints))],
				Customer: customers[rng.IntN(len(customers))], Status: []int{200, 200, 200, 404, 500, 503}[rng.IntN(6)],
				Latency: 1 + rng.IntN(2000), part: int32(rng.IntN(3)), phase: phase}
			e.team = owner[e.Endpoint]
			if e.team == "" {
				e.team = "unowned"
			}
			evs = append(evs, e)
		}
		events = append(events, evs...)
		return evs
	}
	toRecords := func(evs []revent) []*kgo.Record {
		recs := make([]*kgo.Record, len(evs))
		for i, e := range evs {
			b, _ := json.Marshal(e)
			recs[i] = &kgo.Record{Topic: src, Partition: e.part, Key: []byte(fmt.Sprint(e.ID)), Value: b}
		}
		return recs
	}
	phase1 := gen(1, 1200, 0)
	phase2 := gen(2, 1200, 10*time.Minute.Milliseconds())

	dirs := []string{t.TempDir(), t.TempDir()}
	ws := []*worker{startWorker(t, spec, strings.Join(brokers, ","), dirs[0]), startWorker(t, spec, strings.Join(brokers, ","), dirs[1])}
	adm := kadm.NewClient(cl)
	waitRead := func(what string) {
		t.Helper()
		waitFor(t, 3*time.Minute, what, func() (bool, string) {
			ends, err := adm.ListEndOffsets(ctx, src)
			if err != nil {
				return false, err.Error()
			}
			committed, err := adm.FetchOffsets(ctx, app)
			if err != nil {
				return false, err.Error()
			}
			ok, seen := true, ""
			ends.Each(func(o kadm.ListedOffset) {
				c, _ := committed.Lookup(src, o.Partition)
				seen += fmt.Sprintf(" p%d %d/%d", o.Partition, c.At, o.Offset)
				ok = ok && c.At >= o.Offset
			})
			return ok, seen
		})
	}

	// Phase 1 in four chunks; worker 1 is killed after the second and
	// restarted on its state directory.
	recs := toRecords(phase1)
	for i := range 4 {
		produce(recs[i*len(recs)/4 : (i+1)*len(recs)/4]...)
		time.Sleep(700 * time.Millisecond)
		if i == 1 {
			if err := ws[1].stop(syscall.SIGKILL); err == nil {
				t.Fatal("SIGKILL: the worker exited cleanly?")
			}
			ws[1] = startWorker(t, spec, strings.Join(brokers, ","), dirs[1])
		}
	}
	waitRead("phase 1 to be read")
	produce(setOwner("/search", "search"), setOwner("/login", "identity"), setOwner("/pay", ""))
	// Every worker's table has the update once the update is a second
	// old and the tables caught up (the lookup loader tails the topic;
	// the processing does not wait for it): give them time.
	time.Sleep(3 * time.Second)
	produce(toRecords(phase2)...)
	// One record far ahead on each source partition closes every window
	// above; its own windows (endpoint /flush, status class 1) stay open
	// and out of the comparison.
	flushTS := base + 25*time.Minute.Milliseconds()
	var flush []*kgo.Record
	for p := range int32(3) {
		b, _ := json.Marshal(revent{ID: -1, TS: flushTS, Endpoint: "/flush", Customer: "-", Status: 100, Latency: 1})
		flush = append(flush, &kgo.Record{Topic: src, Partition: p, Key: []byte("flush"), Value: b})
	}
	produce(flush...)
	waitRead("phase 2 to be read")

	want := rollupsReference(events)
	var gotN int
	waitFor(t, 3*time.Minute, "every rollup's results to equal the reference", func() (bool, string) {
		got, dups := readRollupResults(t, brokers, map[string]string{"requests_10s": out10s, "requests_1m": out1m, "errors_by_team": outTeam, "requests_hopping": outHop})
		if processing == "exactly_once" && len(dups) > 0 {
			t.Fatalf("exactly-once: windows written more than once: %v", dups[:min(5, len(dups))])
		}
		gotN = len(got)
		d := diffRollups(want, got)
		return d == "", d
	})
	t.Logf("%s: %d events, %d (rollup, key, window) results equal the reference", processing, len(events), gotN)

	// Late records: after every window closed, three records of phase 1's
	// time (already closed everywhere). Each goes to the late topic once
	// per rollup reading the source (three), named in eddy.rollup; the
	// chained rollup's results do not change.
	before1m := len(kafkatest.ReadAll(t, brokers, out1m, true))
	var lateRecs []revent
	for i := range 3 {
		lateRecs = append(lateRecs, revent{ID: 100000 + i, TS: base + 5000 + int64(i), Endpoint: "/pay", Customer: "c1", Status: 500, Latency: 7, part: int32(i)})
	}
	produce(toRecords(lateRecs)...)
	waitFor(t, 2*time.Minute, "the late records on the late topic, once per rollup", func() (bool, string) {
		per := map[string]int{}
		for _, r := range kafkatest.ReadAll(t, brokers, late, true) {
			var e revent
			_ = json.Unmarshal(r.Value, &e)
			if e.ID < 100000 {
				continue
			}
			for _, h := range r.Headers {
				if h.Key == "eddy.rollup" {
					per[string(h.Value)]++
				}
			}
		}
		ok := len(per) == 3 && per["requests_10s"] == 3 && per["errors_by_team"] == 3 && per["requests_hopping"] == 3
		return ok, fmt.Sprint(per)
	})
	waitRead("the late records to be committed")
	if after := len(kafkatest.ReadAll(t, brokers, out1m, true)); after != before1m {
		t.Errorf("the chained rollup wrote %d results after the late records (had %d)", after-before1m, before1m)
	}
	for _, w := range ws {
		_ = w.stop(syscall.SIGTERM)
	}
}

// rollupRow is the reference of one (rollup, key, window) result.
type rollupRow struct {
	requests, errors int
	lat              []float64
	customers        map[string]int
}

// rollupsReference computes every closed window of every rollup with plain
// loops over the events (the /flush records' windows never close).
func rollupsReference(events []revent) map[string]*rollupRow {
	want := map[string]*rollupRow{}
	add := func(k string, e revent) {
		r := want[k]
		if r == nil {
			r = &rollupRow{customers: map[string]int{}}
			want[k] = r
		}
		r.requests++
		if e.Status >= 500 {
			r.errors++
		}
		r.lat = append(r.lat, float64(e.Latency))
		r.customers[e.Customer]++
	}
	floor := func(ts, size int64) int64 { return ts - ts%size }
	for _, e := range events {
		add(fmt.Sprintf("requests_10s|%s|%d", e.Endpoint, floor(e.TS, 10_000)), e)
		add(fmt.Sprintf("requests_1m|%s|%d", e.Endpoint, floor(e.TS, 60_000)), e)
		add(fmt.Sprintf("errors_by_team|%s,%d|%d", e.team, e.Status/100, floor(e.TS, 30_000)), e)
		first := floor(e.TS, 10_000)
		for _, s := range []int64{first - 10_000, first} { // the two 20 s windows, advancing by 10 s, that hold it
			add(fmt.Sprintf("requests_hopping|%s|%d", e.Endpoint, s), e)
		}
	}
	return want
}

// rollupResult is one result record, as the reference renders it.
type rollupResult = map[string]any

// readRollupResults reads every rollup's output topic (read_committed) and
// keys each result "rollup|key|window start"; dups lists the windows
// written more than once.
func readRollupResults(t *testing.T, brokers []string, topics map[string]string) (map[string]rollupResult, []string) {
	got := map[string]rollupResult{}
	var dups []string
	for rollup, topic := range topics {
		for _, rec := range kafkatest.ReadAll(t, brokers, topic, true) {
			var r rollupResult
			if err := json.Unmarshal(rec.Value, &r); err != nil {
				t.Fatalf("%s result %s: %v", rollup, rec.Value, err)
			}
			ws, err := time.Parse(time.RFC3339Nano, fmt.Sprint(r["window_start"]))
			if err != nil {
				t.Fatalf("%s window_start %v: %v", rollup, r["window_start"], err)
			}
			key := fmt.Sprint(r["endpoint"])
			if rollup == "errors_by_team" {
				key = fmt.Sprintf("%v,%v", r["team"], r["status_class"])
			}
			k := fmt.Sprintf("%s|%s|%d", rollup, key, ws.UnixMilli())
			if _, seen := got[k]; seen {
				dups = append(dups, k)
			}
			got[k] = r
		}
	}
	return got, dups
}

// diffRollups compares eddy's results with the reference: counts, sums,
// minima and maxima exactly, means to float rounding, p99 within the
// quantile sketch's 1% relative accuracy of the value at rank
// ⌊0.99·(n−1)⌋, distinct counts and top 3 exactly (5 customers: far below
// the sketches' exact ranges). "" when equal, else the first differences.
func diffRollups(want map[string]*rollupRow, got map[string]rollupResult) string {
	var d []string
	for k, w := range want {
		g, ok := got[k]
		if !ok {
			d = append(d, "missing "+k)
			continue
		}
		num := func(name string) float64 {
			v, _ := g[name].(float64)
			return v
		}
		if num("requests") != float64(w.requests) {
			d = append(d, fmt.Sprintf("%s requests %v, want %d", k, g["requests"], w.requests))
			continue
		}
		switch {
		case strings.HasPrefix(k, "errors_by_team|"):
			if num("errors") != float64(w.errors) {
				d = append(d, fmt.Sprintf("%s errors %v, want %d", k, g["errors"], w.errors))
			}
		case strings.HasPrefix(k, "requests_10s|"), strings.HasPrefix(k, "requests_1m|"):
			lat := append([]float64(nil), w.lat...)
			sort.Float64s(lat)
			sum := 0.0
			for _, v := range lat {
				sum += v
			}
			p99 := lat[int(math.Floor(0.99*float64(len(lat)-1)))]
			switch {
			case num("latency_sum") != sum, num("latency_min") != lat[0], num("latency_max") != lat[len(lat)-1]:
				d = append(d, fmt.Sprintf("%s sum/min/max %v/%v/%v, want %v/%v/%v", k, g["latency_sum"], g["latency_min"], g["latency_max"], sum, lat[0], lat[len(lat)-1]))
			case math.Abs(num("latency_mean")-sum/float64(len(lat))) > 1e-9*sum:
				d = append(d, fmt.Sprintf("%s mean %v, want %v", k, g["latency_mean"], sum/float64(len(lat))))
			case math.Abs(num("latency_p99")-p99) > 0.01*p99:
				d = append(d, fmt.Sprintf("%s p99 %v, want %v within 1%%", k, g["latency_p99"], p99))
			case num("customers") != float64(len(w.customers)):
				d = append(d, fmt.Sprintf("%s customers %v, want %d", k, g["customers"], len(w.customers)))
			case fmt.Sprint(topOf(g["top_customers"])) != fmt.Sprint(wantTop(w.customers, 3)):
				d = append(d, fmt.Sprintf("%s top %v, want %v", k, topOf(g["top_customers"]), wantTop(w.customers, 3)))
			}
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok && !strings.Contains(k, "/flush") && !strings.Contains(k, ",1|") {
			d = append(d, "unexpected "+k)
		}
	}
	sort.Strings(d)
	if len(d) > 8 {
		d = append(d[:8], fmt.Sprintf("... %d more", len(d)-8))
	}
	return strings.Join(d, "; ")
}

// topOf renders a top_k result ([{value, count}...]) as "value=count".
func topOf(v any) []string {
	var out []string
	list, _ := v.([]any)
	for _, e := range list {
		m, _ := e.(map[string]any)
		out = append(out, fmt.Sprintf("%v=%v", m["value"], m["count"]))
	}
	return out
}

// wantTop is the k most frequent values of counts, ties by value.
func wantTop(counts map[string]int, k int) []string {
	type vc struct {
		v string
		n int
	}
	var es []vc
	for v, n := range counts {
		es = append(es, vc{v, n})
	}
	sort.Slice(es, func(i, j int) bool {
		if es[i].n != es[j].n {
			return es[i].n > es[j].n
		}
		return es[i].v < es[j].v
	})
	var out []string
	for _, e := range es[:min(k, len(es))] {
		out = append(out, fmt.Sprintf("%s=%d", e.v, e.n))
	}
	return out
}
