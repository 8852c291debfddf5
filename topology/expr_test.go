package topology

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

func jsonRecord(t *testing.T, s string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestCompileErrorsNameExpressionAndPosition(t *testing.T) {
	for _, tc := range []struct {
		src    string
		fields map[string]FieldType
		line   int
		column int
		msg    string
	}{
		{"status >>= 5", nil, 1, 9, `expression "status >>= 5": unexpected token Operator(">=") (column 9)`},
		{"status >", nil, 1, 8, "unexpected token EOF"},
		{"status == 500 &&\n  endpont >= 5", map[string]FieldType{"status": FieldInt}, 2, 3, `unknown name endpont (line 2, column 3)`},
		{"lenn(endpoint) > 1", nil, 1, 1, "unknown function lenn()"},
		{"ts > now()", nil, 1, 6, "now() reads the wall clock"},
		{"", nil, 0, 0, `expression "": is empty`},
		{"endpoint >= 500", map[string]FieldType{"endpoint": FieldString}, 1, 10, "mismatched types string and int"},
		{"status", map[string]FieldType{"status": FieldInt}, 0, 0, "expected bool, but got int64"},
		{`"a" + 1 > 0`, nil, 1, 5, "mismatched types string and int"},
	} {
		t.Run(tc.src, func(t *testing.T) {
			_, err := CompileBool(tc.src, tc.fields)
			var ee *ExprError
			if !errors.As(err, &ee) {
				t.Fatalf("err = %v (%T), want an *ExprError", err, err)
			}
			if ee.Expr != tc.src || ee.Line != tc.line || ee.Column != tc.column || !strings.Contains(ee.Error(), tc.msg) {
				t.Errorf("got %q at %d:%d, want %q at %d:%d", ee.Error(), ee.Line, ee.Column, tc.msg, tc.line, tc.column)
			}
			if !strings.Contains(ee.Error(), fmt.Sprintf("%q", tc.src)) {
				t.Errorf("%q does not quote the expression", ee.Error())
			}
		})
	}
}

func TestEvalJSONRecords(t *testing.T) {
	rec := jsonRecord(t, `{"status": 503, "endpoint": "/checkout", "latency_ms": 12.5, "ok": false,
		"tags": ["a", "b"], "user": {"tier": "gold"}, "nothing": null}`)
	for _, tc := range []struct {
		src  string
		want bool
	}{
		{"status >= 500", true},        // float64 from JSON against an int literal
		{"status == 503", true},        // equality across float64 and int
		{"status in [502, 503]", true}, // and membership
		{"latency_ms > 12 && latency_ms < 13", true},
		{`endpoint != "/health"`, true},
		{`endpoint startsWith "/check"`, true},
		{`endpoint matches "^/c"`, true},
		{"!ok", true},
		{`"a" in tags`, true},
		{`user.tier == "gold"`, true},
		{"int(status) % 100 == 3", true}, // % needs integers; JSON numbers are float64
		{"len(tags) == 2", true},
		{"nothing == nil", true},
		// A missing field reads as nil.
		{"missing == 500", false},
		{`missing != "/health"`, true},
		{"missing == nil", true},
		{"(missing ?? 0) >= 500", false},
		{"missing != nil && missing >= 500", false},
		{`"missing" in $env`, false},
		{`"status" in $env`, true},
		{`missing startsWith "/"`, false},
	} {
		t.Run(tc.src, func(t *testing.T) {
			e, err := CompileBool(tc.src, nil)
			if err != nil {
				t.Fatal(err)
			}
			got, err := e.Eval(rec)
			if err != nil || got != tc.want {
				t.Errorf("Eval = %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

func TestEvalMissingFieldIsAnError(t *testing.T) {
	e, err := CompileBool(`endpoint != "/health" && status >= 500`, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.Eval(map[string]any{"endpoint": "/checkout"})
	var ee *EvalError
	if !errors.Is(err, ErrMissingField) || !errors.As(err, &ee) || ee.Field != "status" {
		t.Fatalf("err = %v, want an *EvalError for missing field status", err)
	}
	want := `expression "endpoint != \"/health\" && status >= 500": field "status" is missing from the record (invalid operation: <nil> >= int (column 33))`
	if err.Error() != want {
		t.Errorf("got  %s\nwant %s", err, want)
	}
	// Short-circuit: the missing field is never read.
	if got, err := e.Eval(map[string]any{"endpoint": "/health"}); got || err != nil {
		t.Errorf("Eval = %v, %v; want false, nil", got, err)
	}
	// null is not missing, but is still an error.
	_, err = e.Eval(map[string]any{"endpoint": "/checkout", "status": nil})
	if err == nil || errors.Is(err, ErrMissingField) {
		t.Errorf("null status: err = %v, want an error that is not ErrMissingField", err)
	}
	// A wrong type at run time.
	_, err = e.Eval(map[string]any{"endpoint": "/checkout", "status": "500"})
	if !errors.As(err, &ee) || ee.Field != "" || !strings.Contains(err.Error(), "string >= int") {
		t.Errorf("string status: err = %v", err)
	}
	// % is for integers only, and JSON numbers are float64.
	e2, _ := CompileBool("status % 100 == 3", nil)
	if _, err := e2.Eval(map[string]any{"status": 503.0}); err == nil || !strings.Contains(err.Error(), "float64 % int") {
		t.Errorf("float %% int: err = %v", err)
	}
	// A result that is not a bool.
	e, _ = CompileBool("status", nil)
	if _, err := e.Eval(map[string]any{"status": 1.0}); !errors.As(err, &ee) {
		t.Errorf("non-bool result: err = %v", err)
	}
	// A nil env is a record without fields.
	e, _ = CompileBool("status >= 500", nil)
	if _, err := e.Eval(nil); !errors.Is(err, ErrMissingField) {
		t.Errorf("nil env: err = %v", err)
	}
}

func TestEvalTypedFields(t *testing.T) {
	fields := map[string]FieldType{
		"status": FieldInt, "endpoint": FieldString, "latency_ms": FieldFloat,
		"ok": FieldBool, "at": FieldTime, "extra": FieldAny,
	}
	for _, tc := range []struct {
		src  string
		env  map[string]any
		want bool
	}{
		{"status >= 500", map[string]any{"status": int64(503)}, true},
		{"status == 503", map[string]any{"status": int64(503)}, true},
		{"status == 503", map[string]any{"status": 503}, true}, // other integer types work too
		{"status == 503", map[string]any{"status": int32(503)}, true},
		{"status in [500, 503]", map[string]any{"status": int64(503)}, true},
		{"latency_ms > status", map[string]any{"status": int64(1), "latency_ms": 1.5}, true},
		{`endpoint == "/x" && ok`, map[string]any{"endpoint": "/x", "ok": true}, true},
		{`at > date("2025-01-01")`, map[string]any{"at": time.Date(2025, 6, 2, 0, 0, 0, 0, time.UTC)}, true},
		{`at - date("2025-06-01T00:00:00Z") > duration("1h")`, map[string]any{"at": time.Date(2025, 6, 2, 0, 0, 0, 0, time.UTC)}, true},
		{"extra == 1", map[string]any{"extra": 1.0}, true},
	} {
		t.Run(tc.src, func(t *testing.T) {
			e, err := CompileBool(tc.src, fields)
			if err != nil {
				t.Fatal(err)
			}
			if got, err := e.Eval(tc.env); err != nil || got != tc.want {
				t.Errorf("Eval = %v, %v; want %v", got, err, tc.want)
			}
		})
	}
	for _, tc := range []struct{ src, msg string }{
		{"stauts >= 500", "unknown name stauts"},
		{"endpoint >= 500", "mismatched types string and int"},
		{"ok > 1", "mismatched types bool and int"},
		{`status == "500"`, "mismatched types int64 and string"},
		{"latency_ms + endpoint > 0", "mismatched types float64 and string"},
	} {
		if _, err := CompileBool(tc.src, fields); err == nil || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("CompileBool(%q) err = %v, want %q", tc.src, err, tc.msg)
		}
	}
}

func TestExprFields(t *testing.T) {
	e, err := CompileBool(`let x = status; x >= 500 && endpoint != "/h" && user.tier == "gold" && all(tags, {# != "x"}) && $env.y == nil`, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(e.Fields(), ","); got != "endpoint,status,tags,user" {
		t.Errorf("Fields = %s", got)
	}
	if e.String() == "" {
		t.Error("String is empty")
	}
}

// TestEvalConcurrent is for the race detector: one Expr, many goroutines.
func TestEvalConcurrent(t *testing.T) {
	e, err := CompileBool("status >= 500", nil)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 1000; i++ {
				status := float64(400 + i%200)
				got, err := e.Eval(map[string]any{"status": status})
				if err != nil || got != (status >= 500) {
					t.Errorf("Eval(%v) = %v, %v", status, got, err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func TestSpecCompile(t *testing.T) {
	s, err := Parse([]byte(specWith(
		`filter: endpoint != "/health"`,
		"aggregates: [{name: n, op: count}, {name: errors, op: count, where: status >= 500}, {name: p99, op: p99, field: latency_ms}]",
	)))
	if err != nil {
		t.Fatal(err)
	}
	c, err := s.Compile(nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Filter == nil || len(c.Where) != 3 || c.Where[0] != nil || c.Where[1] == nil || c.Where[2] != nil {
		t.Fatalf("Compiled = %+v", c)
	}
	if ok, err := c.Where[1].Eval(jsonRecord(t, `{"status": 502}`)); !ok || err != nil {
		t.Errorf("where = %v, %v", ok, err)
	}

	// Against a schema: everything the spec names is checked.
	schema := map[string]FieldType{"endpoint": FieldString, "status": FieldInt, "latency_ms": FieldFloat}
	if _, err := s.Compile(schema); err != nil {
		t.Errorf("Compile(schema): %v", err)
	}
	s.Time.Field = "ts"
	s.Key = []string{"endpont"}
	s.Filter = "endpoint >= 1"
	s.Aggregates[1].Where = "stats >= 500"
	s.Aggregates[2].Field = "endpoint"
	_, err = s.Compile(schema)
	var got []string
	for _, fe := range FieldErrors(err) {
		got = append(got, fe.Field+": "+fe.Problem+"; "+fe.Fix)
	}
	want := []string{
		`filter: expression "endpoint >= 1": invalid operation: >= (mismatched types string and int) (column 10); see the expression language at https://expr-lang.org/docs/language-definition`,
		`aggregates[1].where: expression "stats >= 500": unknown name stats (column 1); the record schema has no such field; check its spelling`,
		`key[0]: field "endpont" is not in the record schema; did you mean "endpoint"?`,
		`time.field: field "ts" is not in the record schema; the schema has: endpoint, latency_ms, status`,
		`aggregates[2].field: p99 needs a number, and field "endpoint" is a string; name a numeric field, or use op distinct, top_k or count`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func BenchmarkEval(b *testing.B) {
	e, err := CompileBool(`status >= 500 && endpoint != "/health"`, nil)
	if err != nil {
		b.Fatal(err)
	}
	env := map[string]any{"status": 503.0, "endpoint": "/checkout"}
	b.ReportAllocs()
	for b.Loop() {
		if ok, err := e.Eval(env); !ok || err != nil {
			b.Fatal(ok, err)
		}
	}
}

// Threshold reads the number a field is first compared with from the
// syntax tree: the value an alert reports as its threshold.
func TestExprThreshold(t *testing.T) {
	for _, c := range []struct {
		src, field string
		want       float64
		ok         bool
	}{
		{"errors > 5", "errors", 5, true},
		{"requests >= 20 && errors > requests * 0.2", "errors", 0, false},
		{"requests >= 20 && errors > requests * 0.2", "requests", 20, true},
		{"p99 >= 1.5e3", "p99", 1500, true},
		{"delta < -2.5", "delta", -2.5, true},
		{"errors_total > 9 && errors > 3", "errors", 3, true},
		{"errors > 3 || errors > 7", "errors", 3, true},
		{"5 < errors", "errors", 0, false},
		{"errors != 5", "errors", 0, false},
	} {
		e, err := CompileBool(c.src, nil)
		if err != nil {
			t.Fatalf("%s: %v", c.src, err)
		}
		v, ok := e.Threshold(c.field)
		if ok != c.ok || v != c.want {
			t.Errorf("Threshold(%q) of %q = %v, %v; want %v, %v", c.field, c.src, v, ok, c.want, c.ok)
		}
	}
}
