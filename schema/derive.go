package schema

import (
	"encoding/json"
	"fmt"
	"strings"
)

// Output describes the result records of a pipeline, for DeriveOutput.
type Output struct {
	// Name is the Avro record name, e.g. "http_requests_result". Required.
	Name string
	// Namespace is the Avro namespace, e.g. "eddy.pipelines". Optional.
	Namespace string
	// Doc is the record's documentation, e.g. the pipeline's description.
	// Optional.
	Doc string
	// KeyFields are the grouping key fields, in key order. Each becomes a
	// string field.
	KeyFields []string
	// Aggregates are the aggregate names, in spec order. Each becomes a
	// nullable field (null when the window saw no value for it) of the
	// type AggregateTypes gives it.
	Aggregates []string
	// AggregateTypes is the Avro type of each aggregate, by name: "long"
	// or "int" (a count, or the minimum of an integer field), "double", or
	// TypeTopK (a top_k list, see DeriveOutput). An aggregate not in it is
	// a "double".
	AggregateTypes map[string]string
}

// Names of the window bound fields of every result record.
const (
	FieldWindowStart = "window_start"
	FieldWindowEnd   = "window_end"
)

// TypeTopK is the AggregateTypes entry of a top_k aggregate: an Avro
// array of records {value: string, count: long}, FieldTopKValue and
// FieldTopKCount.
const (
	TypeTopK       = "top_k"
	FieldTopKValue = "value"
	FieldTopKCount = "count"
)

// DeriveOutput returns the Avro schema of a pipeline's result records:
//
//	each key field           "string"
//	window_start             {"type":"long","logicalType":"timestamp-millis"}, inclusive
//	window_end               {"type":"long","logicalType":"timestamp-millis"}, exclusive
//	each aggregate           ["null", T] with default null, T from
//	                         o.AggregateTypes: "long", "int" or "double"
//	each top_k aggregate A   {"type":"array","items":{"type":"record",
//	                         "name":"A_entry","fields":[value string,
//	                         count long]}} with default [] (most frequent
//	                         first)
//
// in that order. The text is compact JSON and depends only on o: the same
// Output always gives byte-identical text, so registering it again on every
// start is idempotent and a changed pipeline is a new schema version. Adding
// an aggregate is a backward-compatible change (it has a default);
// removing one or changing the key is compatible only in some directions,
// as the registry's compatibility check reports.
func DeriveOutput(o Output) (string, error) {
	if !isAvroName(o.Name) {
		return "", fmt.Errorf("%w: record name %q: use letters, digits and '_', not starting with a digit", ErrInvalidSchema, o.Name)
	}
	if o.Namespace != "" {
		for _, part := range strings.Split(o.Namespace, ".") {
			if !isAvroName(part) {
				return "", fmt.Errorf("%w: namespace %q: use dot-separated names of letters, digits and '_'", ErrInvalidSchema, o.Namespace)
			}
		}
	}
	seen := map[string]string{FieldWindowStart: "the window start", FieldWindowEnd: "the window end"}
	add := func(name, what string) error {
		if !isAvroName(name) {
			return fmt.Errorf("%w: %s %q is not a valid Avro field name: use letters, digits and '_', not starting with a digit", ErrInvalidSchema, what, name)
		}
		if prev, dup := seen[name]; dup {
			return fmt.Errorf("%w: %s %q has the name of %s", ErrInvalidSchema, what, name, prev)
		}
		seen[name] = what + " " + name
		return nil
	}

	type field struct {
		Name    string          `json:"name"`
		Type    any             `json:"type"`
		Default json.RawMessage `json:"default,omitempty"`
		Doc     string          `json:"doc,omitempty"`
	}
	type logical struct {
		Type        string `json:"type"`
		LogicalType string `json:"logicalType"`
	}
	type record struct {
		Type      string  `json:"type"`
		Name      string  `json:"name"`
		Namespace string  `json:"namespace,omitempty"`
		Doc       string  `json:"doc,omitempty"`
		Fields    []field `json:"fields"`
	}
	rec := record{Type: "record", Name: o.Name, Namespace: o.Namespace, Doc: o.Doc, Fields: []field{}}
	for _, k := range o.KeyFields {
		if err := add(k, "key field"); err != nil {
			return "", err
		}
		rec.Fields = append(rec.Fields, field{Name: k, Type: "string", Doc: "grouping key field"})
	}
	ts := logical{Type: "long", LogicalType: "timestamp-millis"}
	rec.Fields = append(rec.Fields,
		field{Name: FieldWindowStart, Type: ts, Doc: "start of the window, inclusive"},
		field{Name: FieldWindowEnd, Type: ts, Doc: "end of the window, exclusive"})
	for _, a := range o.Aggregates {
		if err := add(a, "aggregate"); err != nil {
			return "", err
		}
		typ := "double"
		if o.AggregateTypes[a] == TypeTopK {
			type items struct {
				Type   string  `json:"type"`
				Name   string  `json:"name"`
				Fields []field `json:"fields"`
			}
			type array struct {
				Type  string `json:"type"`
				Items items  `json:"items"`
			}
			rec.Fields = append(rec.Fields, field{Name: a, Type: array{Type: "array", Items: items{Type: "record", Name: a + "_entry",
				Fields: []field{{Name: FieldTopKValue, Type: "string"}, {Name: FieldTopKCount, Type: "long", Doc: "estimated count: at most the true count"}}}},
				Default: json.RawMessage("[]"),
				Doc:     "aggregate " + a + ": the most frequent values, most frequent first; empty when the window had no value for it"})
			continue
		}
		if t, ok := o.AggregateTypes[a]; ok {
			if t != "long" && t != "int" && t != "double" {
				return "", fmt.Errorf("%w: aggregate %q: type %q: want long, int or double", ErrInvalidSchema, a, t)
			}
			typ = t
		}
		rec.Fields = append(rec.Fields, field{Name: a, Type: []string{"null", typ}, Default: json.RawMessage("null"),
			Doc: "aggregate " + a + "; null when the window had no value for it"})
	}
	return marshalSchema(rec)
}

// DeriveOutputKey returns the Avro schema of a pipeline's result keys: a
// record named o.Name (in o.Namespace, with o.Doc) whose fields are the
// grouping key fields, each a "string", in key order. o.Aggregates is not
// used. Like DeriveOutput, the text depends only on o.
func DeriveOutputKey(o Output) (string, error) {
	if !isAvroName(o.Name) {
		return "", fmt.Errorf("%w: record name %q: use letters, digits and '_', not starting with a digit", ErrInvalidSchema, o.Name)
	}
	for _, part := range strings.Split(o.Namespace, ".") {
		if o.Namespace != "" && !isAvroName(part) {
			return "", fmt.Errorf("%w: namespace %q: use dot-separated names of letters, digits and '_'", ErrInvalidSchema, o.Namespace)
		}
	}
	if len(o.KeyFields) == 0 {
		return "", fmt.Errorf("%w: a key record needs at least one key field", ErrInvalidSchema)
	}
	type field struct {
		Name string `json:"name"`
		Type string `json:"type"`
		Doc  string `json:"doc,omitempty"`
	}
	type record struct {
		Type      string  `json:"type"`
		Name      string  `json:"name"`
		Namespace string  `json:"namespace,omitempty"`
		Doc       string  `json:"doc,omitempty"`
		Fields    []field `json:"fields"`
	}
	rec := record{Type: "record", Name: o.Name, Namespace: o.Namespace, Doc: o.Doc}
	seen := map[string]bool{}
	for _, k := range o.KeyFields {
		if !isAvroName(k) {
			return "", fmt.Errorf("%w: key field %q is not a valid Avro field name: use letters, digits and '_', not starting with a digit", ErrInvalidSchema, k)
		}
		if seen[k] {
			return "", fmt.Errorf("%w: key field %q appears twice", ErrInvalidSchema, k)
		}
		seen[k] = true
		rec.Fields = append(rec.Fields, field{Name: k, Type: "string", Doc: "grouping key field"})
	}
	return marshalSchema(rec)
}

// AvroName turns a name such as an app id or a topic (letters, digits,
// '.', '_', '-') into a valid Avro name: every other character becomes '_',
// and a leading digit (or an empty name) gets a '_' in front.
func AvroName(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			b[i] = '_'
		}
	}
	if len(b) == 0 || b[0] >= '0' && b[0] <= '9' {
		return "_" + string(b)
	}
	return string(b)
}

// isAvroName reports whether s is a valid Avro name: [A-Za-z_][A-Za-z0-9_]*.
func isAvroName(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		switch {
		case r == '_', r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z':
		case r >= '0' && r <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// marshalSchema renders a derived schema as JSON and checks that it parses.
func marshalSchema(rec any) (string, error) {
	b, err := json.Marshal(rec)
	if err != nil {
		return "", err // cannot happen: only strings and fixed structs
	}
	if _, err := ParseSchema(string(b)); err != nil {
		return "", err
	}
	return string(b), nil
}
