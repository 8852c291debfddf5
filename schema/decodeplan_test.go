package schema

import (
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

	plan, ok := compilePlan(s)
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
	id, err := reg.Register(nil, "s", `{"type":"record","name":"R","fields":[{"name":"a","type":{"type":"array","items":"null"}}]}`)
	if err != nil {
		t.Fatal(err)
	}
	// zig-zag 2^40 as a block count, then nothing.
	body := []byte{0x80, 0x80, 0x80, 0x80, 0x80, 0x40}
	start := time.Now()
	_, err = NewDecoder(reg).Decode(nil, AppendWire(nil, id, body))
	if !errors.Is(err, ErrAvroDecode) {
		t.Errorf("huge block count: %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("took %v", d)
	}
}
