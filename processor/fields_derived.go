package processor

// Derived fields and lookups at run time: enrich adds them to a decoded
// record's fields in the stateless step (prepareFields), before event
// time, filter and key.
//
// Repartitioned records: the aggregating task decodes a repartition
// record again from the original value (processAgg), so the fields
// enrich added would be lost. They are carried, not recomputed: enrich
// stores them in the header eddy.fields of the source record, which
// forwardSource copies onto the repartition record, and repartitioned
// adds them back. Carrying rather than recomputing matters for lookups
// (the table may have changed between the two steps, and a miss must be
// dead-lettered where the record is read) and costs no second
// evaluation. The header is internal: sourceOf leaves it out of the
// headers of late and dead-letter records.
//
// Encoding of eddy.fields (integers are varints):
//
//	fields = n:uv (len:uv name:len*byte value)*n
//	value  = 0 (null) | 1 (false) | 2 (true) | 3 v:varint (int64)
//	       | 4 bits:u64le (float64) | 5 len:uv bytes (string)
//	       | 6 ms:varint (time) | 7 len:uv json (any other JSON value,
//	       from a lookup table)

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// hdrFields carries a record's derived and lookup fields through the
// repartition topic.
const hdrFields = "eddy.fields"

// enriches reports whether the pipeline adds fields to records.
func (p *pipeline) enriches() bool {
	return len(p.spec.Derived) > 0 || len(p.spec.Lookups) > 0
}

// enrich computes the derived fields, in order, then the lookups, into
// fields. A derived field that fails is an expression error naming it; a
// lookup miss with on_miss dead_letter is a lookup_miss error.
func (p *pipeline) enrich(fields map[string]any) *RecordError {
	for i, d := range p.spec.Derived {
		v, err := p.compiled.Derived[i].Value(fields)
		if err != nil {
			return &RecordError{Class: ErrExpression, Field: d.Name, Err: fmt.Errorf("derived field %q: %w", d.Name, err)}
		}
		fields[d.Name] = v
	}
	if len(p.spec.Lookups) == 0 {
		return nil
	}
	if p.tables == nil {
		return &RecordError{Class: ErrLookupMiss, Err: errors.New("the pipeline's lookup tables are not loaded here (they are loaded by App.Run)")}
	}
	for i := range p.spec.Lookups {
		if re := p.tables.lookup(i, fields); re != nil {
			return re
		}
	}
	return nil
}

// carryFields sets rec's eddy.fields header to the enriched fields, for
// the repartition record forwardSource makes of rec.
func (p *pipeline) carryFields(rec *kgo.Record, fields map[string]any) {
	var names []string
	for _, d := range p.spec.Derived {
		names = append(names, d.Name)
	}
	for _, l := range p.spec.Lookups {
		names = append(names, l.Fields...)
	}
	v := encodeCarried(names, fields)
	for i, h := range rec.Headers {
		if h.Key == hdrFields {
			rec.Headers[i].Value = v
			return
		}
	}
	rec.Headers = append(rec.Headers, kgo.RecordHeader{Key: hdrFields, Value: v})
}

// carriedFields adds the fields of rec's eddy.fields header to fields.
func carriedFields(rec *kgo.Record, fields map[string]any) error {
	for _, h := range rec.Headers {
		if h.Key == hdrFields {
			return decodeCarried(h.Value, fields)
		}
	}
	return nil
}

func encodeCarried(names []string, fields map[string]any) []byte {
	b := binary.AppendUvarint(nil, uint64(len(names)))
	for _, n := range names {
		b = binary.AppendUvarint(b, uint64(len(n)))
		b = append(b, n...)
		switch v := fields[n].(type) {
		case nil:
			b = append(b, 0)
		case bool:
			if v {
				b = append(b, 2)
			} else {
				b = append(b, 1)
			}
		case int64:
			b = binary.AppendVarint(append(b, 3), v)
		case float64:
			b = binary.LittleEndian.AppendUint64(append(b, 4), math.Float64bits(v))
		case string:
			b = binary.AppendUvarint(append(b, 5), uint64(len(v)))
			b = append(b, v...)
		case time.Time:
			b = binary.AppendVarint(append(b, 6), v.UnixMilli())
		default:
			j, err := json.Marshal(v)
			if err != nil {
				j = []byte("null")
			}
			b = binary.AppendUvarint(append(b, 7), uint64(len(j)))
			b = append(b, j...)
		}
	}
	return b
}

var errCarried = errors.New("malformed eddy.fields header")

func decodeCarried(b []byte, fields map[string]any) error {
	uv := func() (uint64, bool) {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			return 0, false
		}
		b = b[n:]
		return v, true
	}
	bytes := func() ([]byte, bool) {
		l, ok := uv()
		if !ok || l > uint64(len(b)) {
			return nil, false
		}
		out := b[:l]
		b = b[l:]
		return out, true
	}
	n, ok := uv()
	if !ok {
		return errCarried
	}
	for i := uint64(0); i < n; i++ {
		name, ok := bytes()
		if !ok || len(b) == 0 {
			return errCarried
		}
		tag := b[0]
		b = b[1:]
		var v any
		switch tag {
		case 0:
		case 1, 2:
			v = tag == 2
		case 3, 6:
			x, k := binary.Varint(b)
			if k <= 0 {
				return errCarried
			}
			b = b[k:]
			v = x
			if tag == 6 {
				v = time.UnixMilli(x).UTC()
			}
		case 4:
			if len(b) < 8 {
				return errCarried
			}
			v = math.Float64frombits(binary.LittleEndian.Uint64(b))
			b = b[8:]
		case 5:
			s, ok := bytes()
			if !ok {
				return errCarried
			}
			v = string(s)
		case 7:
			j, ok := bytes()
			if !ok || json.Unmarshal(j, &v) != nil {
				return errCarried
			}
		default:
			return errCarried
		}
		fields[string(name)] = v
	}
	if len(b) != 0 {
		return errCarried
	}
	return nil
}
