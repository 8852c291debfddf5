package topology

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func mustParseFile(t *testing.T, path string) *Spec {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Parse(data)
	if err != nil {
		t.Fatalf("Parse(%s): %v", path, err)
	}
	return s
}

func TestParseTumblingWithDefaults(t *testing.T) {
	got := mustParseFile(t, filepath.Join("testdata", "describe", "tumbling.yaml"))
	want := &Spec{
		App:    "checkout-latency",
		Source: Source{Topics: []string{"requests"}, Format: "json"},
		Time:   Time{Field: "ts", MaxFuture: time.Hour},
		Filter: `endpoint != "/health"`,
		Key:    []string{"endpoint"},
		Window: Window{Type: "tumbling", Size: time.Minute, Grace: 30 * time.Second},
		Aggregates: []Aggregate{
			{Name: "requests", Op: "count"},
			{Name: "errors", Op: "count", Where: "status >= 500"},
			{Name: "p99_latency_ms", Op: "quantile", Quantile: 0.99, Field: "latency_ms"},
		},
		Emit:            "close",
		Output:          Output{Topic: "checkout-latency-per-minute", Format: "json"},
		Store:           "windows",
		LateTopic:       "checkout-latency-late",
		DeadLetterTopic: "checkout-latency-dlq",
		Processing:      "at_least_once",
		CommitInterval:  time.Second,
		IdleTimeout:     10 * time.Second,
		MaxWait:         2 * time.Minute,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Parse:\n got %+v\nwant %+v", got, want)
	}
}

func TestParseHoppingExplicitValues(t *testing.T) {
	s := mustParseFile(t, filepath.Join("testdata", "describe", "hopping.yaml"))
	if s.Window != (Window{Type: WindowHopping, Size: 5 * time.Minute, Advance: time.Minute, Grace: time.Minute}) {
		t.Errorf("window = %+v", s.Window)
	}
	if !s.Source.KeyedByGroupKey || s.Source.Format != FormatAvro || s.Source.Subject != "requests-value" {
		t.Errorf("source = %+v", s.Source)
	}
	if s.Emit != EmitUpdate || s.Processing != ExactlyOnce || s.CommitInterval != 500*time.Millisecond ||
		s.IdleTimeout != 30*time.Second || s.Output.Format != FormatAvro {
		t.Errorf("explicit values not kept: %+v", s)
	}
	if a := s.Aggregates[2]; a.Op != AggQuantile || a.Quantile != 0.999 {
		t.Errorf("p99.9 parsed as %+v", a)
	}
	if s.NeedsRepartition() {
		t.Error("keyed_by_group_key: true still needs a repartition")
	}
}

func TestParseSession(t *testing.T) {
	s := mustParseFile(t, filepath.Join("testdata", "describe", "session.yaml"))
	if s.Window != (Window{Type: WindowSession, Gap: 5 * time.Minute}) {
		t.Errorf("window = %+v", s.Window)
	}
	if s.Store != "sessions" || s.LateTopic != "user-sessions-rejects" || s.DeadLetterTopic != "user-sessions-rejects" {
		t.Errorf("names = %q %q %q", s.Store, s.LateTopic, s.DeadLetterTopic)
	}
	if s.Time.MaxFuture != 10*time.Minute {
		t.Errorf("max_future = %v", s.Time.MaxFuture)
	}
}

// minimal is the smallest valid spec; tests append to it.
const minimal = `app: demo
source: {topics: [in]}
key: [k]
window: {type: tumbling, size: 1m}
aggregates: [{name: n, op: count}]
output: {topic: out}
`

func TestParseUnknownKey(t *testing.T) {
	for _, tc := range []struct {
		name, yaml  string
		field       string
		line        int
		fixContains string
	}{
		{"misspelt nested", strings.Replace(minimal, "{type: tumbling, size: 1m}", "\n  type: tumbling\n  sise: 1m", 1),
			"window.sise", 6, `did you mean "size"?`},
		{"misspelt top level", minimal + "procesing: exactly_once\n", "procesing", 7, `did you mean "processing"?`},
		{"misplaced", minimal + "grace: 30s\n", "grace", 7, `"grace" belongs under "window"`},
		{"unknown anywhere", minimal + "output_format: avro\n", "output_format", 7, "the top-level keys are:"},
		{"in a list element", strings.Replace(minimal, "{name: n, op: count}", "{name: n, op: count, feild: x}", 1),
			"aggregates[0].feild", 5, `did you mean "field"?`},
		{"format at top level", minimal + "format: avro\n", "format", 7, `"format" belongs under "source" or "output"`},
		// topic is a key of output and alerts, but under source the
		// closest key of the same section is the better hint.
		{"source.topic", strings.Replace(minimal, "source: {topics: [in]}", "source:\n  topics: [in]\n  topic: in", 1),
			"source.topic", 4, `did you mean "topics"?`},
		{"output.topics", strings.Replace(minimal, "output: {topic: out}", "output:\n  topic: out\n  topics: [out]", 1),
			"output.topics", 8, `did you mean "topic"?`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml))
			fes := FieldErrors(err)
			if len(fes) != 1 {
				t.Fatalf("want one FieldError, got %v", err)
			}
			fe := fes[0]
			if fe.Field != tc.field || fe.Line != tc.line || fe.Problem != "unknown key" || !strings.Contains(fe.Fix, tc.fixContains) {
				t.Errorf("got %#v, want field %q line %d fix containing %q", fe, tc.field, tc.line, tc.fixContains)
			}
			key := tc.field[strings.LastIndexAny(tc.field, ".")+1:]
			if msg := err.Error(); !strings.Contains(msg, key) || !strings.Contains(msg, "line ") {
				t.Errorf("message %q does not name the key and its line", msg)
			}
		})
	}
}

func TestParseReportsAllKeyErrorsAtOnce(t *testing.T) {
	_, err := Parse([]byte(minimal + "procesing: exactly_once\nidle: 5s\ncommit_interval: 5\n"))
	fes := FieldErrors(err)
	var fields []string
	for _, fe := range fes {
		fields = append(fields, fe.Field)
	}
	if want := []string{"procesing", "idle", "commit_interval"}; !reflect.DeepEqual(fields, want) {
		t.Errorf("fields = %q, want %q (err: %v)", fields, want, err)
	}
}

func TestParseDurations(t *testing.T) {
	for _, tc := range []struct {
		value string
		want  time.Duration
		fix   string // "" if valid
	}{
		{"10s", 10 * time.Second, ""},
		{"1m30s", 90 * time.Second, ""},
		{"500ms", 500 * time.Millisecond, ""},
		{"2h", 2 * time.Hour, ""},
		{`"0s"`, 0, ""},
		{"10", 0, `write e.g. "10s" for 10 seconds or "10m" for 10 minutes`},
		{"0", 0, `write "0s"`},
		{"1.5", 0, `write e.g. "1.5s"`},
		{"1d", 0, `"24h"`},
		{"ten seconds", 0, "write a number and a unit"},
		{"[1s]", 0, `write e.g. "10s"`},
	} {
		t.Run(tc.value, func(t *testing.T) {
			s, err := Parse([]byte(strings.Replace(minimal, "size: 1m}", "size: 1m, grace: "+tc.value+"}", 1)))
			if tc.fix == "" {
				if err != nil {
					t.Fatal(err)
				}
				if s.Window.Grace != tc.want {
					t.Errorf("grace = %v, want %v", s.Window.Grace, tc.want)
				}
				return
			}
			fes := FieldErrors(err)
			if len(fes) != 1 || fes[0].Field != "window.grace" || fes[0].Line != 4 || !strings.Contains(fes[0].Fix, tc.fix) {
				t.Errorf("got %v, want an error on window.grace (line 4) with fix containing %q", err, tc.fix)
			}
		})
	}
}

func TestParseShapes(t *testing.T) {
	for _, tc := range []struct {
		name, yaml, field, problem string
	}{
		{"topics not a list", strings.Replace(minimal, "[in]", "in", 1), "source.topics", "must be a list"},
		{"window not a mapping", strings.Replace(minimal, "{type: tumbling, size: 1m}", "tumbling", 1), "window", "must be a mapping"},
		{"app a list", strings.Replace(minimal, "app: demo", "app: [demo]", 1), "app", "must be a single value"},
		{"bool", strings.Replace(minimal, "{topics: [in]}", "{topics: [in], keyed_by_group_key: yes}", 1), "source.keyed_by_group_key", "must be true or false"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml))
			fes := FieldErrors(err)
			if len(fes) == 0 || fes[0].Field != tc.field || !strings.Contains(fes[0].Problem, tc.problem) {
				t.Errorf("got %v, want %s: %s", err, tc.field, tc.problem)
			}
		})
	}
}

func TestParseWholeFileErrors(t *testing.T) {
	for _, tc := range []struct{ name, yaml, problem string }{
		{"empty", "", "empty"},
		{"comments only", "# nothing\n", "empty"},
		{"not a mapping", "- app: x\n", "must be a mapping"},
		{"syntax", "app: [x\n", "not valid YAML"},
		{"two documents", minimal + "---\n" + minimal, "second YAML document"},
		{"duplicate key", minimal + "app: other\n", "line 7: app: is set twice (first on line 1)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml))
			if err == nil || !strings.Contains(err.Error(), tc.problem) {
				t.Errorf("err = %v, want it to contain %q", err, tc.problem)
			}
		})
	}
}

func TestParseAnchorsAndMerges(t *testing.T) {
	s, err := Parse([]byte(`app: demo
source: {topics: [in]}
key: [k]
window: {type: tumbling, size: 1m}
base: &lat {op: p99, field: latency_ms}
aggregates: [{name: n, op: count}]
output: {topic: out}
`))
	if err == nil {
		t.Fatalf("unknown key base accepted: %+v", s)
	}
	s, err = Parse([]byte(`app: demo
source: {topics: [in]}
key: [k]
window: &w {type: tumbling, size: 1m}
aggregates:
  - &lat {name: p99_latency, op: p99, field: latency_ms}
  - {<<: *lat, name: p50_latency, op: p50}
output: {topic: out}
`))
	if err != nil {
		t.Fatal(err)
	}
	if a := s.Aggregates[1]; a.Name != "p50_latency" || a.Quantile != 0.5 || a.Field != "latency_ms" {
		t.Errorf("merged aggregate = %+v", a)
	}
}

func TestExplicitZeroIsNotReplacedByDefault(t *testing.T) {
	_, err := Parse([]byte(minimal + "idle_timeout: 0s\ncommit_interval: 0s\ntime: {max_future: 0s}\nemit: \"\"\n"))
	var fields []string
	for _, fe := range FieldErrors(err) {
		fields = append(fields, fe.Field)
	}
	want := []string{"time.max_future", "emit", "commit_interval", "idle_timeout"}
	if !reflect.DeepEqual(fields, want) {
		t.Errorf("fields = %q, want %q", fields, want)
	}
}

func TestSetDefaults(t *testing.T) {
	s := &Spec{App: "a", Aggregates: []Aggregate{{Name: "x", Op: "p95", Field: "f"}, {Name: "y", Op: "p100", Field: "f"}}}
	s.SetDefaults()
	if s.Emit != EmitClose || s.Store != DefaultStore || s.LateTopic != "a-late" || s.DeadLetterTopic != "a-dlq" ||
		s.Processing != AtLeastOnce || s.CommitInterval != time.Second || s.IdleTimeout != 10*time.Second ||
		s.Time.MaxFuture != time.Hour || s.Source.Format != FormatJSON || s.Output.Format != FormatJSON {
		t.Errorf("defaults not filled: %+v", s)
	}
	if s.Aggregates[0].Op != AggQuantile || s.Aggregates[0].Quantile != 0.95 {
		t.Errorf("p95 -> %+v", s.Aggregates[0])
	}
	if s.Aggregates[1].Op != "p100" {
		t.Errorf("invalid percentile rewritten: %+v", s.Aggregates[1])
	}
}

func TestParsePercentile(t *testing.T) {
	for _, tc := range []struct {
		op   string
		want float64
		ok   bool
	}{
		{"p50", 0.5, true},
		{"p95", 0.95, true},
		{"p99", 0.99, true},
		{"p99.9", 0.999, true},
		{"p99.99", 0.9999, true},
		{"p1", 0.01, true},
		{"p5", 0.05, true},
		{"p0.1", 0.001, true},
		{"p75.5", 0.755, true},
		{"p0", 0, false},
		{"p0.0", 0, false},
		{"p100", 0, false},
		{"p100.0", 0, false},
		{"p101", 0, false},
		{"p", 0, false},
		{"p99.", 0, false},
		{"p.9", 0, false},
		{"p-1", 0, false},
		{"P99", 0, false},
		{"99", 0, false},
		{"mean", 0, false},
	} {
		q, ok := ParsePercentile(tc.op)
		if q != tc.want || ok != tc.ok {
			t.Errorf("ParsePercentile(%q) = %v, %v; want %v, %v", tc.op, q, ok, tc.want, tc.ok)
		}
		if ok {
			if name := PercentileName(q); name != tc.op {
				t.Errorf("PercentileName(%v) = %q, want %q", q, name, tc.op)
			}
		}
	}
}
