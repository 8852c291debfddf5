package topology

import (
	"strings"
	"testing"
)

// TestDerivedLookupTopKErrors: every problem of the new keys is reported
// on the key, with the line of the key in the file.
func TestDerivedLookupTopKErrors(t *testing.T) {
	for _, tc := range []struct {
		yaml  string
		field string
		text  string
	}{
		{"derived: [{expr: 'status / 100'}]", "derived[0].name", "must be set"},
		{"derived: [{name: 2xx, expr: 'status / 100'}]", "derived[0].name", "not a valid name"},
		{"derived: [{name: a, expr: '1'}, {name: a, expr: '2'}]", "derived[1].name", `"a" is also computed by derived[0]`},
		{"derived: [{name: a}]", "derived[0].expr", "must be set"},
		{"derived: [{name: a, expr: 'status >'}]", "derived[0].expr", `expression "status >"`},
		{"derived: [{name: a, expr: 'now()'}]", "derived[0].expr", "wall clock"},
		{"derived: [{name: a, expr: 'b + 1'}, {name: b, expr: '2'}]", "derived[0].expr", `uses "b", which is computed by derived[1], after this field`},
		{"derived: [{name: a, expr: 'a + 1'}]", "derived[0].expr", `uses "a", which is this field itself`},
		{"derived: [{name: a, expr: 'team'}]\nlookups: [{name: o, topic: t, on: x, fields: [team]}]", "derived[0].expr", `uses "team", which is computed by lookup "o"`},
		{"derived: [{name: team, expr: '1'}]\nlookups: [{name: o, topic: t, on: x, fields: [team]}]", "lookups[0].fields[0]", `"team" is also computed by derived[0]`},
		{"lookups: [{topic: t, on: x, fields: [a]}]", "lookups[0].name", "must be set"},
		{"lookups: [{name: 'a b', topic: t, on: x, fields: [a]}]", "lookups[0].name", "contains ' '"},
		{"lookups: [{name: o, on: x, fields: [a]}]", "lookups[0].topic", "must be set"},
		{"lookups: [{name: o, topic: in, on: x, fields: [a]}]", "lookups[0].topic", "also a source topic"},
		{"lookups: [{name: o, topic: out, on: x, fields: [a]}]", "lookups[0].topic", "the output topic"},
		{"lookups: [{name: o, topic: t, fields: [a]}]", "lookups[0].on", "must be set"},
		{"lookups: [{name: o, topic: t, on: x}]", "lookups[0].fields", "at least one"},
		{"lookups: [{name: o, topic: t, on: x, fields: [a, a]}]", "lookups[0].fields[1]", "listed twice"},
		{"lookups: [{name: o, topic: t, on: x, fields: [a], on_miss: drop}]", "lookups[0].on_miss", `"drop" is not default or dead_letter`},
		{"lookups: [{name: o, topic: t, on: x, fields: [a], defaults: {b: 1}}]", "lookups[0].defaults.b", "not one of the lookup's fields"},
		{"lookups: [{name: o, topic: t, on: x, fields: [a], on_miss: dead_letter, defaults: {a: 1}}]", "lookups[0].defaults", "not used with on_miss dead_letter"},
		{"lookups: [{name: o, topic: t, on: x, fields: [a], defaults: {a: [1]}}]", "lookups[0].defaults.a", "must be a single value"},
		{"aggregates: [{name: t, op: top_k, field: ua}]", "aggregates[0].k", "must be set for op top_k"},
		{"aggregates: [{name: t, op: top_k, k: 10}]", "aggregates[0].field", "must be set for op top_k"},
		{"aggregates: [{name: t, op: top_k, k: 1001, field: ua}]", "aggregates[0].k", "from 1 to 1000"},
		{"aggregates: [{name: t, op: top_k, k: ten, field: ua}]", "aggregates[0].k", "whole number"},
		{"aggregates: [{name: t, op: count, k: 3}]", "aggregates[0].k", "only used by op top_k"},
		{"aggregates: [{name: t, op: topk, k: 3, field: ua}]", "aggregates[0].op", `did you mean "top_k"?`},
	} {
		t.Run(tc.yaml, func(t *testing.T) {
			text := specWith(tc.yaml)
			_, err := Parse([]byte(text))
			fes := FieldErrors(err)
			if len(fes) == 0 {
				t.Fatalf("no error for\n%s", text)
			}
			var found *FieldError
			for _, fe := range fes {
				if fe.Field == tc.field && strings.Contains(fe.Error(), tc.text) {
					found = fe
				}
			}
			if found == nil {
				t.Fatalf("want an error on %s containing %q, got:\n%v", tc.field, tc.text, err)
			}
			// The line is the line of the key (or of its section).
			if found.Line == 0 {
				t.Errorf("error without a line: %v", found)
			}
		})
	}
}

// TestDerivedTypesAndSchemaChecks: derived fields get the type of their
// expression; key, filter, where and aggregates may use derived and
// lookup fields, and are checked against them.
func TestDerivedTypesAndSchemaChecks(t *testing.T) {
	s, err := Parse([]byte(specWith(
		"derived: [{name: status_class, expr: 'int(status / 100)'}, {name: slow, expr: 'latency_ms > 500'}, {name: agent, expr: 'lower(ua)'}, {name: ratio, expr: 'latency_ms / 2'}]",
		"lookups: [{name: owners, topic: owners, on: endpoint, fields: [team]}]",
		"key: [team, status_class]",
		"filter: 'slow || status_class == 5'",
		"aggregates: [{name: n, op: count, where: 'team != \"x\"'}, {name: top, op: top_k, k: 5, field: agent}, {name: r, op: sum, field: ratio}]",
	)))
	if err != nil {
		t.Fatal(err)
	}
	schema := map[string]FieldType{"status": FieldInt, "latency_ms": FieldInt, "ua": FieldString, "endpoint": FieldString}
	c, err := s.Compile(schema)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []FieldType{FieldInt, FieldBool, FieldString, FieldFloat} {
		if got := c.Derived[i].Type(); got != want {
			t.Errorf("derived[%d] %s: type %v, want %v", i, s.Derived[i].Name, got, want)
		}
	}
	// A sum of a string derived field is refused with the schema.
	s.Aggregates[2].Field = "agent"
	if _, err := s.Compile(schema); err == nil || !strings.Contains(err.Error(), `sum needs a number, and field "agent" is a string`) {
		t.Errorf("sum of a string derived field: %v", err)
	}
	s.Aggregates[2].Field = "ratio"
	s.Lookups[0].On = "endpont"
	if _, err := s.Compile(schema); err == nil || !strings.Contains(err.Error(), `lookups[0].on: field "endpont" is neither in the record schema nor a derived field`) {
		t.Errorf("lookup on a missing field: %v", err)
	}
}

// TestDescribeTopKBound: describe states top_k's error bound in words,
// with the numbers of the sketch.
func TestDescribeTopKBound(t *testing.T) {
	s, err := Parse([]byte(specWith("aggregates: [{name: top, op: top_k, k: 10, field: ua}]")))
	if err != nil {
		t.Fatal(err)
	}
	d := Describe(s, 0)
	for _, want := range []string{"the 10 most frequent values of ua", "exact while a window has at most 100 distinct values", "1/101 of the window's records"} {
		if !strings.Contains(strings.Join(strings.Fields(d), " "), want) {
			t.Errorf("describe lacks %q:\n%s", want, d)
		}
	}
}
