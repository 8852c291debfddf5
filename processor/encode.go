package processor

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/eddy-streams/eddy/processor/engine/groupkey"
	"github.com/eddy-streams/eddy/schema"
	"github.com/eddy-streams/eddy/state"
	"github.com/eddy-streams/eddy/topology"
)

// JSON results are written by appending bytes, without reflection: at 100k
// keys nearly every input record closes a window, and encoding results
// through a map[string]any and encoding/json was about a third of the CPU
// of a count pipeline. The bytes are exactly those encoding/json writes
// for the map encodeResult used to build (fields sorted by name, the
// same escaping and number format); TestResultEncoderMatchesJSON checks it
// against that map.

type jsonFieldKind uint8

const (
	jfKeyObject jsonFieldKind = iota // "key": {the key fields}
	jfKeyPart                        // one key field
	jfWindowStart
	jfWindowEnd
	jfAggregate
)

type jsonField struct {
	name []byte // `"name":`
	kind jsonFieldKind
	idx  int // key part or aggregate index
}

// resultEncoder appends one result's JSON. Not safe for concurrent use:
// it keeps scratch (the key's parts, the last window bounds' strings).
// The processing loop owns the pipeline's (pipeline.resEnc); each
// parallel tasks' goroutine owns a clone (parallel.go).
type resultEncoder struct {
	fields  []jsonField // top level, sorted by name
	keyObj  []jsonField // the "key" object's fields, sorted by name
	nParts  int
	parts   []string // scratch: the key's parts, as JSON strings
	cache   [2]cachedTime
	lastLen int     // size of the last result, to size the next buffer
	slab    outSlab // the results' bytes, and the records emit makes
	// topK marks the aggregates that are top_k lists, by index; nil
	// when there are none.
	topK []bool
}

// topKJSON is one entry of a top_k result in JSON: {"count":N,"value":"v"}
// (the fields in the order encoding/json writes a map's).
type topKJSON struct {
	Count uint64 `json:"count"`
	Value string `json:"value"`
}

// topKList is a top_k result as JSON values.
func topKList(es []state.TopKEntry) []topKJSON {
	out := make([]topKJSON, len(es))
	for i, e := range es {
		out[i] = topKJSON{Count: e.Count, Value: e.Value}
	}
	return out
}

type cachedTime struct {
	ms  int64
	str []byte // quoted RFC 3339
	ok  bool
}

func newResultEncoder(keyFields, aggNames []string) *resultEncoder {
	e := &resultEncoder{nParts: len(keyFields)}
	// The same assignments, in the same order, as the map it replaces: a
	// later one wins a name clash (Validate allows none for aggregates).
	byName := map[string]jsonField{"key": {kind: jfKeyObject}}
	for i, f := range keyFields {
		byName[f] = jsonField{kind: jfKeyPart, idx: i}
	}
	byName["window_start"] = jsonField{kind: jfWindowStart}
	byName["window_end"] = jsonField{kind: jfWindowEnd}
	for i, a := range aggNames {
		byName[a] = jsonField{kind: jfAggregate, idx: i}
	}
	names := make([]string, 0, len(byName))
	for n := range byName {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		f := byName[n]
		f.name = jsonName(n)
		e.fields = append(e.fields, f)
	}
	keyNames := map[string]int{}
	for i, f := range keyFields {
		keyNames[f] = i
	}
	names = names[:0]
	for n := range keyNames {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		e.keyObj = append(e.keyObj, jsonField{name: jsonName(n), kind: jfKeyPart, idx: keyNames[n]})
	}
	return e
}

// clone returns an encoder of the same results with its own scratch: the
// field tables are read-only and shared.
func (e *resultEncoder) clone() *resultEncoder {
	return &resultEncoder{fields: e.fields, keyObj: e.keyObj, nParts: e.nParts, topK: e.topK}
}

func jsonName(n string) []byte {
	b, _ := json.Marshal(n)
	return append(b, ':')
}

func (e *resultEncoder) timeString(slot int, ms int64) []byte {
	c := &e.cache[slot]
	if !c.ok || c.ms != ms {
		c.ms, c.ok = ms, true
		c.str = strconv.AppendQuote(c.str[:0], fmtTime(ms)) // RFC 3339: plain ASCII
	}
	return c.str
}

// encode returns the JSON of r. ok is false when r's key is not in the
// form groupKey writes; the caller then takes the slow path.
func (e *resultEncoder) encode(r result) (out []byte, ok bool, err error) {
	e.parts, ok = groupkey.SplitJSON(r.Window.Key, e.parts)
	if !ok || len(e.parts) != e.nParts {
		return nil, false, nil
	}
	b := e.slab.start(max(e.lastLen, 64))
	b = append(b, '{')
	for i, f := range e.fields {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, f.name...)
		switch f.kind {
		case jfKeyObject:
			b = append(b, '{')
			for j, k := range e.keyObj {
				if j > 0 {
					b = append(b, ',')
				}
				b = append(b, k.name...)
				b = append(b, e.parts[k.idx]...)
			}
			b = append(b, '}')
		case jfKeyPart:
			b = append(b, e.parts[f.idx]...)
		case jfWindowStart:
			b = append(b, e.timeString(0, r.Window.Start)...)
		case jfWindowEnd:
			b = append(b, e.timeString(1, r.Window.End)...)
		case jfAggregate:
			if f.idx < len(e.topK) && e.topK[f.idx] {
				list, merr := json.Marshal(topKList(r.Row.TopK(f.idx)))
				if merr != nil {
					return nil, true, merr
				}
				b = append(b, list...)
				continue
			}
			v, has := r.Row.Value(f.idx)
			if !has {
				b = append(b, "null"...)
				continue
			}
			if b, err = appendJSONFloat(b, v); err != nil {
				return nil, true, err
			}
		}
	}
	b = append(b, '}')
	e.lastLen = len(b)
	return e.slab.keep(b), true, nil
}

// appendJSONFloat writes f as encoding/json writes a float64.
func appendJSONFloat(b []byte, f float64) ([]byte, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return b, fmt.Errorf("json: unsupported value: %s", strconv.FormatFloat(f, 'g', -1, 64))
	}
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// e-09 -> e-9, as encoding/json does.
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b, nil
}

// encodeResult renders a result as JSON: the key fields as an object (and
// each also at the top level), the window bounds in RFC 3339, and each aggregate by name (null when it saw
// no value). With output.format avro it is the Confluent wire format of
// the derived schema (OutputSchema): the key fields, window_start and
// window_end as timestamp-millis, each aggregate a nullable double.
func (p *pipeline) encodeResult(r result) ([]byte, error) {
	return p.encodeResultWith(p.resEnc, r)
}

// encodeResultWith is encodeResult with the JSON encoder (and its
// scratch) e: a goroutine other than the processing loop's passes its
// own (resultEncoder.clone). The Avro encoders are safe for concurrent
// use.
func (p *pipeline) encodeResultWith(e *resultEncoder, r result) ([]byte, error) {
	if p.enc != nil {
		return p.encodeAvroResult(r)
	}
	if b, ok, err := e.encode(r); ok {
		return b, err
	}
	return p.encodeResultMap(r)
}

// encodeResultMap is encodeResult through a map and encoding/json: the
// reference resultEncoder matches, used for keys not in groupKey's form.
func (p *pipeline) encodeResultMap(r result) ([]byte, error) {
	parts, _ := groupkey.Parts(r.Window.Key)
	key := make(map[string]string, len(p.spec.Key))
	for i, f := range p.spec.Key {
		if i < len(parts) {
			key[f] = parts[i]
		}
	}
	out := make(map[string]any, len(p.spec.Aggregates)+3)
	out["key"] = key
	for f, v := range key {
		out[f] = v
	}
	out["window_start"] = fmtTime(r.Window.Start)
	out["window_end"] = fmtTime(r.Window.End)
	for i, ag := range p.spec.Aggregates {
		if ag.Op == topology.AggTopK {
			out[ag.Name] = topKList(r.Row.TopK(i))
			continue
		}
		if v, ok := r.Row.Value(i); ok {
			out[ag.Name] = v
		} else {
			out[ag.Name] = nil
		}
	}
	b, err := json.Marshal(out)
	return b, err
}

// encodeResultKey renders a result's key: the grouping key as a JSON
// array of strings, or with output.format avro the Confluent wire format
// of the derived key schema (OutputKeySchema), a record of the key fields.
func (p *pipeline) encodeResultKey(r result) ([]byte, error) {
	return p.encodeKey(p.keyEnc, r.Window.Key)
}

// encodeKey renders a grouping key as it is (JSON) when enc is nil, else
// as a record of the key fields in the Confluent wire format.
func (p *pipeline) encodeKey(enc *schema.Encoder, key string) ([]byte, error) {
	if enc == nil {
		return []byte(key), nil
	}
	parts, ok := groupkey.Parts(key)
	if !ok || len(parts) != len(p.spec.Key) {
		return nil, fmt.Errorf("grouping key %s is not a JSON array of %d strings", key, len(p.spec.Key))
	}
	out := make(map[string]any, len(parts))
	for i, f := range p.spec.Key {
		out[f] = parts[i]
	}
	return enc.Encode(out)
}

// encodeAvroResult writes a result with the registered result schema
// (OutputSchema). Aggregates are float64s here; the Encoder writes a
// count, a distinct count and the min or max of an integer field into
// their long (or int) fields, where they are whole numbers, and refuses
// a fraction rather than truncate it.
func (p *pipeline) encodeAvroResult(r result) ([]byte, error) {
	parts, ok := groupkey.Parts(r.Window.Key)
	if !ok || len(parts) != len(p.spec.Key) {
		return nil, fmt.Errorf("grouping key %s is not a JSON array of %d strings", r.Window.Key, len(p.spec.Key))
	}
	out := make(map[string]any, len(p.spec.Aggregates)+len(parts)+2)
	for i, f := range p.spec.Key {
		out[f] = parts[i]
	}
	out[schema.FieldWindowStart] = time.UnixMilli(r.Window.Start).UTC()
	out[schema.FieldWindowEnd] = time.UnixMilli(r.Window.End).UTC()
	for i, ag := range p.spec.Aggregates {
		if ag.Op == topology.AggTopK {
			es := r.Row.TopK(i)
			list := make([]map[string]any, len(es))
			for j, e := range es {
				list[j] = map[string]any{schema.FieldTopKValue: e.Value, schema.FieldTopKCount: int64(e.Count)}
			}
			out[ag.Name] = list
			continue
		}
		if v, ok := r.Row.Value(i); ok {
			out[ag.Name] = v
		} else {
			out[ag.Name] = nil
		}
	}
	return p.enc.Encode(out)
}
