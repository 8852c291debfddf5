package schema

import (
	"context"
	"testing"
	"time"
)

// staticRegistry serves fixed schemas from memory, for benchmarks.
type staticRegistry struct{ byID map[int]*Schema }

func (r *staticRegistry) GetByID(_ context.Context, id int) (*Schema, error) {
	if s, ok := r.byID[id]; ok {
		return s, nil
	}
	return nil, &RegistryError{Op: "get", Class: ErrUnknownSchema}
}

func (r *staticRegistry) Register(_ context.Context, _, text string) (int, error) {
	for id, s := range r.byID {
		if s.Text == text {
			return id, nil
		}
	}
	s, err := ParseSchema(text)
	if err != nil {
		return 0, err
	}
	id := len(r.byID) + 1
	r.byID[id] = &Schema{ID: id, Text: text, Avro: s}
	return id, nil
}

func (r *staticRegistry) Lookup(_ context.Context, subject, text string) (*Schema, error) {
	for _, s := range r.byID {
		if s.Text == text {
			return s, nil
		}
	}
	return nil, &RegistryError{Op: "lookup", Class: ErrUnknownSchema}
}

func (r *staticRegistry) Latest(context.Context, string) (*Schema, error) {
	return nil, &RegistryError{Op: "latest", Class: ErrUnknownSubject}
}

func (r *staticRegistry) Compatible(context.Context, string, string) (bool, error) { return true, nil }

// requestEvent is a typical input record: about 150 bytes on the wire.
const requestEvent = `{"type":"record","name":"RequestEvent","namespace":"eddy.bench","fields":[
	{"name":"ts","type":{"type":"long","logicalType":"timestamp-millis"}},
	{"name":"request_id","type":"string"},
	{"name":"service","type":"string"},
	{"name":"endpoint","type":"string"},
	{"name":"method","type":{"type":"enum","name":"Method","symbols":["GET","POST","PUT","DELETE"]}},
	{"name":"status","type":"int"},
	{"name":"latency_ms","type":"double"},
	{"name":"bytes_in","type":"long"},
	{"name":"bytes_out","type":"long"},
	{"name":"customer","type":["null","string"],"default":null},
	{"name":"region","type":"string"},
	{"name":"user_agent","type":"string"}
]}`

func requestValue() map[string]any {
	return map[string]any{
		"ts":         time.UnixMilli(1_700_000_000_123),
		"request_id": "4f9c1d2e-8a7b-4c3d-9e0f-1a2b3c4d5e6f",
		"service":    "checkout",
		"endpoint":   "/api/v1/checkout/confirm",
		"method":     "POST",
		"status":     200,
		"latency_ms": 123.456,
		"bytes_in":   int64(2048),
		"bytes_out":  int64(16384),
		"customer":   "acme-corporation",
		"region":     "eu-west-1",
		"user_agent": "Mozilla/5.0 (X11; Linux x86_64)",
	}
}

func benchSetup(b *testing.B) (*Encoder, *Decoder, []byte) {
	reg := &staticRegistry{byID: map[int]*Schema{}}
	ctx := context.Background()
	enc, err := NewEncoder(ctx, reg, "requests-value", requestEvent)
	if err != nil {
		b.Fatal(err)
	}
	rec, err := enc.Encode(requestValue())
	if err != nil {
		b.Fatal(err)
	}
	dec := NewDecoder(reg, PinSubject("requests-value"))
	if _, err := dec.Decode(ctx, rec); err != nil {
		b.Fatal(err)
	}
	return enc, dec, rec
}

func BenchmarkDecode(b *testing.B) {
	_, dec, rec := benchSetup(b)
	ctx := context.Background()
	b.ReportMetric(float64(len(rec)), "record-bytes")
	b.SetBytes(int64(len(rec)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := dec.Decode(ctx, rec); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncode(b *testing.B) {
	enc, _, rec := benchSetup(b)
	v := requestValue()
	buf := make([]byte, 0, 256)
	b.SetBytes(int64(len(rec)))
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if buf, err = enc.Append(buf[:0], v); err != nil {
			b.Fatal(err)
		}
	}
}
