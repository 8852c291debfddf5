package eddytest_test

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/eddy-streams/eddy/internal/kafkatest"
	"github.com/eddy-streams/eddy/processor/eddytest"
	"github.com/eddy-streams/eddy/topology"
)

const (
	examplePipeline = "../../deploy/pipelines/http-requests.yaml"
	exampleCases    = "../../deploy/pipelines/cases"
)

func loadSpec(t *testing.T, path string) *topology.Spec {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	spec, err := topology.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	return spec
}

// TestExampleCases: the example pipeline's cases pass in process, each in
// well under a second, and together they expect results of every rollup,
// a late record, a dead letter and a transition of every alert rule of
// the pipeline.
func TestExampleCases(t *testing.T) {
	t.Parallel()
	spec := loadSpec(t, examplePipeline)
	if len(spec.Rollups) < 3 {
		t.Fatalf("the example pipeline has %d rollups; this test expects the bundled one's three", len(spec.Rollups))
	}
	names := eddytest.RollupNames(spec)
	cases, err := eddytest.LoadCases(exampleCases)
	if err != nil {
		t.Fatal(err)
	}
	covered := map[string]bool{}
	for _, c := range cases {
		began := time.Now()
		out, err := c.Run(spec, nil)
		took := time.Since(began)
		if err != nil {
			t.Fatalf("%s: %v", c.Name, err)
		}
		for _, d := range c.Check(spec, out) {
			t.Errorf("%s: %s", c.Name, d)
		}
		if took > time.Second {
			t.Errorf("%s took %s in process; want well under a second", c.Name, took)
		}
		t.Logf("%s: %s", c.Name, took)
		for _, r := range c.Expect.Results {
			covered["results of "+rollupOr(r.Rollup, names[0])] = true
		}
		covered["late"] = covered["late"] || len(c.Expect.Late) > 0
		covered["dead letter"] = covered["dead letter"] || len(c.Expect.DeadLetters) > 0
		for _, a := range c.Expect.Alerts {
			covered["alert "+rollupOr(a.Rollup, names[0])+" "+a.Rule+" "+a.State] = true
		}
	}
	want := []string{"late", "dead letter"}
	for _, rs := range spec.RollupSpecs() {
		want = append(want, "results of "+rs.RollupName)
		if rs.Alerts == nil {
			continue
		}
		for _, r := range rs.Alerts.Rules {
			want = append(want, "alert "+rs.RollupName+" "+r.Name+" firing")
		}
	}
	for _, w := range want {
		if !covered[w] {
			t.Errorf("no case of %s expects %s", exampleCases, w)
		}
	}
}

func rollupOr(name, def string) string {
	if name == "" {
		return def
	}
	return name
}

// TestKafkaExampleCases: the same cases on the real broker (the pipeline
// as a group member) pass, with the same outcome as in process.
func TestKafkaExampleCases(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Real(t)
	spec := loadSpec(t, examplePipeline)
	cases, err := eddytest.LoadCases(exampleCases)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			t.Parallel()
			local, err := c.Run(spec, nil)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			began := time.Now()
			out, err := c.RunKafka(ctx, spec, eddytest.KafkaConfig{Brokers: brokers})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("on the broker: %s", time.Since(began))
			for _, d := range c.Check(spec, out) {
				t.Errorf("on the broker: %s", d)
			}
			sameOutcome(t, local, out)
		})
	}
}

// sameOutcome compares what two runs wrote, decoded (late records and
// dead letters without their wall-clock parts, which are the case's in
// both).
func sameOutcome(t *testing.T, local, kafka *eddytest.Outcome) {
	t.Helper()
	if !reflect.DeepEqual(local.Results, kafka.Results) {
		t.Errorf("results differ:\nin process %s\non Kafka    %s", jsonText(local.Results), jsonText(kafka.Results))
	}
	if !reflect.DeepEqual(local.Late, kafka.Late) {
		t.Errorf("late records differ:\nin process %s\non Kafka    %s", jsonText(local.Late), jsonText(kafka.Late))
	}
	// On Kafka each rollup's dead letters of one record come from its own
	// task: their order in the topic is not the order in process.
	byOffset := func(ds []eddytest.DeadLetter) []eddytest.DeadLetter {
		ds = slices.Clone(ds)
		slices.SortStableFunc(ds, func(a, b eddytest.DeadLetter) int {
			return cmp.Or(strings.Compare(a.Topic, b.Topic), cmp.Compare(a.Partition, b.Partition),
				cmp.Compare(a.Offset, b.Offset), strings.Compare(a.Rollup, b.Rollup))
		})
		return ds
	}
	if l, k := byOffset(local.DeadLetters), byOffset(kafka.DeadLetters); !reflect.DeepEqual(l, k) {
		t.Errorf("dead letters differ:\nin process %s\non Kafka    %s", jsonText(l), jsonText(k))
	}
	if !reflect.DeepEqual(local.Alerts, kafka.Alerts) {
		t.Errorf("alerts differ:\nin process %s\non Kafka    %s", jsonText(local.Alerts), jsonText(kafka.Alerts))
	}
}

func jsonText(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// TestCheckFails: a case with wrong expectations fails, and each diff
// names the window and the field (or the output) it concerns.
func TestCheckFails(t *testing.T) {
	t.Parallel()
	spec := loadSpec(t, examplePipeline)
	c, err := eddytest.LoadCase(filepath.Join(exampleCases, "results.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	out, err := c.Run(spec, nil)
	if err != nil {
		t.Fatal(err)
	}
	if d := c.Check(spec, out); len(d) != 0 {
		t.Fatalf("the unchanged case fails: %v", d)
	}
	// The checkout window expects 3 requests: make it 4, and the search
	// window's p50 50 → 60 (beyond the 1% tolerance); drop an expected
	// result; expect a dead letter that is not there.
	var pay, search *eddytest.ExpResult
	for i := range c.Expect.Results {
		switch c.Expect.Results[i].Key["service"] {
		case "checkout":
			pay = &c.Expect.Results[i]
		case "search":
			search = &c.Expect.Results[i]
		}
	}
	pay.Values["requests"] = eddytest.Exact(4)
	search.Values["p50_latency_ms"] = eddytest.Exact(60)
	wrong := *c
	wrong.Expect.DeadLetters = []eddytest.ExpDeadLetter{{Class: "decode"}}
	diffs := wrong.Check(spec, out)
	want := []string{
		"result of by_endpoint {endpoint=/pay service=checkout} window [+0s, +10s): field requests: expected 4 (±1%), got 3", // the case's tolerance: 0.01 applies to every number
		"result of by_endpoint {endpoint=/q service=search} window [+0s, +10s): field p50_latency_ms: expected 60 (±1%), got 50",
		"dead letter 1: missing (expected {class=decode}; got none)",
	}
	if !reflect.DeepEqual(diffs, want) {
		t.Errorf("diffs:\n%s\nwant:\n%s", strings.Join(diffs, "\n"), strings.Join(want, "\n"))
	}
	// A result not expected is named too.
	wrong.Expect.DeadLetters = nil
	wrong.Expect.Results = wrong.Expect.Results[:1]
	diffs = wrong.Check(spec, out)
	if len(diffs) != 2 || !strings.HasPrefix(diffs[1], "result of by_endpoint {endpoint=/q service=search} window [+0s, +10s): unexpected (got requests=1 errors=0 p50_latency_ms=50") {
		t.Errorf("diffs with a result left out: %q", diffs)
	}
}

// TestUpdate: --update's rewrite keeps the steps and the comments, and the
// case it writes passes.
func TestUpdate(t *testing.T) {
	t.Parallel()
	spec := loadSpec(t, examplePipeline)
	src, err := os.ReadFile(filepath.Join(exampleCases, "alert-errors-high.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(src)
	text = text[:strings.Index(text, "\nexpect:")] + "\nexpect: {partial: false}\n"
	path := filepath.Join(t.TempDir(), "new.yaml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := eddytest.LoadCase(path)
	if err != nil {
		t.Fatal(err)
	}
	out, err := c.Run(spec, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Check(spec, out)) == 0 {
		t.Fatal("a case without expectations passed")
	}
	if err := c.Update(c.Expected(out)); err != nil {
		t.Fatal(err)
	}
	again, err := eddytest.LoadCase(path)
	if err != nil {
		t.Fatal(err)
	}
	if d := again.Check(spec, out); len(d) != 0 {
		t.Errorf("the updated case fails: %v", d)
	}
	if !reflect.DeepEqual(again.Steps, c.Steps) {
		t.Errorf("steps changed by the update")
	}
	written, _ := os.ReadFile(path)
	for _, keep := range []string{"# errors-high (threshold)", "# Stream time +26s closes", "rule: errors-high", "state: resolved"} {
		if !strings.Contains(string(written), keep) {
			t.Errorf("the updated file lacks %q:\n%s", keep, written)
		}
	}
	if len(again.Expect.Results) != 2 || len(again.Expect.Alerts) != 2 {
		t.Errorf("updated expect: %d results, %d alerts; want 2 and 2", len(again.Expect.Results), len(again.Expect.Alerts))
	}
}

// TestKafkaPropertyInProcessMatchesApp: for random record sets on one
// source partition (out of order within grace, some clearly late: older
// than grace plus a window behind everything read), the in-process run
// and the pipeline run as a group member on the real broker write the
// same final windows and late records, and both are what a plain loop
// over the records computes.
func TestKafkaPropertyInProcessMatchesApp(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Real(t)
	seeds := []uint64{uint64(time.Now().UnixNano()), uint64(time.Now().UnixNano()) + 1, uint64(time.Now().UnixNano()) + 2}
	if s := os.Getenv("EDDY_TEST_SEED"); s != "" { // reproduce a failure: the subtest's name has its seed
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("EDDY_TEST_SEED=%q: %v", s, err)
		}
		seeds = []uint64{n}
	}
	for _, seed := range seeds {
		t.Run(fmt.Sprint("seed-", seed), func(t *testing.T) {
			t.Parallel()
			spec, err := topology.Parse([]byte(`
app: prop
source: {topics: [events]}
time: {field: ts}
key: [k]
window: {type: tumbling, size: 10s, grace: 5s}
aggregates:
  - {name: n, op: count}
  - {name: total, op: sum, field: v}
output: {topic: prop-out}
idle_timeout: 1h
`))
			if err != nil {
				t.Fatal(err)
			}
			c, model := randomCase(rand.New(rand.NewPCG(seed, 7)), 200)
			local, err := c.Run(spec, nil)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			kafka, err := c.RunKafka(ctx, spec, eddytest.KafkaConfig{Brokers: brokers})
			if err != nil {
				t.Fatal(err)
			}
			for name, out := range map[string]*eddytest.Outcome{"in process": local, "on Kafka": kafka} {
				if got := finalWindows(out); !reflect.DeepEqual(got, model.windows) {
					t.Errorf("%s: final windows %v\nplain loop: %v", name, got, model.windows)
				}
				var late []int64
				for _, l := range out.Late {
					late = append(late, l.Offset)
				}
				if !reflect.DeepEqual(late, model.late) {
					t.Errorf("%s: late offsets %v, plain loop %v", name, late, model.late)
				}
			}
			t.Logf("%d windows, %d late", len(model.windows), len(model.late))
		})
	}
}

type window struct {
	key   string
	start int64
}

type model struct {
	windows map[window][2]float64 // count, sum
	late    []int64               // source offsets
}

// randomCase makes a case of n records and what a plain loop says of them.
func randomCase(rng *rand.Rand, n int) (*eddytest.Case, model) {
	const size, grace = 10_000, 5_000
	base := eddytest.DefaultStart.Add(-time.Hour).UnixMilli()
	st := base
	m := model{windows: map[window][2]float64{}}
	var recs []eddytest.InRecord
	add := func(k string, v int, ts int64) {
		recs = append(recs, eddytest.InRecord{Value: map[string]any{"k": k, "v": v, "ts": ts}})
	}
	for range n {
		k := string(rune('a' + rng.IntN(4)))
		v := rng.IntN(50)
		if rng.IntN(10) == 0 && st-grace-size-30_000 > base {
			ts := st - grace - size - rng.Int64N(30_000)
			m.late = append(m.late, int64(len(recs)))
			add(k, v, ts)
			continue
		}
		ts := st - grace + rng.Int64N(grace+4_000)
		st = max(st, ts)
		w := window{k, ts - ts%size}
		agg := m.windows[w]
		m.windows[w] = [2]float64{agg[0] + 1, agg[1] + float64(v)}
		add(k, v, ts)
	}
	// Far ahead: every window so far closes; its own stays open.
	add("z", 0, st+10*size)
	return &eddytest.Case{Steps: []eddytest.Step{{Records: recs}}}, m
}

func finalWindows(o *eddytest.Outcome) map[window][2]float64 {
	out := map[window][2]float64{}
	for _, r := range o.Results {
		out[window{r.Key["k"], r.WindowStart.UnixMilli()}] = [2]float64{*r.Values["n"], *r.Values["total"]}
	}
	return out
}
