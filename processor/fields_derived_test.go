package processor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eddy-streams/eddy/schema"
	"github.com/eddy-streams/eddy/topology"
)

// TestCarriedFieldsRoundTrip: the eddy.fields header gives back every
// derived and lookup field with its type, and a malformed header is an
// error, never a panic.
func TestCarriedFieldsRoundTrip(t *testing.T) {
	when := time.UnixMilli(1_700_000_000_123).UTC()
	in := map[string]any{
		"n": nil, "t": true, "f": false, "i": int64(-42), "x": 2.5, "s": "héllo", "e": "",
		"w": when, "obj": map[string]any{"a": 1.0}, "list": []any{"a", 2.0},
	}
	names := []string{"n", "t", "f", "i", "x", "s", "e", "w", "obj", "list", "absent"}
	b := encodeCarried(names, in)
	out := map[string]any{}
	if err := decodeCarried(b, out); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprint(in) // absent decodes as nil
	delete(out, "absent")
	if got := fmt.Sprint(out); got != want {
		t.Fatalf("got %s\nwant %s", got, want)
	}
	if v, ok := out["w"].(time.Time); !ok || !v.Equal(when) {
		t.Fatalf("time field: %#v", out["w"])
	}
	if _, ok := out["i"].(int64); !ok {
		t.Fatalf("int field decoded as %T", out["i"])
	}
	for i := 0; i < len(b); i++ {
		if err := decodeCarried(b[:i], map[string]any{}); !errors.Is(err, errCarried) {
			t.Fatalf("truncated to %d bytes: %v", i, err)
		}
	}
	if err := decodeCarried(append(b, 0), map[string]any{}); !errors.Is(err, errCarried) {
		t.Fatalf("trailing byte: %v", err)
	}
}

func derivedPipeline(t *testing.T, text string) *pipeline {
	t.Helper()
	spec, err := topology.Parse([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	p, err := newPipeline(spec)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestDerivedFieldsStatelessStep: derived fields are computed before the
// filter and the key, in order; a failing one dead-letters the record
// with class expression and its name; with a repartition, the source
// record carries them (eddy.fields) and the aggregation stage gets them
// back from the repartition record without evaluating anything.
func TestDerivedFieldsStatelessStep(t *testing.T) {
	p := derivedPipeline(t, `app: a
source: {topics: [in]}
time: {field: ts}
derived:
  - {name: status_class, expr: "int(status / 100)"}
  - {name: bucket, expr: 'status_class == 5 ? "error" : "ok"'}
  - {name: path, expr: 'split(url, "?")[0]'}
filter: 'path != "/health"'
key: [bucket, path]
window: {type: tumbling, size: 10s}
aggregates:
  - {name: n, op: count, where: "status_class >= 4"}
output: {topic: out}
`)
	now := time.UnixMilli(1_000_000)
	fields := map[string]any{"ts": 1000.0, "status": 503.0, "url": "/pay?x=1"}
	rec := &kgo.Record{Value: []byte("{}")}
	ev, re := p.prepareFields(fields, rec, now)
	if re != nil || ev.filtered || ev.key != `["error","/pay"]` {
		t.Fatalf("event %+v, error %v", ev, re)
	}
	if fields["status_class"] != int64(5) {
		t.Fatalf("status_class = %#v", fields["status_class"])
	}
	// The repartition record carries them: decoded again from the value
	// (here without them), the aggregation stage gets them back.
	again := map[string]any{"ts": 1000.0, "status": 503.0, "url": "/pay?x=1"}
	rev := repartitioned(again, &kgo.Record{Headers: rec.Headers, Key: []byte(ev.key)})
	for _, f := range []string{"status_class", "bucket", "path"} {
		if fmt.Sprint(rev.fields[f]) != fmt.Sprint(fields[f]) {
			t.Errorf("repartitioned %s = %#v, want %#v", f, rev.fields[f], fields[f])
		}
	}
	// The header is internal: not in the headers of a dead letter.
	if _, _, _, _, hs, _ := sourceOf(rec); slices.ContainsFunc(hs, func(h kgo.RecordHeader) bool { return h.Key == hdrFields }) {
		t.Error("sourceOf keeps eddy.fields")
	}
	// Filtered on a derived field.
	ev, re = p.prepareFields(map[string]any{"ts": 1000.0, "status": 200.0, "url": "/health?probe"}, &kgo.Record{}, now)
	if re != nil || !ev.filtered {
		t.Fatalf("health check: %+v %v", ev, re)
	}
	// A failing derived field: class expression, field = its name.
	_, re = p.prepareFields(map[string]any{"ts": 1000.0, "status": 200.0}, &kgo.Record{}, now)
	if re == nil || !errors.Is(re.Class, ErrExpression) || re.Field != "path" || !strings.Contains(re.Error(), `derived field "path"`) {
		t.Fatalf("missing url: %v", re)
	}
	_, re = p.prepareFields(map[string]any{"ts": 1000.0, "status": "x", "url": "/"}, &kgo.Record{}, now)
	if re == nil || re.Field != "status_class" {
		t.Fatalf("non-numeric status: %v", re)
	}
}

const derivedAvroSchema = `{"type":"record","name":"R","fields":[
{"name":"ts","type":{"type":"long","logicalType":"timestamp-millis"}},
{"name":"service","type":"string"},
{"name":"ua","type":"string"},
{"name":"status","type":"int"},
{"name":"latency_ms","type":"int"}]}`

func bindDerivedAvro(t *testing.T, derived, key, aggs string) (*pipeline, error) {
	t.Helper()
	p := derivedPipeline(t, `app: a
source: {topics: [in], format: avro, subject: in-value}
time: {field: ts}
derived:
`+derived+`key: [`+key+`]
window: {type: tumbling, size: 10s}
aggregates:
`+aggs+`output: {topic: out}
`)
	parsed, err := schema.ParseSchema(derivedAvroSchema)
	if err != nil {
		t.Fatal(err)
	}
	reg := &fakeRegistry{byID: map[int]*schema.Schema{7: {ID: 7, Subject: "in-value", Version: 1, Text: derivedAvroSchema, Avro: parsed}}}
	return p, p.bindSchemas(context.Background(), reg, slog.New(slog.NewTextHandler(io.Discard, nil)), newMetrics(nil))
}

// TestDerivedFieldsTypedAgainstSchema: with a known input schema, derived
// fields are typed, and a type error in one, or in a filter, key or
// aggregate that uses one, stops the pipeline at start-up naming it; the
// decoder projects the fields the derived expressions read.
func TestDerivedFieldsTypedAgainstSchema(t *testing.T) {
	p, err := bindDerivedAvro(t, `  - {name: status_class, expr: "int(status / 100)"}
  - {name: agent, expr: 'lower(split(ua, "/")[0])'}
`, "service, status_class", `  - {name: n, op: count, where: "status_class == 5"}
  - {name: top_agents, op: top_k, k: 3, field: agent}
`)
	if err != nil {
		t.Fatalf("a fitting pipeline: %v", err)
	}
	if got := p.compiled.Derived[0].Type(); got != topology.FieldInt {
		t.Errorf("status_class typed %v, want int", got)
	}
	if got := p.compiled.Derived[1].Type(); got != topology.FieldString {
		t.Errorf("agent typed %v, want string", got)
	}
	fields, all := p.inputFields()
	if all || !slices.Equal(fields, []string{"service", "status", "ts", "ua"}) {
		t.Errorf("decoded fields %v (all %v), want service, status, ts, ua", fields, all)
	}

	for _, c := range []struct{ derived, key, aggs, want string }{
		{`  - {name: d, expr: "service * 2"}
`, "service", "  - {name: n, op: count}\n", `derived[0].expr: expression "service * 2"`},
		{`  - {name: agent, expr: 'lower(ua)'}
`, "service", "  - {name: s, op: sum, field: agent}\n", `sum needs a number, and field "agent" is a string`},
		{`  - {name: agent, expr: 'lower(ua)'}
`, "service", "  - {name: n, op: count, where: 'agent > 5'}\n", `aggregates[0].where`},
		{`  - {name: service, expr: 'lower(ua)'}
`, "service", "  - {name: n, op: count}\n", `derived[0].name: "service" is already a field of the record schema`},
	} {
		_, err := bindDerivedAvro(t, c.derived, c.key, c.aggs)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want it to contain %q", c.derived, err, c.want)
		}
	}
}

// TestDerivedFieldsWithoutRepartition: when the source is already keyed by
// the grouping key, the aggregation task runs the stateless step itself:
// the derived fields are computed there and nothing is carried.
func TestDerivedFieldsWithoutRepartition(t *testing.T) {
	p := derivedPipeline(t, `app: a
source: {topics: [in], keyed_by_group_key: true}
derived:
  - {name: status_class, expr: "int(status / 100)"}
key: [status_class]
window: {type: tumbling, size: 10s}
aggregates:
  - {name: n, op: count}
output: {topic: out}
`)
	rec := &kgo.Record{Timestamp: time.UnixMilli(1000)}
	ev, re := p.prepareFields(map[string]any{"status": 404.0}, rec, time.UnixMilli(2000))
	if re != nil || ev.key != `["4"]` {
		t.Fatalf("event %+v, error %v", ev, re)
	}
	if len(rec.Headers) != 0 {
		t.Errorf("headers added without a repartition: %v", rec.Headers)
	}
}
