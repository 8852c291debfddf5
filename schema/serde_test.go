package schema

import (
	"context"
	"errors"
	"reflect"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hamba/avro/v2"
)

// allTypes has a field of every kind the Decoder normalises.
const allTypes = `{"type":"record","name":"All","namespace":"eddy.test","fields":[
	{"name":"i","type":"int"},
	{"name":"l","type":"long"},
	{"name":"f","type":"float"},
	{"name":"d","type":"double"},
	{"name":"s","type":"string"},
	{"name":"b","type":"boolean"},
	{"name":"ns_null","type":["null","string"],"default":null},
	{"name":"ns","type":["null","string"],"default":null},
	{"name":"ni","type":["null","int"],"default":null},
	{"name":"sl","type":["string","long"]},
	{"name":"e","type":{"type":"enum","name":"Method","symbols":["GET","POST"]}},
	{"name":"ts","type":{"type":"long","logicalType":"timestamp-millis"}},
	{"name":"nts","type":["null",{"type":"long","logicalType":"timestamp-millis"}],"default":null},
	{"name":"tsu","type":{"type":"long","logicalType":"timestamp-micros"}},
	{"name":"day","type":{"type":"int","logicalType":"date"}},
	{"name":"u","type":{"type":"string","logicalType":"uuid"}},
	{"name":"by","type":"bytes"},
	{"name":"arr","type":{"type":"array","items":"int"}},
	{"name":"m","type":{"type":"map","values":"float"}},
	{"name":"sub","type":{"type":"record","name":"Sub","fields":[{"name":"x","type":["null","int"]}]}}
]}`

func TestDecoderTypes(t *testing.T) {
	c := testCluster(t)
	base, _, _ := testServer(t, c)
	cl := testClient(t, base)
	ctx := context.Background()
	enc, err := NewEncoder(ctx, cl, "all-value", allTypes)
	if err != nil {
		t.Fatal(err)
	}
	ts := time.UnixMilli(1_700_000_000_123).UTC()
	in := map[string]any{
		"i": 7, "l": int64(1) << 40, "f": 1.5, "d": 2, "s": "x", "b": true,
		"ns": "y", "ni": 3, "sl": int64(9), "e": "POST",
		"ts": ts, "nts": ts, "tsu": ts, "day": time.Date(2024, 2, 29, 0, 0, 0, 0, time.UTC),
		"u": "0b8e0d44-3c7a-4b8a-9a5e-3b1f1a7f2c11", "by": []byte{1, 2},
		"arr": []any{1, 2}, "m": map[string]any{"k": float32(0.5)}, "sub": map[string]any{"x": 4},
	}
	b, err := enc.Encode(in)
	if err != nil {
		t.Fatal(err)
	}
	got, err := NewDecoder(cl).Decode(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"i": int64(7), "l": int64(1) << 40, "f": 1.5, "d": 2.0, "s": "x", "b": true,
		"ns_null": nil, "ns": "y", "ni": int64(3), "sl": int64(9), "e": "POST",
		"ts": ts, "nts": ts, "tsu": ts, "day": time.Date(2024, 2, 29, 0, 0, 0, 0, time.UTC),
		"u": "0b8e0d44-3c7a-4b8a-9a5e-3b1f1a7f2c11", "by": []byte{1, 2},
		"arr": []any{int64(1), int64(2)}, "m": map[string]any{"k": 0.5}, "sub": map[string]any{"x": int64(4)},
	}
	for k, w := range want {
		if g, ok := got[k]; !ok || !reflect.DeepEqual(g, w) {
			t.Errorf("%s = %#v (%T), want %#v (%T)", k, g, g, w, w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("got %d fields, want %d", len(got), len(want))
	}

	// The field kinds agree with the decoded types.
	s, err := cl.GetByID(ctx, enc.ID())
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]FieldType{}
	for k, ft := range Fields(s) {
		kinds[k] = ft
	}
	wantKinds := map[string]FieldType{
		"i": {KindInt, false, "int"}, "l": {KindInt, false, "long"}, "f": {KindFloat, false, "float"},
		"d": {KindFloat, false, "double"}, "s": {KindString, false, "string"}, "b": {KindBool, false, "boolean"},
		"ns_null": {KindString, true, "string"}, "ns": {KindString, true, "string"}, "ni": {KindInt, true, "int"},
		"sl": {KindOther, false, "union"}, "e": {KindString, false, "enum"},
		"ts": {KindTime, false, "long.timestamp-millis"}, "nts": {KindTime, true, "long.timestamp-millis"},
		"tsu": {KindTime, false, "long.timestamp-micros"}, "day": {KindTime, false, "int.date"},
		"u": {KindString, false, "string.uuid"}, "by": {KindOther, false, "bytes"},
		"arr": {KindOther, false, "array"}, "m": {KindOther, false, "map"}, "sub": {KindOther, false, "record"},
	}
	if !reflect.DeepEqual(kinds, wantKinds) {
		for k := range wantKinds {
			if kinds[k] != wantKinds[k] {
				t.Errorf("Fields[%s] = %+v, want %+v", k, kinds[k], wantKinds[k])
			}
		}
	}
	if Fields(&Schema{Avro: avro.MustParse(`"string"`)}) != nil {
		t.Error("Fields of a non-record is not nil")
	}
	if KindTime.String() != "time" || FieldKind(99).String() != "other" {
		t.Error("FieldKind.String")
	}
}

// TestDecoderErrorClasses: one crafted record per class, each with its
// schema id (or -1 when the header is unreadable).
func TestDecoderErrorClasses(t *testing.T) {
	c := testCluster(t)
	base, _, _ := testServer(t, c)
	cl := testClient(t, base)
	ctx := context.Background()
	rec := `{"type":"record","name":"R","fields":[{"name":"s","type":"string"},{"name":"n","type":"long"}]}`
	id, err := cl.Register(ctx, "requests-value", rec)
	if err != nil {
		t.Fatal(err)
	}
	otherID, err := cl.Register(ctx, "other-value", `{"type":"record","name":"O","fields":[{"name":"o","type":"int"}]}`)
	if err != nil {
		t.Fatal(err)
	}
	strID, err := cl.Register(ctx, "requests-value-str", `"string"`)
	if err != nil {
		t.Fatal(err)
	}
	good := []byte{6, 'a', 'b', 'c', 4} // s="abc", n=2

	for _, tc := range []struct {
		name   string
		value  []byte
		class  error
		wantID int
	}{
		{"null value", nil, ErrTooShort, -1},
		{"empty value", []byte{}, ErrTooShort, -1},
		{"header cut", []byte{0, 0, 0, 1}, ErrTooShort, -1},
		{"json value", []byte(`{"s":"abc","n":2}`), ErrBadMagic, -1},
		{"unknown id", AppendWire(nil, 4242, good), ErrUnknownSchema, 4242},
		{"other subject's schema", AppendWire(nil, otherID, []byte{2}), ErrWrongSubject, otherID},
		{"truncated body", AppendWire(nil, id, good[:3]), ErrAvroDecode, id},
		{"empty body", AppendWire(nil, id, nil), ErrAvroDecode, id},
		{"bytes left over", AppendWire(nil, id, append(append([]byte{}, good...), 9, 9)), ErrAvroDecode, id},
		{"negative string length", AppendWire(nil, id, []byte{3, 'a'}), ErrAvroDecode, id},
		{"not a record", AppendWire(nil, strID, []byte{2, 'x'}), ErrAvroDecode, strID},
	} {
		dec := NewDecoder(cl, PinSubject("requests-value"))
		if tc.name == "not a record" {
			dec = NewDecoder(cl) // not pinned: the schema is under another subject
		}
		m, err := dec.Decode(ctx, tc.value)
		class, bad := DeadLetterClass(err)
		var de *DecodeError
		switch {
		case m != nil || !bad || class != tc.class:
			t.Errorf("%s: %v %v: class %v, want %v", tc.name, m, err, class, tc.class)
		case !errors.As(err, &de) || de.ID != tc.wantID:
			t.Errorf("%s: %v: want a *DecodeError with id %d", tc.name, err, tc.wantID)
		case errors.Is(err, ErrRegistryUnavailable):
			t.Errorf("%s: %v is also ErrRegistryUnavailable", tc.name, err)
		default:
			t.Logf("%s: %v", tc.name, err)
		}
	}
	bad := AppendWire(nil, id, good)
	bad[0] = 1
	if _, err := NewDecoder(cl).Decode(ctx, bad); !errors.Is(err, ErrBadMagic) {
		t.Errorf("magic byte 1: %v", err)
	}

	// The good record, pinned.
	m, err := NewDecoder(cl, PinSubject("requests-value")).Decode(ctx, AppendWire(nil, id, good))
	if err != nil || m["s"] != "abc" || m["n"] != int64(2) {
		t.Errorf("good record = %v %v", m, err)
	}
}

// countingRegistry counts GetByID calls.
type countingRegistry struct {
	Registry
	gets atomic.Int32
}

func (r *countingRegistry) GetByID(ctx context.Context, id int) (*Schema, error) {
	r.gets.Add(1)
	return r.Registry.GetByID(ctx, id)
}

// TestDecoderNegativeCache: an unknown id is answered from memory for the
// TTL, then asked again (and found, if it was registered meanwhile).
func TestDecoderNegativeCache(t *testing.T) {
	c := testCluster(t)
	base, _, _ := testServer(t, c)
	reg := &countingRegistry{Registry: testClient(t, base)}
	ctx := context.Background()
	now := time.Unix(1000, 0)
	dec := NewDecoder(reg, NegativeCacheTTL(time.Minute), DecoderClock(func() time.Time { return now }))
	rec := AppendWire(nil, 1, []byte{2, 'x'})
	for range 3 {
		if _, err := dec.Decode(ctx, rec); !errors.Is(err, ErrUnknownSchema) {
			t.Fatalf("before registration: %v", err)
		}
	}
	if n := reg.gets.Load(); n != 1 {
		t.Errorf("%d registry calls within the TTL, want 1", n)
	}
	if _, err := reg.Register(ctx, "s", `{"type":"record","name":"R","fields":[{"name":"s","type":"string"}]}`); err != nil {
		t.Fatal(err)
	}
	now = now.Add(time.Minute)
	m, err := dec.Decode(ctx, rec)
	if err != nil || m["s"] != "x" {
		t.Fatalf("after the TTL: %v %v", m, err)
	}
	for range 3 {
		dec.Decode(ctx, rec)
	}
	if n := reg.gets.Load(); n != 2 {
		t.Errorf("%d registry calls, want 2 (known ids are cached)", n)
	}
}

func TestEncoder(t *testing.T) {
	c := testCluster(t)
	base, _, _ := testServer(t, c)
	cl := testClient(t, base)
	ctx := context.Background()
	out, err := DeriveOutput(Output{Name: "result", Namespace: "eddy.test", KeyFields: []string{"endpoint"}, Aggregates: []string{"count", "p99"}})
	if err != nil {
		t.Fatal(err)
	}
	enc, err := NewEncoder(ctx, cl, "results-value", out)
	if err != nil {
		t.Fatal(err)
	}
	enc2, err := NewEncoder(ctx, cl, "results-value", out)
	if err != nil || enc2.ID() != enc.ID() {
		t.Fatalf("second encoder: %v %v, want id %d", enc2, err, enc.ID())
	}
	start := time.UnixMilli(1_700_000_000_000).UTC()
	b, err := enc.Encode(map[string]any{"endpoint": "/checkout", "window_start": start, "window_end": start.Add(time.Minute).UnixMilli(), "count": 12})
	if err != nil {
		t.Fatal(err)
	}
	m, err := NewDecoder(cl, PinSubject("results-value")).Decode(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"endpoint": "/checkout", "window_start": start, "window_end": start.Add(time.Minute), "count": 12.0, "p99": nil}
	if !reflect.DeepEqual(m, want) {
		t.Errorf("round trip = %v, want %v", m, want)
	}

	for name, v := range map[string]map[string]any{
		"missing key field": {"window_start": start, "window_end": start},
		"string for a long": {"endpoint": "/", "window_start": "yesterday", "window_end": start},
		"uint64 overflow":   {"endpoint": "/", "window_start": uint64(1 << 63), "window_end": start},
	} {
		if _, err := enc.Encode(v); !errors.Is(err, ErrAvroEncode) {
			t.Errorf("%s: %v, want ErrAvroEncode", name, err)
		}
	}

	// A schema the subject's level refuses.
	bad, _ := DeriveOutput(Output{Name: "result", Namespace: "eddy.test", KeyFields: []string{"endpoint", "region"}})
	if _, err := NewEncoder(ctx, cl, "results-value", bad); !errors.Is(err, ErrIncompatible) {
		t.Errorf("incompatible output schema: %v", err)
	}
	if _, err := NewEncoder(ctx, cl, "results-value", `{"type":`); !errors.Is(err, ErrInvalidSchema) {
		t.Errorf("invalid schema: %v", err)
	}
}

// TestEncoderWholeFloats: eddy's aggregates are float64s; a long or int
// result field takes them when they are whole (a count, the minimum of
// integers) and refuses a fraction rather than truncate it.
func TestEncoderWholeFloats(t *testing.T) {
	c := testCluster(t)
	base, _, _ := testServer(t, c)
	cl := testClient(t, base)
	ctx := context.Background()
	out, err := DeriveOutput(Output{Name: "result", KeyFields: []string{"endpoint"}, Aggregates: []string{"n", "lo", "p99"},
		AggregateTypes: map[string]string{"n": "long", "lo": "int"}})
	if err != nil {
		t.Fatal(err)
	}
	enc, err := NewEncoder(ctx, cl, "typed-value", out)
	if err != nil {
		t.Fatal(err)
	}
	start := time.UnixMilli(1_700_000_000_000).UTC()
	b, err := enc.Encode(map[string]any{"endpoint": "/", "window_start": start, "window_end": start, "n": 114.0, "lo": -3.0, "p99": 41.5})
	if err != nil {
		t.Fatal(err)
	}
	m, err := NewDecoder(cl).Decode(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	if m["n"] != int64(114) || m["lo"] != int64(-3) || m["p99"] != 41.5 {
		t.Errorf("decoded n=%#v lo=%#v p99=%#v, want int64 114, int64 -3, 41.5", m["n"], m["lo"], m["p99"])
	}
	for name, v := range map[string]any{"fraction": 1.5, "too big for an int": float64(1 << 40)} {
		if _, err := enc.Encode(map[string]any{"endpoint": "/", "window_start": start, "window_end": start, "lo": v}); !errors.Is(err, ErrAvroEncode) {
			t.Errorf("%s into an int field: %v, want ErrAvroEncode", name, err)
		}
	}
}

func TestWireFormat(t *testing.T) {
	body := []byte{1, 2, 3}
	b := AppendWire([]byte("prefix"), 0x01020304, body)
	if string(b[:6]) != "prefix" || !reflect.DeepEqual(b[6:], []byte{0, 1, 2, 3, 4, 1, 2, 3}) {
		t.Fatalf("AppendWire = %v", b)
	}
	id, got, err := ParseWire(b[6:])
	if err != nil || id != 0x01020304 || !reflect.DeepEqual(got, body) {
		t.Fatalf("ParseWire = %d %v %v", id, got, err)
	}
	if id, got, err := ParseWire(AppendWire(nil, 1<<32-1, nil)); err != nil || id != 1<<32-1 || len(got) != 0 {
		t.Errorf("largest id, empty body: %d %v %v", id, got, err)
	}
	for _, tc := range []struct {
		in   []byte
		want error
	}{
		{nil, ErrTooShort}, {[]byte{0, 0, 0, 0}, ErrTooShort}, {[]byte{1, 0, 0, 0, 1}, ErrBadMagic}, {[]byte("{}   "), ErrBadMagic},
	} {
		if _, _, err := ParseWire(tc.in); !errors.Is(err, tc.want) {
			t.Errorf("ParseWire(%v) = %v, want %v", tc.in, err, tc.want)
		}
	}
}

func TestDeadLetterClass(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want error
	}{
		{nil, nil},
		{context.Canceled, nil},
		{&DecodeError{ID: 1, Err: ErrAvroDecode}, ErrAvroDecode},
		{&DecodeError{ID: 1, Err: ErrWrongSubject}, ErrWrongSubject},
		{&DecodeError{ID: 1, Err: &RegistryError{Class: ErrRegistryUnavailable, Err: ErrUnknownSchema}}, nil},
	} {
		got, ok := DeadLetterClass(tc.err)
		if got != tc.want || ok != (tc.want != nil) {
			t.Errorf("DeadLetterClass(%v) = %v %v, want %v", tc.err, got, ok, tc.want)
		}
	}
	if ErrUnknownSchema.Error() != "unknown_schema" {
		t.Error("class names are part of the dead-letter header format")
	}
}
