package topology

import (
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// rollupsHead is the shared part of the multi-rollup specs of these tests.
const rollupsHead = `app: demo
source: {topics: [in]}
time: {field: ts}
filter: endpoint != "/health"
`

// Three rollups: a 10s rollup by endpoint, a 1m rollup chained from it,
// and a 5m rollup by customer.
var baseRollups = []string{
	"{name: a, key: [endpoint], window: {type: tumbling, size: 10s, grace: 2s}, aggregates: [{name: n, op: count}, {name: p99, op: p99, field: latency_ms}], output: {topic: out-a}}",
	"{name: b, from: a, window: {type: tumbling, size: 1m}, output: {topic: out-b}}",
	"{name: c, key: [customer], window: {type: tumbling, size: 5m}, aggregates: [{name: n, op: count}], output: {topic: out-c}}",
}

// rollupsWith returns the shared part, extra top-level blocks, and the
// base rollups with rollups[i] replaced by repl[i] where given ("" keeps
// it, "-" drops it), one per line.
func rollupsWith(extra []string, repl map[int]string) string {
	var b strings.Builder
	b.WriteString(rollupsHead)
	for _, e := range extra {
		b.WriteString(e + "\n")
	}
	b.WriteString("rollups:\n")
	n := len(baseRollups)
	for i := range repl {
		n = max(n, i+1)
	}
	for i := 0; i < n; i++ {
		r := ""
		if i < len(baseRollups) {
			r = baseRollups[i]
		}
		if x, ok := repl[i]; ok {
			r = x
		}
		if r == "-" || r == "" {
			continue
		}
		b.WriteString("  - " + r + "\n")
	}
	return b.String()
}

func TestRollupsBaseIsValid(t *testing.T) {
	s, err := Parse([]byte(rollupsWith(nil, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if !s.MultiRollup() || len(s.Rollups) != 3 {
		t.Fatalf("MultiRollup %v, %d rollups", s.MultiRollup(), len(s.Rollups))
	}
}

// The defaults of each rollup are those of the single form; the top level
// keeps none of the single form's per-rollup keys.
func TestParseRollupsDefaults(t *testing.T) {
	s := mustParseFile(t, filepath.Join("testdata", "describe", "rollups.yaml"))
	if s.Emit != "" || s.Store != "" || s.Output != (Output{}) || len(s.Key) != 0 || len(s.Aggregates) != 0 || s.Alerts != nil {
		t.Errorf("top level of the multi form has single-form values: emit %q store %q output %+v key %v", s.Emit, s.Store, s.Output, s.Key)
	}
	if s.LateTopic != "request-rollups-late" || s.DeadLetterTopic != "request-rollups-dlq" || s.Processing != AtLeastOnce {
		t.Errorf("shared defaults: %q %q %q", s.LateTopic, s.DeadLetterTopic, s.Processing)
	}
	type got struct{ Emit, Store, Format string }
	want := []got{
		{EmitClose, "endpoint_10s", FormatJSON},
		{EmitClose, "endpoint_1m", FormatJSON},
		{EmitUpdate, "customer_5m", FormatJSON}, // written
	}
	for i, r := range s.Rollups {
		if g := (got{r.Emit, r.Store, r.Output.Format}); g != want[i] {
			t.Errorf("rollups[%d] = %+v, want %+v", i, g, want[i])
		}
	}
	if a := s.Rollups[0].Aggregates[3]; a.Op != AggQuantile || a.Quantile != 0.99 {
		t.Errorf("p99 of a rollup parsed as %+v", a)
	}
	al := s.Rollups[1].Alerts
	if al == nil || al.Topic != "request-rollups-endpoint_1m-alerts" {
		t.Fatalf("alerts of the chained rollup: %+v", al)
	}
	if r := al.Rules[0]; r.Severity != DefaultSeverity || r.ResolveWindows != 1 || r.ForWindows != 2 || r.Value != "p99_latency_ms" {
		t.Errorf("alert rule defaults: %+v", r)
	}
}

// A threshold rule's value defaults to the first aggregate its condition
// names, for a chained rollup too: the aggregates it inherits.
func TestRollupAlertDefaultsUseInheritedAggregates(t *testing.T) {
	s, err := Parse([]byte(rollupsWith(nil, map[int]string{
		1: "{name: b, from: a, window: {type: tumbling, size: 1m}, output: {topic: out-b}, alerts: {topic: b-alerts, rules: [{name: slow, kind: threshold, condition: 'n > 5 && p99 > 100'}]}}",
	})))
	if err != nil {
		t.Fatal(err)
	}
	if r := s.Rollups[1].Alerts.Rules[0]; r.Value != "n" || !r.ValueDefaulted {
		t.Errorf("value = %q (defaulted %v), want n", r.Value, r.ValueDefaulted)
	}
	if got := s.Rollups[1].Alerts.Topic; got != "b-alerts" {
		t.Errorf("written alerts topic replaced: %q", got)
	}
}

func TestRollupSpecs(t *testing.T) {
	s, err := Parse([]byte(rollupsWith(nil, map[int]string{
		3: "{name: d, key: [endpoint], window: {type: hopping, size: 1m, advance: 10s}, aggregates: [{name: m, op: max, field: latency_ms}], output: {topic: out-d}, store: dstore}",
		4: "{name: e, from: b, window: {type: tumbling, size: 1h}, output: {topic: out-e}, emit: update}",
		5: "{name: f, key: [customer, endpoint], window: {type: tumbling, size: 1m}, aggregates: [{name: n, op: count}], output: {topic: out-f}}",
	})))
	if err != nil {
		t.Fatal(err)
	}
	specs := s.RollupSpecs()
	type row struct {
		Name, From, Repartition, Store, Output, Emit string
		Key                                          []string
		Size                                         time.Duration
	}
	var got []row
	for _, rs := range specs {
		got = append(got, row{rs.RollupName, rs.From, rs.RepartitionTopic(), rs.Store, rs.Output.Topic, rs.Emit, rs.Key, rs.Window.Size})
	}
	want := []row{
		{"a", "", "demo-repartition", "a", "out-a", "close", []string{"endpoint"}, 10 * time.Second},
		{"b", "a", "demo-repartition", "b", "out-b", "close", []string{"endpoint"}, time.Minute},
		// The first rollup of another key names its repartition topic.
		{"c", "", "demo-c-repartition", "c", "out-c", "close", []string{"customer"}, 5 * time.Minute},
		// Same key as a: same repartition topic.
		{"d", "", "demo-repartition", "dstore", "out-d", "close", []string{"endpoint"}, time.Minute},
		// A chain of chains has the key of the rollup at its start.
		{"e", "b", "demo-repartition", "e", "out-e", "update", []string{"endpoint"}, time.Hour},
		// The same fields in another order are another key.
		{"f", "", "demo-f-repartition", "f", "out-f", "close", []string{"customer", "endpoint"}, time.Minute},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("RollupSpecs:\n got %+v\nwant %+v", got, want)
	}
	// Chained rollups carry the aggregates of the rollup they read.
	for _, i := range []int{1, 4} {
		if !reflect.DeepEqual(specs[i].Aggregates, s.Rollups[0].Aggregates) {
			t.Errorf("%s aggregates = %+v, want those of a", specs[i].RollupName, specs[i].Aggregates)
		}
	}
	// Each is a complete single-rollup spec sharing the pipeline's source
	// part, and valid on its own.
	for _, rs := range specs {
		if rs.MultiRollup() || rs.App != "demo" || rs.Filter != s.Filter || rs.Time != s.Time || rs.LateTopic != "demo-late" {
			t.Errorf("%s: not a single-rollup spec of the pipeline: %+v", rs.RollupName, rs)
		}
		if err := rs.Validate(); err != nil {
			t.Errorf("%s does not validate: %v", rs.RollupName, err)
		}
	}
	// The single form is its own one rollup.
	one, err := Parse([]byte(specWith()))
	if err != nil {
		t.Fatal(err)
	}
	if rs := one.RollupSpecs(); len(rs) != 1 || rs[0] != one {
		t.Errorf("single form: RollupSpecs = %v", rs)
	}
}

func TestRollupsValidateErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		extra []string       // top-level blocks added
		repl  map[int]string // rollups replaced
		field string         // the field of the only expected error
		text  string         // a part of the error message
	}{
		// The single form's per-rollup keys at the top level.
		{"top key", []string{"key: [endpoint]"}, nil, "key", "move it under the rollup"},
		{"top window", []string{"window: {type: tumbling, size: 1m}"}, nil, "window", "each rollup has its own window"},
		{"top aggregates", []string{"aggregates: [{name: n, op: count}]"}, nil, "aggregates", "rollups[].aggregates"},
		{"top emit", []string{"emit: update"}, nil, "emit", "rollups[].emit"},
		{"top output", []string{"output: {topic: x}"}, nil, "output", "rollups[].output"},
		{"top store", []string{"store: windows"}, nil, "store", "rollups[].store"},
		{"top alerts", []string{"alerts: {rules: [{name: x, kind: absence, for: 1m}]}"}, nil, "alerts", "rollups[].alerts"},

		// Names and stores.
		{"no name", nil, map[int]string{2: "{key: [customer], window: {type: tumbling, size: 5m}, aggregates: [{name: n, op: count}], output: {topic: out-c}}"},
			"rollups[2].name", "must be set"},
		{"bad name", nil, map[int]string{2: "{name: 'c.5m', key: [customer], window: {type: tumbling, size: 5m}, aggregates: [{name: n, op: count}], output: {topic: out-c}}"},
			"rollups[2].name", `write e.g. "c_5m"`},
		{"same name", nil, map[int]string{2: "{name: a, key: [customer], window: {type: tumbling, size: 5m}, aggregates: [{name: n, op: count}], output: {topic: out-c}, store: c}"},
			"rollups[2].name", "also the name of rollups[0]"},
		{"same store", nil, map[int]string{2: "{name: c, key: [customer], window: {type: tumbling, size: 5m}, aggregates: [{name: n, op: count}], output: {topic: out-c}, store: a}"},
			"rollups[2].store", `"a" is also the store of rollups[0]`},
		{"bad store", nil, map[int]string{2: "{name: c, key: [customer], window: {type: tumbling, size: 5m}, aggregates: [{name: n, op: count}], output: {topic: out-c}, store: 'c/5'}"},
			"rollups[2].store", `contains '/'`},
		{"long name", nil, map[int]string{2: "{name: " + strings.Repeat("c", 240) + ", key: [customer], window: {type: tumbling, size: 5m}, aggregates: [{name: n, op: count}], output: {topic: out-c}}"},
			"app", "too long"},

		// Topics.
		{"same output", nil, map[int]string{2: "{name: c, key: [customer], window: {type: tumbling, size: 5m}, aggregates: [{name: n, op: count}], output: {topic: out-a}}"},
			"rollups[2].output.topic", `"out-a" is also the output topic of rollup "a"`},
		{"output is a changelog", nil, map[int]string{2: "{name: c, key: [customer], window: {type: tumbling, size: 5m}, aggregates: [{name: n, op: count}], output: {topic: demo-b-changelog}}"},
			"rollups[2].output.topic", `changelog topic of store "b" (rollup "b")`},
		{"output is a repartition topic", nil, map[int]string{1: "{name: b, from: a, window: {type: tumbling, size: 1m}, output: {topic: demo-c-repartition}}"},
			"rollups[1].output.topic", "repartition topic"},
		{"late is an output", []string{"late_topic: out-b"}, nil, "late_topic", `also the output topic of rollup "b"`},
		{"same rule name", nil, map[int]string{1: "{name: b, from: a, window: {type: tumbling, size: 1m}, output: {topic: out-b}, alerts: {rules: [{name: quiet, kind: absence, for: 1m}]}}",
			2: "{name: c, key: [customer], window: {type: tumbling, size: 5m}, aggregates: [{name: n, op: count}], output: {topic: out-c}, alerts: {rules: [{name: quiet, kind: absence, for: 5m}]}}"},
			"rollups[2].alerts.rules[0].name", `"quiet" is also the name of a rule of rollups[1] ("b")`},
		{"alerts is an output", nil, map[int]string{1: "{name: b, from: a, window: {type: tumbling, size: 1m}, output: {topic: out-b}, alerts: {topic: out-c, rules: [{name: x, kind: absence, for: 1m}]}}"},
			"rollups[1].alerts.topic", `"out-c" is also the output topic of rollup "c"`},
		{"empty alerts topic", nil, map[int]string{1: "{name: b, from: a, window: {type: tumbling, size: 1m}, output: {topic: out-b}, alerts: {topic: '', rules: [{name: x, kind: absence, for: 1m}]}}"},
			"rollups[1].alerts.topic", `default "demo-b-alerts"`},
		{"lookup reads an output", []string{"lookups: [{name: t, topic: out-c, on: endpoint, fields: [team]}]"}, nil,
			"lookups[0].topic", `output topic of rollup "c"`},

		// The single form's checks, per rollup.
		{"window", nil, map[int]string{0: "{name: a, key: [endpoint], window: {type: tumbling}, aggregates: [{name: n, op: count}], output: {topic: out-a}}"},
			"rollups[0].window.size", "must be set for a tumbling window"},
		{"key", nil, map[int]string{2: "{name: c, window: {type: tumbling, size: 5m}, aggregates: [{name: n, op: count}], output: {topic: out-c}}"},
			"rollups[2].key", "at least one field"},
		{"op", nil, map[int]string{2: "{name: c, key: [customer], window: {type: tumbling, size: 5m}, aggregates: [{name: n, op: avg, field: x}], output: {topic: out-c}}"},
			"rollups[2].aggregates[0].op", `did you mean "mean"?`},
		{"emit", nil, map[int]string{2: "{name: c, key: [customer], window: {type: tumbling, size: 5m}, aggregates: [{name: n, op: count}], output: {topic: out-c}, emit: always}"},
			"rollups[2].emit", `"always" is not close or update`},
		{"output", nil, map[int]string{2: "{name: c, key: [customer], window: {type: tumbling, size: 5m}, aggregates: [{name: n, op: count}]}"},
			"rollups[2].output.topic", "must be set"},
		{"output format", nil, map[int]string{2: "{name: c, key: [customer], window: {type: tumbling, size: 5m}, aggregates: [{name: n, op: count}], output: {topic: out-c, format: csv}}"},
			"rollups[2].output.format", `"csv" is not json or avro`},
		{"alert condition", nil, map[int]string{1: "{name: b, from: a, window: {type: tumbling, size: 1m}, output: {topic: out-b}, alerts: {rules: [{name: x, kind: threshold, condition: 'errors > 1'}]}}"},
			"rollups[1].alerts.rules[0].condition", "a condition may name the aggregates (n, p99)"},

		// Chains.
		{"from unknown", nil, map[int]string{1: "{name: b, from: aa, window: {type: tumbling, size: 1m}, output: {topic: out-b}}"},
			"rollups[1].from", `did you mean "a"?`},
		{"from self", nil, map[int]string{1: "{name: b, from: b, window: {type: tumbling, size: 1m}, output: {topic: out-b}}"},
			"rollups[1].from", "cannot read its own results"},
		{"from later", nil, map[int]string{1: "{name: b, from: c, window: {type: tumbling, size: 10m}, output: {topic: out-b}}"},
			"rollups[1].from", `move this rollup after rollup "c"`},
		{"from hopping", nil, map[int]string{0: "{name: a, key: [endpoint], window: {type: hopping, size: 20s, advance: 10s}, aggregates: [{name: n, op: count}], output: {topic: out-a}}"},
			"rollups[1].from", `rollup "a" has hopping windows`},
		{"from session", nil, map[int]string{0: "{name: a, key: [endpoint], window: {type: session, gap: 1m}, aggregates: [{name: n, op: count}], output: {topic: out-a}}"},
			"rollups[1].from", `rollup "a" has session windows`},
		{"chained hopping", nil, map[int]string{1: "{name: b, from: a, window: {type: hopping, size: 1m, advance: 10s}, output: {topic: out-b}}"},
			"rollups[1].window.type", "must be tumbling for a chained rollup"},
		{"chained size", nil, map[int]string{1: "{name: b, from: a, window: {type: tumbling, size: 15s}, output: {topic: out-b}}"},
			"rollups[1].window.size", `must be a multiple of the window size of rollup "a" (10s), so that each of its windows lies in exactly one window of this rollup; write e.g. "size: 20s"`},
		{"chained smaller", nil, map[int]string{1: "{name: b, from: a, window: {type: tumbling, size: 5s}, output: {topic: out-b}}"},
			"rollups[1].window.size", `write e.g. "size: 10s"`},
		{"chained grace", nil, map[int]string{1: "{name: b, from: a, window: {type: tumbling, size: 1m, grace: 5s}, output: {topic: out-b}}"},
			"rollups[1].window.grace", "nothing it receives is ever late"},
		{"chained key", nil, map[int]string{1: "{name: b, from: a, key: [endpoint], window: {type: tumbling, size: 1m}, output: {topic: out-b}}"},
			"rollups[1].key", `it has the key of rollup "a"`},
		{"chained aggregates", nil, map[int]string{1: "{name: b, from: a, window: {type: tumbling, size: 1m}, aggregates: [{name: n, op: count}], output: {topic: out-b}}"},
			"rollups[1].aggregates", `it merges the aggregates of rollup "a"`},
		{"chain of chains size", nil, map[int]string{3: "{name: d, from: b, window: {type: tumbling, size: 90s}, output: {topic: out-d}}"},
			"rollups[3].window.size", `window size of rollup "b" (1m)`},

		// One key when the source is keyed by it.
		{"keyed by group key", []string{"source: {topics: [in], keyed_by_group_key: true}"}, nil,
			"rollups[2].key", `[customer] is not the key of rollup "a" ([endpoint])`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := rollupsWith(tc.extra, tc.repl)
			if len(tc.extra) > 0 && strings.HasPrefix(tc.extra[0], "source:") {
				src = strings.Replace(src, "source: {topics: [in]}\n", "", 1)
			}
			_, err := Parse([]byte(src))
			fes := FieldErrors(err)
			if len(fes) != 1 {
				t.Fatalf("want one error on %s, got:\n%v\nspec:\n%s", tc.field, err, src)
			}
			if fes[0].Field != tc.field || !strings.Contains(fes[0].Error(), tc.text) {
				t.Errorf("got %q\nwant field %s and text %q", fes[0].Error(), tc.field, tc.text)
			}
			if fes[0].Fix == "" {
				t.Errorf("no fix in %q", fes[0].Error())
			}
			if fes[0].Line == 0 {
				t.Errorf("no line in %q", fes[0].Error())
			}
		})
	}
}

func TestRollupsValidateAccepts(t *testing.T) {
	for _, tc := range []struct {
		name  string
		extra []string
		repl  map[int]string
	}{
		{"chain of chains 10s, 1m, 1h", nil, map[int]string{3: "{name: d, from: b, window: {type: tumbling, size: 1h}, output: {topic: out-d}}"}},
		{"emit update on both ends", nil, map[int]string{
			0: "{name: a, key: [endpoint], window: {type: tumbling, size: 10s}, aggregates: [{name: n, op: count}], output: {topic: out-a}, emit: update}",
			1: "{name: b, from: a, window: {type: tumbling, size: 10s, grace: 0s}, output: {topic: out-b}, emit: update}",
		}},
		{"keyed by group key, one key", []string{"source: {topics: [in], keyed_by_group_key: true}"}, map[int]string{2: "-"}},
		{"alerts on several rollups, each its own topic", nil, map[int]string{
			1: "{name: b, from: a, window: {type: tumbling, size: 1m}, output: {topic: out-b}, alerts: {rules: [{name: slow, kind: threshold, condition: 'p99 > 100'}]}}",
			2: "{name: c, key: [customer], window: {type: tumbling, size: 5m}, aggregates: [{name: n, op: count}], output: {topic: out-c}, alerts: {rules: [{name: quiet, kind: absence, for: 10m}]}}",
		}},
		{"one rollup", nil, map[int]string{1: "-", 2: "-"}},
		{"same key, several rollups", nil, map[int]string{2: "{name: c, key: [endpoint], window: {type: session, gap: 5m}, aggregates: [{name: n, op: count}], output: {topic: out-c}}"}},
		{"late and dead letters shared", []string{"late_topic: rejects", "dead_letter_topic: rejects"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := rollupsWith(tc.extra, tc.repl)
			if len(tc.extra) > 0 && strings.HasPrefix(tc.extra[0], "source:") {
				src = strings.Replace(src, "source: {topics: [in]}\n", "", 1)
			}
			s, err := Parse([]byte(src))
			if err != nil {
				t.Fatalf("%v\nspec:\n%s", err, src)
			}
			for _, rs := range s.RollupSpecs() {
				if err := rs.Validate(); err != nil {
					t.Errorf("rollup %s: %v", rs.RollupName, err)
				}
			}
		})
	}
}

// Every problem of every rollup is reported at once, each with its line.
func TestRollupsValidateReportsEverythingWithLines(t *testing.T) {
	_, err := Parse([]byte(`app: demo
source: {topics: [in]}
key: [endpoint]
rollups:
  - name: fine
    key: [endpoint]
    window:
      type: tumbling
      size: 10s
    aggregates: [{name: n, op: count}]
    output: {topic: out-fine}
  - name: coarse
    from: fine
    window:
      type: tumbling
      size: 25s
      grace: 10s
    output: {topic: out-coarse}
  - key: [customer]
    window: {type: tumbling, size: 1m}
    aggregates: [{name: n, op: count}]
    output: {topic: out-fine}
  - name: later
    from: nowhere
    window: {type: tumbling, size: 1m}
    output: {topic: out-later}
`))
	type pos struct {
		field string
		line  int
	}
	var got []pos
	for _, fe := range FieldErrors(err) {
		got = append(got, pos{fe.Field, fe.Line})
	}
	want := []pos{
		{"key", 3},
		{"rollups[1].window.size", 16},
		{"rollups[1].window.grace", 17},
		{"rollups[2].name", 19}, // missing: the line of the rollup
		{"rollups[3].from", 24},
		{"rollups[2].output.topic", 22},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %v\nwant %v\nerr: %v", got, want, err)
	}
}

// A multi-rollup Spec built in Go: SetDefaults fills each rollup's
// defaults, Validate checks it without lines.
func TestRollupsGoSpec(t *testing.T) {
	s := &Spec{
		App:    "demo",
		Source: Source{Topics: []string{"in"}},
		Rollups: []Rollup{
			{Name: "fine", Key: []string{"k"}, Window: Window{Type: WindowTumbling, Size: 10 * time.Second},
				Aggregates: []Aggregate{{Name: "p", Op: "p95", Field: "v"}}, Output: Output{Topic: "o1"}},
			{Name: "coarse", From: "fine", Window: Window{Type: WindowTumbling, Size: time.Minute}, Output: Output{Topic: "o2"},
				Alerts: &Alerts{Rules: []AlertRule{{Name: "high", Kind: AlertThreshold, Condition: "p > 3"}}}},
		},
	}
	s.SetDefaults()
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	r := s.Rollups[1]
	if r.Store != "coarse" || r.Emit != EmitClose || r.Output.Format != FormatJSON || r.Alerts.Topic != "demo-coarse-alerts" || r.Alerts.Rules[0].Value != "p" {
		t.Errorf("defaults of the chained rollup: %+v %+v", r, r.Alerts)
	}
	if a := s.Rollups[0].Aggregates[0]; a.Op != AggQuantile || a.Quantile != 0.95 {
		t.Errorf("p95 = %+v", a)
	}
	s.Rollups[1].Window.Grace = time.Second
	fes := FieldErrors(s.Validate())
	if len(fes) != 1 || fes[0].Field != "rollups[1].window.grace" || fes[0].Line != 0 {
		t.Errorf("grace on a chained rollup: %v", fes)
	}
}

// Topics lists every rollup's topics: each repartition topic once, every
// changelog, output and alerts topic, the late and dead-letter topics once.
func TestRollupsTopics(t *testing.T) {
	s, err := Parse([]byte(rollupsWith(nil, map[int]string{
		1: "{name: b, from: a, window: {type: tumbling, size: 1m}, output: {topic: out-b}, alerts: {rules: [{name: slow, kind: threshold, condition: 'p99 > 100'}]}}",
		3: "{name: d, key: [endpoint], window: {type: tumbling, size: 1h}, aggregates: [{name: n, op: count}], output: {topic: out-d}, store: hourly}",
	})))
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		Name     string
		Roles    []string
		Internal bool
	}
	var got []row
	for _, ti := range s.Topics(4) {
		got = append(got, row{ti.Name, ti.Roles, ti.Internal})
		if ti.Partitions != 4 || ti.Purpose == "" {
			t.Errorf("%s: %d partitions, purpose %q", ti.Name, ti.Partitions, ti.Purpose)
		}
	}
	want := []row{
		{"demo-repartition", []string{"repartition"}, true}, // a, b (chained) and d
		{"demo-c-repartition", []string{"repartition"}, true},
		{"demo-a-changelog", []string{"changelog"}, true},
		{"demo-b-changelog", []string{"changelog"}, true},
		{"demo-c-changelog", []string{"changelog"}, true},
		{"demo-hourly-changelog", []string{"changelog"}, true},
		{"out-a", []string{"output"}, false},
		{"out-b", []string{"output"}, false},
		{"out-c", []string{"output"}, false},
		{"out-d", []string{"output"}, false},
		{"demo-late", []string{"late"}, false},
		{"demo-dlq", []string{"dead-letter"}, false},
		{"demo-b-alerts", []string{"alerts"}, false},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Topics:\n got %+v\nwant %+v", got, want)
	}
	// Every topic of every rollup's own spec is among the pipeline's,
	// with the same settings.
	all := make(map[string]TopicInfo)
	for _, ti := range s.Topics(4) {
		all[ti.Name] = ti
	}
	for _, rs := range s.RollupSpecs() {
		for _, ti := range rs.Topics(4) {
			p, ok := all[ti.Name]
			if !ok {
				t.Errorf("rollup %s: topic %s is not in the pipeline's Topics", rs.RollupName, ti.Name)
				continue
			}
			if !reflect.DeepEqual(p.Configs, ti.Configs) || p.Internal != ti.Internal || p.CarriesInput != ti.CarriesInput {
				t.Errorf("rollup %s: topic %s has other settings in the pipeline's Topics: %+v, %+v", rs.RollupName, ti.Name, p, ti)
			}
		}
	}
	var internal []string
	for _, ti := range s.InternalTopics(4) {
		internal = append(internal, ti.Name)
	}
	if want := []string{"demo-repartition", "demo-c-repartition", "demo-a-changelog", "demo-b-changelog", "demo-c-changelog", "demo-hourly-changelog"}; !slices.Equal(internal, want) {
		t.Errorf("InternalTopics = %q, want %q", internal, want)
	}

	// Keyed by the group key: no repartition topic at all.
	src := strings.Replace(rollupsWith([]string{"source: {topics: [in], keyed_by_group_key: true}"}, map[int]string{2: "-"}), "source: {topics: [in]}\n", "", 1)
	s, err = Parse([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, ti := range s.Topics(0) {
		names = append(names, ti.Name)
	}
	if want := []string{"demo-a-changelog", "demo-b-changelog", "out-a", "out-b", "demo-late", "demo-dlq"}; !slices.Equal(names, want) {
		t.Errorf("Topics keyed by group key = %q, want %q", names, want)
	}
}

// Compile on the pipeline's spec checks every rollup that reads the source
// against the record schema.
func TestRollupsCompile(t *testing.T) {
	s, err := Parse([]byte(rollupsWith(nil, map[int]string{
		2: "{name: c, key: [customer], window: {type: tumbling, size: 5m}, aggregates: [{name: n, op: count, where: 'status >= 500'}, {name: s, op: sum, field: endpoint}], output: {topic: out-c}}",
	})))
	if err != nil {
		t.Fatal(err)
	}
	fields := map[string]FieldType{"ts": FieldInt, "endpoint": FieldString, "latency_ms": FieldFloat, "status": FieldString}
	_, err = s.Compile(fields)
	var got []string
	for _, fe := range FieldErrors(err) {
		got = append(got, fe.Field)
	}
	want := []string{"rollups[2].aggregates[0].where", "rollups[2].key[0]", "rollups[2].aggregates[1].field"}
	if !slices.Equal(got, want) {
		t.Errorf("Compile errors on %q, want %q:\n%v", got, want, err)
	}
}

// Describe says what the rollups share and what each has: checked on the
// golden file's spec, words that must be there.
func TestDescribeRollups(t *testing.T) {
	s := mustParseFile(t, filepath.Join("testdata", "describe", "rollups.yaml"))
	out := Describe(s, 6)
	got := strings.Join(strings.Fields(out), " ")
	for _, want := range []string{
		"Steps, once per record, for all rollups (the source is read and decoded once)",
		`by [endpoint] through topic "request-rollups-repartition", for rollups "endpoint_10s" and "endpoint_1m" (chained from "endpoint_10s")`,
		`by [customer] through topic "request-rollups-customer_5m-repartition", for rollup "customer_5m"`,
		`Rollup "endpoint_1m": reads the final results of rollup "endpoint_10s"`,
		"never an average of percentiles",
		"when the stream time of \"endpoint_10s\" reaches 12:01:05 (the window's end plus the 5s grace of \"endpoint_10s\")",
		`Alerts, to topic request-rollups-endpoint_1m-alerts`,
		`backed by the changelog topic "request-rollups-customer_5m-changelog"`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("Describe does not say %q:\n%s", want, out)
		}
	}
	for _, l := range strings.Split(out, "\n") {
		if len(l) > describeWidth && !strings.Contains(l, " delete ") && !strings.Contains(l, " compact ") && !strings.Contains(l, "PURPOSE") &&
			!strings.HasPrefix(l, "Alerts, to topic") {
			t.Errorf("line longer than %d: %q", describeWidth, l)
		}
	}
}

// A chain of chains: the coarsest rollup's windows close by the stream
// time of the rollup at the start of the chain, minus its grace.
func TestDescribeChainOfChains(t *testing.T) {
	s, err := Parse([]byte(rollupsWith(nil, map[int]string{3: "{name: d, from: b, window: {type: tumbling, size: 1h}, output: {topic: out-d}}"})))
	if err != nil {
		t.Fatal(err)
	}
	out := Describe(s, 0)
	got := strings.Join(strings.Fields(out), " ")
	for _, want := range []string{
		`Rollup "d": reads the final results of rollup "b"`,
		`(the stream time of rollup "a" minus its grace of 2s)`,
		`a record for 12:00:59 counts in window [12:00:50, 12:01:00) of rollup "a"; its final result is merged (through rollup "b") into window [12:00:00, 13:00:00) of this rollup`,
		`when the stream time of "a" reaches 13:00:02`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("Describe does not say %q:\n%s", want, out)
		}
	}
}

// Unknown and misplaced keys in a rollup are named with their path and
// line, like the single form's.
func TestRollupsUnknownKeys(t *testing.T) {
	for _, tc := range []struct {
		spec, field, text string
		line              int
	}{
		{rollupsWith(nil, map[int]string{2: "{name: c, key: [customer], windw: {type: tumbling, size: 5m}, aggregates: [{name: n, op: count}], output: {topic: out-c}}"}),
			"rollups[2].windw", `did you mean "window"?`, 8},
		{rollupsWith(nil, map[int]string{1: "{name: b, from: a, window: {type: tumbling, size: 1m, grce: 1s}, output: {topic: out-b}}"}),
			"rollups[1].window.grce", `did you mean "grace"?`, 7},
		{rollupsWith([]string{"from: a"}, nil), "from", `"from" belongs under "rollups"`, 5},
		{rollupsWith(nil, map[int]string{2: "{name: c, key: [customer], window: {type: tumbling, size: 5m}, aggregates: [{name: n, op: count}], output: {topic: out-c}, filter: 'x > 1'}"}),
			"rollups[2].filter", `"filter" belongs at the top level`, 8},
		{rollupsWith(nil, map[int]string{2: "{name: c, key: [customer], window: {type: tumbling, size: 5}, aggregates: [{name: n, op: count}], output: {topic: out-c}}"}),
			"rollups[2].window.size", "5 has no unit", 8},
	} {
		_, err := Parse([]byte(tc.spec))
		fes := FieldErrors(err)
		if len(fes) != 1 || fes[0].Field != tc.field || fes[0].Line != tc.line || !strings.Contains(fes[0].Error(), tc.text) {
			t.Errorf("want one error on %s, line %d, saying %q; got:\n%v\nspec:\n%s", tc.field, tc.line, tc.text, err, tc.spec)
		}
	}
}
