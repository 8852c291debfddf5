package schema

import (
	"context"
	"errors"
	"math/big"
	"reflect"
	"testing"
	"time"

	"github.com/hamba/avro/v2"
)

// TestDecodePlanMatchesHamba: the compiled plan gives the same values as
// hamba's generic decode followed by normalise, for every Avro type,
// including the ones the plan hands to hamba and recursive records.
func TestDecodePlanMatchesHamba(t *testing.T) {
	const text = `{"type":"record","name":"Node","fields":[
		{"name":"fx","type":{"type":"fixed","name":"F4","size":4}},
		{"name":"dec","type":{"type":"bytes","logicalType":"decimal","precision":9,"scale":2}},
		{"name":"tm","type":{"type":"int","logicalType":"time-millis"}},
		{"name":"tu","type":{"type":"long","logicalType":"time-micros"}},
		{"name":"lts","type":{"type":"long","logicalType":"local-timestamp-millis"}},
		{"name":"arr","type":{"type":"array","items":["null","string","double"]}},
		{"name":"m","type":{"type":"map","values":{"type":"array","items":"long"}}},
		{"name":"e","type":{"type":"enum","name":"E","symbols":["A","B","C"]}},
		{"name":"next","type":["null","Node"],"default":null}
	]}`
	s, err := ParseSchema(text)
	if err != nil {
		t.Fatal(err)
	}
	leaf := map[string]any{
		"fx": [4]byte{1, 2, 3, 4}, "dec": big.NewRat(12345, 100), "tm": 3 * time.Second, "tu": 5 * time.Microsecond,
		"lts": time.UnixMilli(1_700_000_000_000).UTC(), "arr": []any{nil, "a", 1.5}, "m": map[string]any{"k": []any{int64(1), int64(2)}},
		"e": "C", "next": nil,
	}
	root := map[string]any{}
	for k, v := range leaf {
		root[k] = v
	}
	root["next"] = map[string]any{"Node": leaf}
	body, err := avro.Marshal(s, root)
	if err != nil {
		t.Fatal(err)
	}

	plan, ok := compilePlan(s, nil)
	if !ok {
		t.Fatal("no plan for a record")
	}
	r := avro.NewReader(nil, 0).Reset(body)
	got := plan.read(r)
	if r.Error != nil {
		t.Fatal(r.Error)
	}
	// hamba's generic decode differs in two ways the Decoder documents:
	// it wraps a union branch that is a record ({"Node": {...}}) and gives
	// local timestamps in time.Local. Otherwise the values are the same.
	var v any
	if err := avro.Unmarshal(s, body, &v); err != nil {
		t.Fatal(err)
	}
	want := normalise(v).(map[string]any)
	next := want["next"].(map[string]any)["Node"].(map[string]any)
	want["next"] = next
	for _, m := range []map[string]any{want, next} {
		m["lts"] = m["lts"].(time.Time).UTC()
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("plan  %#v\nhamba %#v", got, want)
	}
	if !reflect.DeepEqual(got["m"], map[string]any{"k": []any{int64(1), int64(2)}}) {
		t.Errorf("map of arrays of long = %#v", got["m"])
	}
	if next, _ := got["next"].(map[string]any); next == nil || next["e"] != "C" {
		t.Errorf("recursive record: next = %#v", got["next"])
	}
}

// TestDecodeHugeBlockCount: a corrupt array block count fails at once.
func TestDecodeHugeBlockCount(t *testing.T) {
	reg := &staticRegistry{byID: map[int]*Schema{}}
	id, err := reg.Register(context.Background(), "s", `{"type":"record","name":"R","fields":[{"name":"a","type":{"type":"array","items":"null"}}]}`)
	if err != nil {
		t.Fatal(err)
	}
	// zig-zag 2^40 as a block count, then nothing.
	body := []byte{0x80, 0x80, 0x80, 0x80, 0x80, 0x40}
	start := time.Now()
	_, err = NewDecoder(reg).Decode(context.Background(), AppendWire(nil, id, body))
	if !errors.Is(err, ErrAvroDecode) {
		t.Errorf("huge block count: %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("took %v", d)
	}
}

// TestDecodeProjection: a projected plan returns exactly the named fields,
// with the values the full plan gives, and fails on exactly the corrupt
// bodies (truncated at every byte, single bytes changed) the full plan
// fails on, with every field projected away in turn.
func TestDecodeProjection(t *testing.T) {
	const text = `{"type":"record","name":"PNode","fields":[
		{"name":"ts","type":"long"},
		{"name":"ok","type":"boolean"},
		{"name":"n","type":"int"},
		{"name":"f","type":"float"},
		{"name":"s","type":"string"},
		{"name":"b","type":"bytes"},
		{"name":"fx","type":{"type":"fixed","name":"PF4","size":4}},
		{"name":"dec","type":{"type":"bytes","logicalType":"decimal","precision":9,"scale":2}},
		{"name":"arr","type":{"type":"array","items":["null","string","double"]}},
		{"name":"m","type":{"type":"map","values":{"type":"array","items":"long"}}},
		{"name":"e","type":{"type":"enum","name":"PE","symbols":["A","B","C"]}},
		{"name":"next","type":["null","PNode"],"default":null},
		{"name":"d","type":"double"}
	]}`
	s, err := ParseSchema(text)
	if err != nil {
		t.Fatal(err)
	}
	leaf := map[string]any{
		"ts": int64(1_700_000_000_000), "ok": true, "n": 7, "f": float32(1.5), "s": "héllo", "b": []byte{0, 1},
		"fx": [4]byte{1, 2, 3, 4}, "dec": big.NewRat(12345, 100), "arr": []any{nil, "a", 1.5},
		"m": map[string]any{"k": []any{int64(1), int64(2)}}, "e": "C", "next": nil, "d": 2.25,
	}
	root := map[string]any{}
	for k, v := range leaf {
		root[k] = v
	}
	root["next"] = map[string]any{"PNode": leaf}
	body, err := avro.Marshal(s, root)
	if err != nil {
		t.Fatal(err)
	}
	full, _ := compilePlan(s, nil)
	decode := func(p *recordPlan, b []byte) (map[string]any, error) {
		r := avro.NewReader(nil, 0).Reset(b)
		m := p.read(r)
		if r.Error == nil {
			var one [1]byte
			if r.Read(one[:]); r.Error == nil {
				return nil, errors.New("bytes left over")
			}
			r.Error = nil
		}
		return m, r.Error
	}
	want, err := decode(full, body)
	if err != nil {
		t.Fatal(err)
	}
	// Corrupt variants: every truncation, and every byte set to a few values.
	var bad [][]byte
	for i := range body {
		bad = append(bad, body[:i])
		for _, v := range []byte{0x00, 0x01, 0x02, 0x06, 0x40, 0x7f, 0x80, 0xff} {
			c := append([]byte(nil), body...)
			c[i] = v
			bad = append(bad, c)
		}
	}
	for _, name := range []string{"ts", "ok", "n", "f", "s", "b", "fx", "dec", "arr", "m", "e", "next", "d"} {
		for _, project := range [][]string{{name}, {"ts", name}, {}} {
			set := map[string]bool{}
			for _, f := range project {
				set[f] = true
			}
			p, _ := compilePlan(s, set)
			got, err := decode(p, body)
			if err != nil {
				t.Fatalf("project %v: %v", project, err)
			}
			if len(got) != len(set) {
				t.Errorf("project %v: got fields %v", project, got)
			}
			for f := range set {
				if !reflect.DeepEqual(got[f], want[f]) {
					t.Errorf("project %v: %s = %#v, want %#v", project, f, got[f], want[f])
				}
			}
			for i, b := range bad {
				_, ferr := decode(full, b)
				_, perr := decode(p, b)
				if (ferr == nil) != (perr == nil) {
					t.Fatalf("project %v, corrupt body %d (% x): full decode err %v, projected err %v", project, i, b, ferr, perr)
				}
			}
		}
	}
}

// TestDecodeIntoReuses: decoding into a map that holds another record's
// fields (and keys no record has) leaves exactly the new record's fields,
// in the same map.
func TestDecodeIntoReuses(t *testing.T) {
	s, err := ParseSchema(`{"type":"record","name":"R","fields":[
		{"name":"ts","type":"long"},
		{"name":"s","type":["null","string"],"default":null}]}`)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := compilePlan(s, nil)
	read := func(rec map[string]any, into map[string]any) map[string]any {
		t.Helper()
		body, err := avro.Marshal(s, rec)
		if err != nil {
			t.Fatal(err)
		}
		r := avro.NewReader(nil, 0).Reset(body)
		m := p.readInto(r, into)
		if r.Error != nil {
			t.Fatal(r.Error)
		}
		return m
	}
	m := read(map[string]any{"ts": int64(1), "s": map[string]any{"string": "a"}}, nil)
	m["derived"] = "left by the previous record" // as enrich adds fields
	m2 := read(map[string]any{"ts": int64(2), "s": nil}, m)
	if want := map[string]any{"ts": int64(2), "s": nil}; !reflect.DeepEqual(m2, want) {
		t.Fatalf("decoded into a used map: %v, want %v", m2, want)
	}
	m2["x"] = 1
	if len(m) != len(m2) {
		t.Fatal("DecodeInto returned another map than the one it was given")
	}
}
