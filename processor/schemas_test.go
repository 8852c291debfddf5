package processor

// Tests of the Avro binding without Kafka: a fake registry at the registry
// boundary (schema.Registry) that can be switched off.

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eddy-streams/eddy/schema"
	"github.com/eddy-streams/eddy/topology"
)

type fakeRegistry struct {
	byID  map[int]*schema.Schema
	down  atomic.Bool
	calls atomic.Int64
}

var errDown = &schema.RegistryError{Op: "test", Class: schema.ErrRegistryUnavailable}

func (f *fakeRegistry) get(id int) (*schema.Schema, error) {
	f.calls.Add(1)
	if f.down.Load() {
		return nil, errDown
	}
	if s, ok := f.byID[id]; ok {
		return s, nil
	}
	return nil, &schema.RegistryError{Op: "test", Class: schema.ErrUnknownSchema}
}

func (f *fakeRegistry) GetByID(_ context.Context, id int) (*schema.Schema, error) { return f.get(id) }
func (f *fakeRegistry) Register(context.Context, string, string) (int, error)     { return 0, errDown }
func (f *fakeRegistry) Lookup(_ context.Context, subject, text string) (*schema.Schema, error) {
	for _, s := range f.byID {
		if s.Subject == subject && s.Text == text {
			return f.get(s.ID)
		}
	}
	return nil, &schema.RegistryError{Op: "test", Class: schema.ErrUnknownSchema}
}
func (f *fakeRegistry) Latest(_ context.Context, subject string) (*schema.Schema, error) {
	for _, s := range f.byID {
		if s.Subject == subject {
			return f.get(s.ID)
		}
	}
	return nil, &schema.RegistryError{Op: "test", Class: schema.ErrUnknownSubject}
}
func (f *fakeRegistry) Compatible(context.Context, string, string) (bool, error) { return true, nil }

const testRequestSchema = `{"type":"record","name":"R","fields":[
{"name":"ts","type":{"type":"long","logicalType":"timestamp-millis"}},
{"name":"service","type":"string"},
{"name":"tags","type":{"type":"array","items":"string"}},
{"name":"latency_ms","type":"int"}]}`

func avroPipeline(t *testing.T, extra string) (*pipeline, *fakeRegistry, error) {
	t.Helper()
	spec, err := topology.Parse([]byte(`app: a
source: {topics: [in], format: avro, subject: in-value}
time: {field: ts}
key: [service]
window: {type: tumbling, size: 10s}
aggregates:
  - {name: n, op: count, where: "latency_ms > 100"}
` + extra + `
output: {topic: out}
`))
	if err != nil {
		t.Fatal(err)
	}
	p, err := newPipeline(spec)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := schema.ParseSchema(testRequestSchema)
	if err != nil {
		t.Fatal(err)
	}
	reg := &fakeRegistry{byID: map[int]*schema.Schema{7: {ID: 7, Subject: "in-value", Version: 1, Text: testRequestSchema, Avro: parsed}}}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	return p, reg, p.bindSchemas(context.Background(), reg, log, newMetrics(nil))
}

func TestAvroStartupCheck(t *testing.T) {
	_, _, err := avroPipeline(t, `  - {name: s, op: sum, field: servce}
  - {name: m, op: max, field: tags}
  - {name: d, op: distinct, field: service}`)
	if err == nil {
		t.Fatal("a pipeline naming a missing field and aggregating an array started")
	}
	for _, want := range []string{`subject "in-value" version 1 (schema id 7)`, `field "servce" is not in the record schema`,
		`did you mean "service"?`, `aggregates[2].field: field "tags" is Avro array, but max needs a number`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if _, _, err := avroPipeline(t, ""); err != nil {
		t.Fatalf("a fitting pipeline: %v", err)
	}
}

// TestAvroDecodeClassesAndOutage: bad records get their class; an outage
// is undecided, never a class; the aggregation stage decodes a record the
// repartition stage decoded without asking the registry.
func TestAvroDecodeClassesAndOutage(t *testing.T) {
	p, reg, err := avroPipeline(t, "")
	if err != nil {
		t.Fatal(err)
	}
	enc, err := schema.NewEncoderFor(reg.byID[7])
	if err != nil {
		t.Fatal(err)
	}
	good, err := enc.Encode(map[string]any{"ts": time.UnixMilli(1000), "service": "s", "tags": []any{}, "latency_ms": 150})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	now := time.UnixMilli(2000)

	reg.down.Store(true)
	if _, re, err := p.prepare(ctx, &kgo.Record{Value: good}, now); re != nil || !errors.Is(err, schema.ErrRegistryUnavailable) {
		t.Fatalf("registry down: record error %v, undecided %v; want undecided only", re, err)
	}
	reg.down.Store(false)
	ev, re, err := p.prepare(ctx, &kgo.Record{Value: good}, now)
	if re != nil || err != nil || ev.key != `["s"]` || ev.ts != 1000 {
		t.Fatalf("good record: %+v %v %v", ev, re, err)
	}

	// The repartition record is the same bytes: decoding it again must not
	// need the registry.
	reg.down.Store(true)
	before := reg.calls.Load()
	if _, re, err := p.decode(ctx, &kgo.Record{Value: good}); re != nil || err != nil {
		t.Fatalf("aggregation-stage decode with the registry down: %v %v", re, err)
	}
	if reg.calls.Load() != before {
		t.Errorf("aggregation-stage decode asked the registry")
	}
	reg.down.Store(false)

	for _, c := range []struct {
		value []byte
		class error
	}{
		{[]byte{0}, schema.ErrTooShort},
		{[]byte("{}}}}"), schema.ErrBadMagic},
		{schema.AppendWire(nil, 99, good[5:]), schema.ErrUnknownSchema},
		{schema.AppendWire(nil, 7, []byte{1}), schema.ErrAvroDecode},
	} {
		_, re, err := p.prepare(ctx, &kgo.Record{Value: c.value}, now)
		if err != nil || re == nil || re.Class != c.class {
			t.Errorf("%q: record error %v, undecided %v; want class %v", c.value, re, err, c.class)
		}
	}
}

// TestAvroDecodesOnlyWhatThePipelineReads: an Avro pipeline's decoder
// keeps the key, time, filter, where and aggregate fields and skips the
// rest; an expression reading $env keeps every field.
func TestAvroDecodesOnlyWhatThePipelineReads(t *testing.T) {
	parsed, err := schema.ParseSchema(testRequestSchema)
	if err != nil {
		t.Fatal(err)
	}
	body, err := avro.Marshal(parsed, map[string]any{"ts": time.UnixMilli(1_700_000_000_000), "service": "api", "tags": []string{"a"}, "latency_ms": 120})
	if err != nil {
		t.Fatal(err)
	}
	value := append([]byte{0, 0, 0, 0, 7}, body...)
	for _, tc := range []struct {
		extra string
		want  []string
	}{
		{"", []string{"latency_ms", "service", "ts"}},
		{"filter: 'service != \"x\"'\n", []string{"latency_ms", "service", "ts"}},
		{"  - {name: m, op: count, where: '\"tags\" in $env'}\n", []string{"latency_ms", "service", "tags", "ts"}},
	} {
		p, _, err := avroPipeline(t, tc.extra)
		if err != nil {
			t.Fatalf("%q: %v", tc.extra, err)
		}
		fields, err := p.dec.DecodeInto(context.Background(), value, nil)
		if err != nil {
			t.Fatal(err)
		}
		got := slices.Sorted(maps.Keys(fields))
		if !slices.Equal(got, tc.want) {
			t.Errorf("%q: decoded fields %v, want %v", tc.extra, got, tc.want)
		}
	}
}
