package schema

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func TestDeriveOutputGolden(t *testing.T) {
	o := Output{
		Name:       "http_requests_result",
		Namespace:  "eddy.pipelines",
		Doc:        "p99 latency and error count per endpoint per minute",
		KeyFields:  []string{"endpoint", "method"},
		Aggregates: []string{"requests", "errors", "p99_latency_ms"},
	}
	got, err := DeriveOutput(o)
	if err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "http_requests_result.avsc")
	if *update {
		if err := os.WriteFile(golden, []byte(got+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test ./schema -run TestDeriveOutputGolden -update to create it)", err)
	}
	if got+"\n" != string(want) {
		t.Errorf("derived schema changed:\n got %s\nwant %s(a change here is a new schema version for every deployed pipeline: if intended, run with -update)", got, want)
	}
	for range 20 {
		if again, _ := DeriveOutput(o); again != got {
			t.Fatal("DeriveOutput is not deterministic")
		}
	}

	// The kinds a pipeline will check.
	s, err := ParseSchema(got)
	if err != nil {
		t.Fatal(err)
	}
	f := Fields(&Schema{Avro: s})
	if f["endpoint"].Kind != KindString || f[FieldWindowStart].Kind != KindTime || f[FieldWindowEnd].Kind != KindTime ||
		f["p99_latency_ms"] != (FieldType{Kind: KindFloat, Nullable: true, Avro: "double"}) {
		t.Errorf("fields = %+v", f)
	}
}

// TestDeriveOutputTypes: counts become longs and the minimum of an int
// field an int; an aggregate without a type stays a double, and without
// any types the text is the one eddy derived before aggregates had types
// (the golden file above), so a subject registered then still matches.
func TestDeriveOutputTypes(t *testing.T) {
	o := Output{Name: "r", KeyFields: []string{"k"}, Aggregates: []string{"n", "lo", "p99"},
		AggregateTypes: map[string]string{"n": "long", "lo": "int"}}
	got, err := DeriveOutput(o)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ParseSchema(got)
	if err != nil {
		t.Fatal(err)
	}
	f := Fields(&Schema{Avro: s})
	for name, want := range map[string]FieldType{
		"n":   {Kind: KindInt, Nullable: true, Avro: "long"},
		"lo":  {Kind: KindInt, Nullable: true, Avro: "int"},
		"p99": {Kind: KindFloat, Nullable: true, Avro: "double"},
	} {
		if f[name] != want {
			t.Errorf("field %s = %+v, want %+v", name, f[name], want)
		}
	}
	o.AggregateTypes = map[string]string{"n": "decimal"}
	if _, err := DeriveOutput(o); !errors.Is(err, ErrInvalidSchema) {
		t.Errorf("type decimal: %v, want ErrInvalidSchema", err)
	}
}

func TestDeriveOutputRefuses(t *testing.T) {
	for name, o := range map[string]Output{
		"no name":            {},
		"bad name":           {Name: "1result"},
		"bad namespace":      {Name: "r", Namespace: "eddy..x"},
		"bad key field":      {Name: "r", KeyFields: []string{"user-id"}},
		"bad aggregate":      {Name: "r", Aggregates: []string{"p99.9"}},
		"aggregate is a key": {Name: "r", KeyFields: []string{"a"}, Aggregates: []string{"a"}},
		"window field":       {Name: "r", Aggregates: []string{"window_end"}},
		"duplicate key":      {Name: "r", KeyFields: []string{"a", "a"}},
	} {
		if _, err := DeriveOutput(o); !errors.Is(err, ErrInvalidSchema) {
			t.Errorf("%s: %v, want ErrInvalidSchema", name, err)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
}

func TestDeriveOutputKey(t *testing.T) {
	o := Output{Name: "http_requests_key", Namespace: "eddy.pipelines", KeyFields: []string{"endpoint", "method"},
		Aggregates: []string{"ignored"}}
	got, err := DeriveOutputKey(o)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"type":"record","name":"http_requests_key","namespace":"eddy.pipelines","fields":[` +
		`{"name":"endpoint","type":"string","doc":"grouping key field"},{"name":"method","type":"string","doc":"grouping key field"}]}`
	if got != want {
		t.Errorf("key schema changed (a new version for every deployed pipeline):\n got %s\nwant %s", got, want)
	}
	for range 20 {
		if again, _ := DeriveOutputKey(o); again != got {
			t.Fatal("DeriveOutputKey is not deterministic")
		}
	}
	for name, o := range map[string]Output{
		"no name":       {KeyFields: []string{"a"}},
		"bad namespace": {Name: "k", Namespace: "eddy..x", KeyFields: []string{"a"}},
		"no key":        {Name: "k"},
		"bad key field": {Name: "k", KeyFields: []string{"user-id"}},
		"duplicate key": {Name: "k", KeyFields: []string{"a", "a"}},
	} {
		if _, err := DeriveOutputKey(o); !errors.Is(err, ErrInvalidSchema) {
			t.Errorf("%s: %v, want ErrInvalidSchema", name, err)
		}
	}
}
