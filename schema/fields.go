package schema

import (
	"github.com/hamba/avro/v2"
)

// FieldKind is the kind of value a field holds, as far as a pipeline cares:
// what it can group by, compare, aggregate or use as event time.
type FieldKind uint8

// The kinds, with the Go type the Decoder gives their values.
const (
	KindOther  FieldKind = iota // anything else: bytes, records, arrays, maps, decimals, durations, unions of several types
	KindString                  // string, enum, uuid: string
	KindInt                     // int, long: int64
	KindFloat                   // float, double: float64
	KindBool                    // boolean: bool
	KindTime                    // timestamp-millis/micros, local-timestamp-millis/micros, date: time.Time
)

func (k FieldKind) String() string {
	switch k {
	case KindString:
		return "string"
	case KindInt:
		return "int"
	case KindFloat:
		return "float"
	case KindBool:
		return "bool"
	case KindTime:
		return "time"
	default:
		return "other"
	}
}

// FieldType describes one top-level field of a record schema.
type FieldType struct {
	Kind     FieldKind
	Nullable bool   // the field is a union of null and one other type
	Avro     string // the Avro type, e.g. "long", "long.timestamp-millis", "enum", "record"
}

// Fields returns the kind of every top-level field of s, by field name, so
// a pipeline can check at start-up that the fields it uses exist with a
// usable type. It returns nil when s is not a record.
func Fields(s *Schema) map[string]FieldType {
	rec, ok := s.Avro.(*avro.RecordSchema)
	if !ok {
		return nil
	}
	out := make(map[string]FieldType, len(rec.Fields()))
	for _, f := range rec.Fields() {
		out[f.Name()] = fieldType(f.Type())
	}
	return out
}

// fieldType classifies one Avro type; a union of null and one type is that
// type, nullable.
func fieldType(t avro.Schema) FieldType {
	if u, ok := t.(*avro.UnionSchema); ok {
		types := u.Types()
		if len(types) == 2 && u.Nullable() {
			other := types[0]
			if other.Type() == avro.Null {
				other = types[1]
			}
			ft := fieldType(other)
			ft.Nullable = true
			return ft
		}
		return FieldType{Kind: KindOther, Avro: "union"}
	}
	if r, ok := t.(*avro.RefSchema); ok {
		t = r.Schema()
	}
	name := string(t.Type())
	var logical avro.LogicalType
	if lt, ok := t.(avro.LogicalTypeSchema); ok && lt.Logical() != nil {
		logical = lt.Logical().Type()
		name += "." + string(logical)
	}
	switch t.Type() {
	case avro.String, avro.Enum:
		return FieldType{Kind: KindString, Avro: name}
	case avro.Boolean:
		return FieldType{Kind: KindBool, Avro: name}
	case avro.Float, avro.Double:
		return FieldType{Kind: KindFloat, Avro: name}
	case avro.Int:
		switch logical {
		case "":
			return FieldType{Kind: KindInt, Avro: name}
		case avro.Date:
			return FieldType{Kind: KindTime, Avro: name}
		}
	case avro.Long:
		switch logical {
		case "":
			return FieldType{Kind: KindInt, Avro: name}
		case avro.TimestampMillis, avro.TimestampMicros, avro.LocalTimestampMillis, avro.LocalTimestampMicros:
			return FieldType{Kind: KindTime, Avro: name}
		}
	}
	return FieldType{Kind: KindOther, Avro: name}
}
