package eddytest_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/eddy-streams/eddy/processor/eddytest"
	"github.com/eddy-streams/eddy/topology"
)

const twoRollups = `
app: two
source: {topics: [ev]}
time: {field: ts}
late_topic: two-late
rollups:
  - name: ten
    key: [k]
    window: {type: tumbling, size: 10s}
    aggregates: [{name: n, op: count}]
    output: {topic: two-10s}
  - name: twenty
    key: [k]
    window: {type: tumbling, size: 20s}
    aggregates: [{name: n, op: count}, {name: total, op: sum, field: v}]
    output: {topic: two-20s}
`

// TestCheckRollups: in a pipeline with several rollups, a case's
// expectations are per rollup (rollup:, default the first): a result
// expected of one rollup is not met by another's, results and late
// records of every rollup are checked, and each mismatch names its
// rollup. The expectations are computed here by plain loops.
func TestCheckRollups(t *testing.T) {
	t.Parallel()
	spec, err := topology.Parse([]byte(twoRollups))
	if err != nil {
		t.Fatal(err)
	}
	type rec struct {
		k  string
		v  int
		at int // seconds from the start
	}
	// +45s closes every window before it (no grace); the record at +5s
	// after it is late for both rollups.
	in := []rec{{"a", 1, 1}, {"b", 2, 3}, {"a", 3, 12}, {"a", 4, 19}, {"b", 5, 25}, {"a", 6, 45}, {"a", 7, 5}}
	var steps []eddytest.InRecord
	for _, r := range in {
		steps = append(steps, eddytest.InRecord{Value: map[string]any{"k": r.k, "v": r.v}, EventTime: fmt.Sprintf("+%ds", r.at)})
	}
	c := &eddytest.Case{Steps: []eddytest.Step{{Records: steps}}}

	// Plain loops: the windows each rollup closes by stream time +45s, and
	// the late records.
	var exp eddytest.Expect
	stream := 0
	type win struct {
		k     string
		start int
	}
	for _, size := range []int{10, 20} {
		n, total := map[win]float64{}, map[win]float64{}
		stream = 0
		var lateOffsets []int64
		for i, r := range in {
			w := win{r.k, r.at - r.at%size}
			if w.start+size <= stream {
				lateOffsets = append(lateOffsets, int64(i))
				continue
			}
			stream = max(stream, r.at)
			n[w]++
			total[w] += float64(r.v)
		}
		rollup := ""
		if size == 20 {
			rollup = "twenty"
		}
		for w, cnt := range n {
			if w.start+size > stream {
				continue // still open
			}
			vals := map[string]eddytest.Num{"n": eddytest.Exact(cnt)}
			if size == 20 {
				vals["total"] = eddytest.Exact(total[w])
			}
			exp.Results = append(exp.Results, eddytest.ExpResult{Rollup: rollup, Key: map[string]string{"k": w.k},
				WindowStart: fmt.Sprintf("+%ds", w.start), Values: vals})
		}
		for _, off := range lateOffsets {
			exp.Late = append(exp.Late, eddytest.ExpLate{Rollup: rollup, Offset: &off})
		}
	}
	c.Expect = exp
	out, err := c.Run(spec, nil)
	if err != nil {
		t.Fatal(err)
	}
	if d := c.Check(spec, out); len(d) != 0 {
		t.Fatalf("the plain loops' expectations fail:\n%s", strings.Join(d, "\n"))
	}
	if len(exp.Results) < 4 || len(exp.Late) != 2 {
		t.Fatalf("the loops expect %d results and %d late records: the input no longer tests both rollups", len(exp.Results), len(exp.Late))
	}
	for _, l := range out.Late {
		if l.Rollup != "ten" && l.Rollup != "twenty" {
			t.Errorf("late record without its rollup: %+v", l)
		}
	}

	// A result of twenty expected without rollup: is looked for in ten.
	wrong := *c
	wrong.Expect.Results = slices.Clone(exp.Results)
	i := slices.IndexFunc(wrong.Expect.Results, func(r eddytest.ExpResult) bool { return r.Rollup == "twenty" && r.Key["k"] == "a" })
	moved := wrong.Expect.Results[i]
	moved.Rollup = ""
	wrong.Expect.Results[i] = moved
	diffs := wrong.Check(spec, out)
	want := []string{
		fmt.Sprintf("result of ten {k=a} window [+0s): missing (expected n=%s total=%s, got no such result)", moved.Values["n"], moved.Values["total"]),
		fmt.Sprintf("result of twenty {k=a} window [+0s, +20s): unexpected (got n=%s total=%s)", moved.Values["n"], moved.Values["total"]),
	}
	if !slices.Equal(diffs, want) {
		t.Errorf("diffs:\n%s\nwant:\n%s", strings.Join(diffs, "\n"), strings.Join(want, "\n"))
	}

	// A late record expected of the first rollup only: twenty's is
	// unexpected, named with its rollup.
	wrong = *c
	wrong.Expect.Late = exp.Late[:1]
	diffs = wrong.Check(spec, out)
	if len(diffs) != 1 || !strings.HasPrefix(diffs[0], "late record: unexpected {rollup=twenty partition=0 offset=6") {
		t.Errorf("diffs with twenty's late record not expected: %q", diffs)
	}

	// An unknown rollup is named as such.
	wrong = *c
	wrong.Expect.Results = append(slices.Clone(exp.Results), eddytest.ExpResult{Rollup: "thirty", Key: map[string]string{"k": "a"}, WindowStart: "+0s"})
	diffs = wrong.Check(spec, out)
	if !slices.Equal(diffs, []string{`expect.results[` + fmt.Sprint(len(exp.Results)) + `]: rollup "thirty": the pipeline has no such rollup (it has ten, twenty)`}) {
		t.Errorf("diffs with an unknown rollup: %q", diffs)
	}

	// --update writes rollup: for every output but the first rollup's, and
	// what it writes passes.
	got := c.Expected(out)
	for _, r := range got.Results {
		want := "twenty"
		if isTen(r) {
			want = ""
		}
		if r.Rollup != want {
			t.Errorf("expected result %+v: rollup %q, want %q", r, r.Rollup, want)
		}
	}
	again := *c
	again.Expect = got
	if d := again.Check(spec, out); len(d) != 0 {
		t.Errorf("the written expectations fail: %q", d)
	}
}

// isTen reports whether an expected result spans 10 seconds.
func isTen(r eddytest.ExpResult) bool {
	s, _ := time.ParseDuration(strings.TrimPrefix(r.WindowStart, "+"))
	e, _ := time.ParseDuration(strings.TrimPrefix(r.WindowEnd, "+"))
	return e-s == 10*time.Second
}

// TestCheckRollupSingleForm: rollup: in a case of a pipeline without
// rollups is an error that says so.
func TestCheckRollupSingleForm(t *testing.T) {
	t.Parallel()
	spec, err := topology.Parse([]byte(`
app: one
source: {topics: [ev]}
time: {field: ts}
key: [k]
window: {type: tumbling, size: 10s}
aggregates: [{name: n, op: count}]
output: {topic: one-out}
`))
	if err != nil {
		t.Fatal(err)
	}
	c := &eddytest.Case{Expect: eddytest.Expect{Alerts: []eddytest.ExpAlert{{Rollup: "x", Rule: "r", State: "firing"}}}}
	out, err := c.Run(spec, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{`expect.alerts[0]: rollup "x": the pipeline is one rollup, written without rollups: (remove rollup:)`}
	if d := c.Check(spec, out); !slices.Equal(d, want) {
		t.Errorf("diffs %q, want %q", d, want)
	}
}

// TestBundledRollupsAgainstLoops: random traffic through the bundled
// pipeline in process gives, for each of its three rollups, the windows a
// plain loop over the records computes: by_endpoint's 10s counts,
// by_endpoint_1m's minutes (counts, and percentiles of all the minute's
// requests within the sketch's 1%, not averages of the 10s ones), and
// by_status_class's minutes per service and status class.
func TestBundledRollupsAgainstLoops(t *testing.T) {
	t.Parallel()
	spec := loadSpec(t, examplePipeline)
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 20))
	t.Logf("seed %d", seed)
	type req struct {
		service, endpoint string
		status            int
		latency           float64
		ts                int64 // ms from the start
	}
	var in []req
	for i := range 600 {
		r := req{
			service:  []string{"checkout", "search"}[rng.IntN(2)],
			endpoint: []string{"/a", "/b", "/healthz"}[rng.IntN(3)],
			status:   []int{200, 200, 200, 201, 404, 500, 503}[rng.IntN(7)],
			latency:  float64(1 + rng.IntN(2000)),
			// Over three minutes, out of order by up to 3s (within grace).
			ts: int64(i)*300 + 5_000 - rng.Int64N(3_000),
		}
		in = append(in, r)
	}
	var recs []eddytest.InRecord
	for _, r := range in {
		recs = append(recs, eddytest.InRecord{Value: map[string]any{"service": r.service, "endpoint": r.endpoint, "status": r.status,
			"latency_ms": r.latency}, EventTime: fmt.Sprintf("+%dms", r.ts)})
	}
	// Far ahead, of its own key: every window of the records above closes.
	recs = append(recs, eddytest.InRecord{Value: map[string]any{"service": "z", "endpoint": "/z", "status": 200, "latency_ms": 1}, EventTime: "+1h"})
	c := &eddytest.Case{Steps: []eddytest.Step{{Records: recs}}}
	out, err := c.Run(spec, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Late) > 0 || len(out.DeadLetters) > 0 {
		t.Fatalf("%d late records and %d dead letters; the input has none", len(out.Late), len(out.DeadLetters))
	}

	// The plain loops: latencies and errors by rollup, key and window.
	type win struct {
		rollup, k1, k2 string
		start          int64
	}
	type agg struct {
		errors int
		lat    []float64
	}
	want := map[win]*agg{}
	add := func(w win, r req) {
		a := want[w]
		if a == nil {
			a = &agg{}
			want[w] = a
		}
		a.lat = append(a.lat, r.latency)
		if r.status >= 500 {
			a.errors++
		}
	}
	for _, r := range in {
		if r.endpoint == "/healthz" {
			continue
		}
		add(win{"by_endpoint", r.service, r.endpoint, r.ts - r.ts%10_000}, r)
		add(win{"by_endpoint_1m", r.service, r.endpoint, r.ts - r.ts%60_000}, r)
		add(win{"by_status_class", r.service, fmt.Sprint(r.status / 100), r.ts - r.ts%60_000}, r)
	}
	got := map[win]eddytest.Result{}
	for _, r := range out.Results {
		k2 := r.Key["endpoint"]
		if r.Rollup == "by_status_class" {
			k2 = r.Key["status_class"]
		}
		w := win{r.Rollup, r.Key["service"], k2, r.WindowStart.Sub(eddytest.DefaultStart).Milliseconds()}
		if _, dup := got[w]; dup {
			t.Errorf("two results of %v", w)
		}
		got[w] = r
	}
	quantile := func(sorted []float64, q float64) (lo, hi float64) {
		x := q * float64(len(sorted)-1)
		return sorted[int(math.Floor(x))], sorted[int(math.Ceil(x))]
	}
	per := map[string]int{}
	for w, a := range want {
		r, ok := got[w]
		if !ok {
			t.Errorf("no result for %v (%d requests)", w, len(a.lat))
			continue
		}
		per[w.rollup]++
		if n := *r.Values["requests"]; n != float64(len(a.lat)) {
			t.Errorf("%v: requests %v, the loop counts %d", w, n, len(a.lat))
		}
		if e, ok := r.Values["errors"]; ok && *e != float64(a.errors) {
			t.Errorf("%v: errors %v, the loop counts %d", w, *e, a.errors)
		}
		slices.Sort(a.lat)
		for name, q := range map[string]float64{"p50_latency_ms": 0.5, "p99_latency_ms": 0.99} {
			v, ok := r.Values[name]
			if !ok {
				continue
			}
			lo, hi := quantile(a.lat, q)
			if v == nil || *v < lo*0.99 || *v > hi*1.01 {
				t.Errorf("%v: %s %v, the loop's is %v..%v (within 1%%)", w, name, fmtPtr(v), lo, hi)
			}
		}
	}
	for w := range got {
		if want[w] == nil && w.k1 != "z" {
			t.Errorf("a result for %v, which has no request", w)
		}
	}
	t.Logf("results checked per rollup: %v", per)
	if per["by_endpoint_1m"] == 0 || per["by_status_class"] == 0 {
		t.Errorf("no minute checked: %v", per)
	}
}

func fmtPtr(f *float64) string {
	if f == nil {
		return "null"
	}
	return fmt.Sprint(*f)
}

// TestDriverOpenWindowsIn: the open windows of a key in each rollup, as
// plain counting over the piped records says; an unknown rollup is an
// error.
func TestDriverOpenWindowsIn(t *testing.T) {
	t.Parallel()
	spec, err := topology.Parse([]byte(twoRollups))
	if err != nil {
		t.Fatal(err)
	}
	d, err := eddytest.New(spec)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	start := d.Now().Truncate(20 * time.Second)
	vals := []int{1, 2, 3, 4, 5}
	for i, v := range vals {
		rec := eddytest.Record{Value: eddytest.JSON(map[string]any{"k": "a", "v": v, "ts": start.Add(time.Duration(i) * 3 * time.Second).UnixMilli()})}
		if err := d.Pipe(rec); err != nil {
			t.Fatal(err)
		}
	}
	// Plain loops: per 10 s and 20 s window of the records' event times,
	// the windows still open (no grace: those ending after the last event
	// time, the stream time).
	last := start.Add(time.Duration(len(vals)-1) * 3 * time.Second).UnixMilli()
	ten, twenty, sum20 := map[int64]float64{}, map[int64]float64{}, map[int64]float64{}
	for i, v := range vals {
		ts := start.Add(time.Duration(i) * 3 * time.Second).UnixMilli()
		if w := ts - ts%10_000; w+10_000 > last {
			ten[w]++
		}
		if w := ts - ts%20_000; w+20_000 > last {
			twenty[w]++
			sum20[w] += float64(v)
		}
	}
	check := func(rollup string, want map[int64]float64, sums map[int64]float64) {
		t.Helper()
		ws, err := d.OpenWindowsIn(rollup, "a")
		if err != nil {
			t.Fatal(err)
		}
		got := map[int64]float64{}
		for _, w := range ws {
			got[w.Window.Start] = w.Values["n"]
			if sums != nil && w.Values["total"] != sums[w.Window.Start] {
				t.Errorf("%s window %d: total %v, want %v", rollup, w.Window.Start, w.Values["total"], sums[w.Window.Start])
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s open windows of a: %v, want %v", rollup, got, want)
		}
	}
	check("ten", ten, nil)
	check("twenty", twenty, sum20)
	first, err := d.OpenWindows("a")
	if err != nil || len(first) != len(ten) {
		t.Errorf("OpenWindows (the first rollup): %d windows, %v; want %d", len(first), err, len(ten))
	}
	if _, err := d.OpenWindowsIn("nope", "a"); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Errorf("unknown rollup: %v, want an error naming it", err)
	}
}
