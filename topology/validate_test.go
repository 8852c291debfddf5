package topology

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

// baseBlocks is a valid spec, one top-level key per block.
var baseBlocks = []string{
	"app: demo",
	"source: {topics: [in]}",
	"key: [endpoint]",
	"window: {type: tumbling, size: 1m}",
	"aggregates: [{name: n, op: count}]",
	"output: {topic: out}",
}

// specWith returns the base spec with each block replacing the block of the
// same top-level key, or added at the end; "-key" removes a block.
func specWith(blocks ...string) string {
	out := append([]string(nil), baseBlocks...)
	keyOf := func(b string) string { k, _, _ := strings.Cut(b, ":"); return k }
	for _, b := range blocks {
		if k, ok := strings.CutPrefix(b, "-"); ok {
			for i := range out {
				if keyOf(out[i]) == k {
					out = append(out[:i], out[i+1:]...)
					break
				}
			}
			continue
		}
		replaced := false
		for i := range out {
			if keyOf(out[i]) == keyOf(b) {
				out[i], replaced = b, true
			}
		}
		if !replaced {
			out = append(out, b)
		}
	}
	return strings.Join(out, "\n") + "\n"
}

func TestBaseSpecIsValid(t *testing.T) {
	if _, err := Parse([]byte(specWith())); err != nil {
		t.Fatal(err)
	}
}

func TestValidateErrors(t *testing.T) {
	for _, tc := range []struct {
		yaml  string // block replacing the base block with the same key
		field string // the field of the only expected error
		text  string // a part of the error message
	}{
		{"-app", "app", "must be set"},
		{"app: my app", "app", `contains ' '`},
		{"app: ..", "app", "not allowed"},
		{"app: " + strings.Repeat("a", 240), "app", "too long"},
		{"-source", "source.topics", "at least one topic"},
		{"source: {topics: []}", "source.topics", "at least one topic"},
		{"source: {topics: [in, in]}", "source.topics[1]", "listed twice"},
		{"source: {topics: [in, 'bad/topic']}", "source.topics[1]", `contains '/'`},
		{"source: {topics: [in], format: xml}", "source.format", `"xml" is not json or avro`},
		{"source: {topics: [in], subject: in-value}", "source.subject", "only used with format avro"},
		{"source: {topics: [demo-repartition]}", "source.topics[0]", "repartition topic"},
		{"time: {field: ' ts'}", "time.field", "spaces"},
		{"time: {max_future: -1h}", "time.max_future", "must be positive"},
		{"filter: 'status >>= 5'", "filter", `expression "status >>= 5": unexpected token`},
		{"filter: 'now() > 1'", "filter", "wall clock"},
		{"-key", "key", "at least one field"},
		{"key: ['']", "key[0]", "is empty"},
		{"key: [a, a]", "key[1]", "listed twice"},
		{"window: {size: 1m}", "window.type", "must be set"},
		{"window: {type: sliding, size: 1m}", "window.type", `"sliding" is not tumbling or hopping or session`},
		{"window: {type: tumbling}", "window.size", "must be set for a tumbling window"},
		{"window: {type: tumbling, size: -1m}", "window.size", "must be positive"},
		{"window: {type: tumbling, size: 1m, advance: 30s}", "window.advance", "not used by tumbling"},
		{"window: {type: tumbling, size: 1m, gap: 30s}", "window.gap", "not used by tumbling"},
		{"window: {type: tumbling, size: 1500us}", "window.size", "whole number of milliseconds"},
		{"window: {type: tumbling, size: 1m, grace: -1s}", "window.grace", "must not be negative"},
		{"window: {type: hopping, size: 1m}", "window.advance", "must be set for a hopping window"},
		{"window: {type: hopping, advance: 1m}", "window.size", "must be set for a hopping window"},
		{"window: {type: hopping, size: 1m, advance: 2m}", "window.advance", "must not be longer than window.size"},
		{"window: {type: hopping, size: 1m, advance: 30s, gap: 1s}", "window.gap", "not used by hopping"},
		{"window: {type: session}", "window.gap", "must be set for a session window"},
		{"window: {type: session, gap: 5m, size: 1m}", "window.size", "not used by session"},
		{"window: {type: session, gap: 5m, advance: 1m}", "window.advance", "not used by session"},
		{"-aggregates", "aggregates", "at least one"},
		{"aggregates: [{op: count}]", "aggregates[0].name", "must be set"},
		{"aggregates: [{name: 2xx, op: count}]", "aggregates[0].name", `write e.g. "_2xx"`},
		{"aggregates: [{name: p99-latency, op: count}]", "aggregates[0].name", `write e.g. "p99_latency"`},
		{"aggregates: [{name: n, op: count}, {name: n, op: count}]", "aggregates[1].name", "earlier aggregate"},
		{"aggregates: [{name: key, op: count}]", "aggregates[0].name", `"key" is taken`},
		{"aggregates: [{name: window_start, op: count}]", "aggregates[0].name", "is taken"},
		{"aggregates: [{name: window_end, op: count}]", "aggregates[0].name", "is taken"},
		{"aggregates: [{name: endpoint, op: count}]", "aggregates[0].name", "key field"},
		{"aggregates: [{name: n}]", "aggregates[0].op", "must be set"},
		{"aggregates: [{name: n, op: avg, field: x}]", "aggregates[0].op", `did you mean "mean"?`},
		{"aggregates: [{name: n, op: median, field: x}]", "aggregates[0].op", `did you mean "p50"?`},
		{"aggregates: [{name: n, op: P99, field: x}]", "aggregates[0].op", `did you mean "p99"?`},
		{"aggregates: [{name: n, op: p100, field: x}]", "aggregates[0].op", "strictly between p0 and p100"},
		{"aggregates: [{name: n, op: p0, field: x}]", "aggregates[0].op", "strictly between p0 and p100"},
		{"aggregates: [{name: n, op: quantile, field: x}]", "aggregates[0].op", `"op: p99"`},
		{"aggregates: [{name: n, op: sum}]", "aggregates[0].field", "must be set for op sum"},
		{"aggregates: [{name: n, op: distinct}]", "aggregates[0].field", "must be set for op distinct"},
		{"aggregates: [{name: n, op: p99.9}]", "aggregates[0].field", "must be set for op p99.9"},
		{"aggregates: [{name: n, op: count, field: x}]", "aggregates[0].field", "not used by count"},
		{"aggregates: [{name: n, op: count, where: 'status >'}]", "aggregates[0].where", `expression "status >"`},
		{"emit: always", "emit", `"always" is not close or update`},
		{"-output", "output.topic", "must be set"},
		{"output: {topic: in}", "output.topic", "also a source topic"},
		{"output: {topic: out, format: csv}", "output.format", `"csv" is not json or avro`},
		{"output: {topic: demo-windows-changelog}", "output.topic", "changelog topic"},
		{"output: {topic: demo-late}", "late_topic", `"demo-late" is also the output topic`},
		{"late_topic: in", "late_topic", "also a source topic"},
		{"late_topic: out", "late_topic", "also the output topic"},
		{"late_topic: 'a b'", "late_topic", `contains ' '`},
		{"late_topic: demo-repartition", "late_topic", "repartition topic"},
		{"dead_letter_topic: in", "dead_letter_topic", "also a source topic"},
		{"dead_letter_topic: out", "dead_letter_topic", "also the output topic"},
		{`dead_letter_topic: ""`, "dead_letter_topic", `default "demo-dlq"`},
		{"store: a/b", "store", `contains '/'`},
		{"store: " + strings.Repeat("s", 240), "app", "too long"},
		{"processing: exactly-once", "processing", `"exactly-once" is not at_least_once or exactly_once`},
		{"commit_interval: 5ms", "commit_interval", "at least 10ms"},
		{"idle_timeout: -1s", "idle_timeout", "must be positive"},
		{"standby_replicas: -1", "standby_replicas", "must be 0 to 9, not -1"},
		{"standby_replicas: 10", "standby_replicas", "must be 0 to 9, not 10"},
	} {
		t.Run(tc.yaml, func(t *testing.T) {
			_, err := Parse([]byte(specWith(tc.yaml)))
			fes := FieldErrors(err)
			if len(fes) != 1 {
				t.Fatalf("want one error on %s, got:\n%v", tc.field, err)
			}
			if fes[0].Field != tc.field || !strings.Contains(fes[0].Error(), tc.text) {
				t.Errorf("got %q\nwant field %s and text %q", fes[0].Error(), tc.field, tc.text)
			}
			if fes[0].Fix == "" && !strings.Contains(fes[0].Problem, "listed twice") {
				t.Errorf("no fix in %q", fes[0].Error())
			}
		})
	}
}

func TestValidateAccepts(t *testing.T) {
	for _, y := range []string{
		"window: {type: hopping, size: 1m, advance: 1m}",
		"window: {type: hopping, size: 5m, advance: 2m}",
		"window: {type: tumbling, size: 1m, grace: 0s}",
		"late_topic: rejects\ndead_letter_topic: rejects",
		"aggregates: [{name: _2xx, op: count, where: 'status < 300'}, {name: p50, op: p50, field: latency}]",
		"key: [user-agent, 'a.b']",
		"source: {topics: [in], format: avro, subject: in-value}",
		"app: " + strings.Repeat("a", 249-len("-windows-changelog")),
	} {
		if _, err := Parse([]byte(specWith(y))); err != nil {
			t.Errorf("%s: %v", y, err)
		}
	}
}

func TestValidateReportsEverythingWithLines(t *testing.T) {
	_, err := Parse([]byte(`app: demo
source: {topics: [in]}
key: [endpoint]
window:
  type: hopping
  size: 1m
  advance: 2m
aggregates:
  - {name: n, op: count}
  - name: n
    op: sum
output: {topic: in}
emit: sometimes
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
		{"window.advance", 7},
		{"aggregates[1].name", 10},
		{"aggregates[1].field", 10}, // missing: the line of the aggregate
		{"emit", 13},
		{"output.topic", 12},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %v\nwant %v\nerr: %v", got, want, err)
	}
	if !strings.Contains(err.Error(), "\n") {
		t.Error("the joined error should have one problem per line")
	}
}

func TestValidateGoSpec(t *testing.T) {
	s := &Spec{
		App:        "demo",
		Source:     Source{Topics: []string{"in"}},
		Key:        []string{"k"},
		Window:     Window{Type: WindowTumbling},
		Aggregates: []Aggregate{{Name: "n", Op: AggCount}},
		Output:     Output{Topic: "out"},
	}
	s.SetDefaults()
	err := s.Validate()
	if got, want := err.Error(), `window.size: must be set for a tumbling window; write e.g. "size: 10s"`; got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	var fe *FieldError
	if fes := FieldErrors(err); len(fes) != 1 || fes[0].Line != 0 {
		t.Errorf("FieldErrors = %v", fes)
	} else {
		fe = fes[0]
	}
	if fe == nil || fe.Field != "window.size" {
		t.Fatal("no FieldError for window.size")
	}
	s.Window.Size = time.Minute
	if err := s.Validate(); err != nil {
		t.Error(err)
	}
	// Validate does not fill defaults.
	s.Emit = ""
	if fes := FieldErrors(s.Validate()); len(fes) != 1 || fes[0].Field != "emit" {
		t.Errorf("empty emit: %v", fes)
	}
}

// keyed_by_group_key with several source topics is refused by Validate, so
// eddy describe rejects what eddy run rejects.
func TestValidateKeyedByGroupKeyOneTopic(t *testing.T) {
	s, err := Parse([]byte(strings.Replace(minimal, "{topics: [in]}", "{topics: [in, in2], keyed_by_group_key: true}", 1)))
	if err == nil {
		err = s.Validate()
	}
	if err == nil || !strings.Contains(err.Error(), "source.keyed_by_group_key") || !strings.Contains(err.Error(), "one source topic only") {
		t.Fatalf("keyed_by_group_key with two topics: %v, want a source.keyed_by_group_key error", err)
	}
	s, err = Parse([]byte(strings.Replace(minimal, "{topics: [in]}", "{topics: [in], keyed_by_group_key: true}", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Validate(); err != nil {
		t.Fatalf("keyed_by_group_key with one topic: %v", err)
	}
}
