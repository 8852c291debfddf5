package topology

// The expression language of filters, where clauses, derived fields and
// alert conditions (expr-lang), with eddy's functions and type checks.
// (Long: the functions' signatures and the checker belong together.)

import (
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/types"
	"github.com/expr-lang/expr/vm"
)

// FieldType is the type of a record field, as far as expressions care. It
// describes the record schema given to CompileBool and Spec.Compile, and
// says which Go type the runtime must put in Eval's env for the field.
type FieldType uint8

const (
	// FieldAny is a field whose type is not known until run time; any Go
	// value (or nil) may be passed.
	FieldAny FieldType = iota
	// FieldString: pass a string.
	FieldString
	// FieldInt: pass an int64 (any Go integer type works, but int64 is
	// what the expression was checked against).
	FieldInt
	// FieldFloat: pass a float64.
	FieldFloat
	// FieldBool: pass a bool.
	FieldBool
	// FieldTime: pass a time.Time.
	FieldTime
)

var fieldTypeNames = [...]string{"any", "string", "int", "float", "bool", "time"}

func (t FieldType) String() string {
	if int(t) < len(fieldTypeNames) {
		return fieldTypeNames[t]
	}
	return fmt.Sprintf("FieldType(%d)", t)
}

func (t FieldType) exprType() types.Type {
	switch t {
	case FieldString:
		return types.String
	case FieldInt:
		// int64, not int: expr specialises == for two ints and would panic
		// on an int64 value at run time.
		return types.Int64
	case FieldFloat:
		return types.Float64
	case FieldBool:
		return types.Bool
	case FieldTime:
		return types.TypeOf(time.Time{})
	}
	return types.Any
}

func (t FieldType) numeric() bool { return t == FieldInt || t == FieldFloat || t == FieldAny }

// ErrMissingField is the class of evaluation errors caused by a field that
// the expression reads and the record does not have (see Expr.Eval).
var ErrMissingField = errors.New("field missing from the record")

// Expr is a boolean expression over a record's fields, compiled once (by
// CompileBool) and evaluated per record (by Eval). The language is expr
// (https://expr-lang.org/docs/language-definition): e.g.
// `status >= 500 && endpoint != "/health"`.
//
// An Expr is safe for concurrent use: each Eval borrows a VM from a pool.
type Expr struct {
	src     string
	program *vm.Program
	fields  []string // top-level fields the expression names, sorted
	usesEnv bool     // reads $env
	typ     FieldType
	// thresholds: per field, the number it is first compared with
	// (field op number, op one of > >= < <= ==), from the syntax tree.
	thresholds map[string]float64
	vms        sync.Pool
}

// ExprError is an expression that does not compile: a syntax error, an
// unknown field or function, or a type error. Line and Column (from 1)
// point at the problem within Expr.
type ExprError struct {
	Expr    string
	Line    int // 0 if unknown
	Column  int // 0 if unknown
	Message string
	// Hint says how to fix it, when there is more to say than Message.
	Hint string
}

func (e *ExprError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "expression %q: %s", e.Expr, e.Message)
	switch {
	case e.Line > 1:
		fmt.Fprintf(&b, " (line %d, column %d)", e.Line, e.Column)
	case e.Column > 0:
		fmt.Fprintf(&b, " (column %d)", e.Column)
	}
	return b.String()
}

// EvalError is an expression that failed on one record, e.g. `status >=
// 500` on a record whose status is missing or a string. The runtime
// dead-letters the record with this error as the reason.
type EvalError struct {
	Expr string
	// Field is a field the expression names and the record lacks, the
	// likely cause; "" if the record has them all.
	Field string
	Err   error
}

func (e *EvalError) Error() string {
	if e.Field != "" {
		return fmt.Sprintf("expression %q: field %q is missing from the record (%v)", e.Expr, e.Field, e.Err)
	}
	return fmt.Sprintf("expression %q: %v", e.Expr, e.Err)
}

// Unwrap makes errors.Is(err, ErrMissingField) true when Field is set.
func (e *EvalError) Unwrap() []error {
	if e.Field != "" {
		return []error{ErrMissingField, e.Err}
	}
	return []error{e.Err}
}

// CompileBool compiles a boolean expression.
//
// With fields nil (JSON input, no schema), any field name is accepted and
// typed at run time: numbers decoded from JSON are float64 and compare with
// integer literals as expected (`status >= 500`). With fields given (a
// known schema), every field the expression names must be in it and the
// operations must suit the field types: a misspelt field or `endpoint >=
// 500` on a string field is an error here, at start-up, not per record.
//
// Either way, calls to unknown functions are errors, and so is now(): the
// wall clock would make replays give different results (compare with the
// record's event time field instead). Dates are parsed in UTC.
//
// A non-nil error is an *ExprError.
func CompileBool(src string, fields map[string]FieldType) (*Expr, error) {
	return compile(src, fields, true)
}

// CompileValue compiles an expression of any type, for a derived field:
// the rules are CompileBool's, without requiring a boolean. Type reports
// the type of its result when the schema (fields) makes it known.
func CompileValue(src string, fields map[string]FieldType) (*Expr, error) {
	return compile(src, fields, false)
}

func compile(src string, fields map[string]FieldType, asBool bool) (*Expr, error) {
	if strings.TrimSpace(src) == "" {
		return nil, &ExprError{Expr: src, Message: "is empty", Hint: "remove the key, or write an expression such as `status >= 500`"}
	}
	env := types.Map{types.Extra: types.Any}
	if fields != nil {
		env = make(types.Map, len(fields))
		for name, t := range fields {
			env[name] = t.exprType()
		}
	}
	refs := &refCollector{fields: make(map[string]bool), lets: make(map[string]bool), thresholds: make(map[string]float64)}
	opts := []expr.Option{
		expr.Env(env),
		expr.Timezone("UTC"),
		expr.Patch(refs),
	}
	if asBool {
		opts = append(opts, expr.AsBool())
	}
	program, err := expr.Compile(src, opts...)
	if refs.err != nil { // reported first: it explains type errors such as now() > 1
		refs.err.Expr = src
		refs.err.Line, refs.err.Column = position(src, refs.errAt)
		return nil, refs.err
	}
	if err != nil {
		return nil, newExprError(src, err)
	}
	e := &Expr{src: src, program: program, usesEnv: refs.env, thresholds: refs.thresholds, typ: FieldBool}
	if !asBool {
		e.typ = fieldTypeOf(program)
	}
	for f := range refs.fields {
		if !refs.lets[f] {
			e.fields = append(e.fields, f)
		}
	}
	sort.Strings(e.fields)
	e.vms.New = func() any { return new(vm.VM) }
	return e, nil
}

// fieldTypeOf is the type of a program's result, FieldAny when it is not
// known before run time.
func fieldTypeOf(p *vm.Program) FieldType {
	node := p.Node()
	if node == nil {
		return FieldAny
	}
	t := node.Type()
	if t == nil {
		return FieldAny
	}
	switch t.Kind() {
	case reflect.String:
		return FieldString
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return FieldInt
	case reflect.Float32, reflect.Float64:
		return FieldFloat
	case reflect.Bool:
		return FieldBool
	}
	if t == reflect.TypeOf(time.Time{}) {
		return FieldTime
	}
	return FieldAny
}

// Type is the type of the expression's result: FieldBool for CompileBool,
// and for CompileValue what the schema makes known (FieldAny otherwise).
func (e *Expr) Type() FieldType { return e.typ }

// Value evaluates a CompileValue expression on one record's fields. Its
// errors are Eval's (*EvalError). A result that is not a string, number,
// boolean, time or nil is an error too: a derived field is a scalar.
func (e *Expr) Value(env map[string]any) (any, error) {
	m := e.vms.Get().(*vm.VM)
	out, err := m.Run(e.program, env)
	e.vms.Put(m)
	if err != nil {
		return nil, e.evalError(env, err)
	}
	switch v := out.(type) {
	case nil, string, float64, bool, int64, time.Time:
		return v, nil
	case int:
		return int64(v), nil
	case int32:
		return int64(v), nil
	case int8:
		return int64(v), nil
	case int16:
		return int64(v), nil
	case uint8:
		return int64(v), nil
	case uint16:
		return int64(v), nil
	case uint32:
		return int64(v), nil
	case uint:
		return int64(v), nil
	case uint64:
		return int64(v), nil
	case float32:
		return float64(v), nil
	case time.Duration:
		return v.Milliseconds(), nil
	}
	return nil, &EvalError{Expr: e.src, Err: fmt.Errorf("the result is a %T: a derived field must be a string, number, boolean or time", out)}
}

// String returns the expression as written.
func (e *Expr) String() string { return e.src }

// Fields returns the top-level record fields the expression names, sorted.
func (e *Expr) Fields() []string { return e.fields }

// Threshold returns the number that field is first compared with in the
// expression (as in "errors > 5" or "p99 >= 1.5e3": the field on the left,
// a number literal on the right, one of > >= < <= ==), for alerts to
// report; ok is false when there is no such comparison.
func (e *Expr) Threshold(field string) (v float64, ok bool) {
	v, ok = e.thresholds[field]
	return v, ok
}

// ReadsEnv reports whether the expression reads $env, and so may read any
// field, not only those Fields names.
func (e *Expr) ReadsEnv() bool { return e.usesEnv }

// Eval evaluates the expression on one record's fields.
//
// A field the record does not have reads as nil, exactly like a JSON null:
// == and != compare it like any value (so `status == 500` is false and
// `endpoint != "/health"` is true when the field is missing), and the
// string operators (matches, contains, startsWith, endsWith) are false on
// it. Ordering, arithmetic and functions on nil fail: `status >= 500` on a
// record without status returns an *EvalError that wraps ErrMissingField,
// and the runtime dead-letters the record, so a renamed or vanished field
// shows up in the dead-letter topic instead of silently counting nothing.
// Expressions that expect a field to be absent at times say so:
// `(status ?? 0) >= 500`, `status != nil && status >= 500`, or
// `"status" in $env`.
//
// Any other failure (e.g. `status >= 500` on a string) is an *EvalError
// too. The expression reads env and never modifies it.
func (e *Expr) Eval(env map[string]any) (bool, error) {
	m := e.vms.Get().(*vm.VM)
	out, err := m.Run(e.program, env)
	e.vms.Put(m)
	if err != nil {
		return false, e.evalError(env, err)
	}
	b, ok := out.(bool)
	if !ok {
		return false, &EvalError{Expr: e.src, Err: fmt.Errorf("the result is %T, not true or false", out)}
	}
	return b, nil
}

func (e *Expr) evalError(env map[string]any, err error) error {
	msg := err.Error()
	var fe *file.Error
	if errors.As(err, &fe) {
		msg = fe.Message
		if fe.Line > 0 {
			msg += fmt.Sprintf(" (column %d)", fe.Column+1)
		}
	}
	ee := &EvalError{Expr: e.src, Err: errors.New(msg)}
	for _, f := range e.fields {
		if _, ok := env[f]; !ok {
			ee.Field = f
			break
		}
	}
	return ee
}

// newExprError converts an expr compile error.
func newExprError(src string, err error) *ExprError {
	ee := &ExprError{Expr: src, Message: err.Error()}
	var fe *file.Error
	if errors.As(err, &fe) {
		ee.Message = fe.Message
		if fe.Snippet != "" || fe.Line > 0 {
			ee.Line, ee.Column = fe.Line, fe.Column+1
		}
		if strings.HasPrefix(fe.Message, "unknown name ") {
			ee.Hint = "the record schema has no such field; check its spelling"
		}
	}
	return ee
}

// refCollector walks the expression tree before type checking: it notes the
// fields the expression names and rejects unknown functions and now().
type refCollector struct {
	fields map[string]bool // identifiers, some of which may be let variables
	lets   map[string]bool
	env    bool // $env: the expression may read any field
	// thresholds: the first number each field is compared with (Threshold).
	thresholds map[string]float64
	err        *ExprError
	errAt      int
}

func (r *refCollector) fail(n ast.Node, msg, hint string) {
	if r.err == nil {
		r.err, r.errAt = &ExprError{Message: msg, Hint: hint}, n.Location().From
	}
}

func (r *refCollector) Visit(node *ast.Node) {
	switch n := (*node).(type) {
	case *ast.IdentifierNode:
		if n.Value != "$env" {
			r.fields[n.Value] = true
		} else {
			r.env = true
		}
	case *ast.VariableDeclaratorNode:
		r.lets[n.Name] = true
	case *ast.BinaryNode:
		switch n.Operator {
		case ">", ">=", "<", "<=", "==":
			id, ok := n.Left.(*ast.IdentifierNode)
			if !ok {
				break
			}
			if _, seen := r.thresholds[id.Value]; seen {
				break
			}
			if v, ok := numberLiteral(n.Right); ok {
				r.thresholds[id.Value] = v
			}
		}
	case *ast.CallNode:
		// Builtins are BuiltinNodes; eddy defines no functions of its own,
		// so a call by name is a call to a function that does not exist
		// (or, without a schema, to a field).
		if id, ok := n.Callee.(*ast.IdentifierNode); ok {
			delete(r.fields, id.Value)
			r.fail(n, fmt.Sprintf("unknown function %s()", id.Value),
				"see the functions at https://expr-lang.org/docs/language-definition")
		}
	case *ast.BuiltinNode:
		if n.Name == "now" {
			r.fail(n, "now() reads the wall clock, so replaying the same records would give different results",
				"compare with the record's event time field instead")
		}
	}
}

// numberLiteral is the value of an integer or float literal, possibly
// negated.
func numberLiteral(n ast.Node) (float64, bool) {
	switch n := n.(type) {
	case *ast.IntegerNode:
		return float64(n.Value), true
	case *ast.FloatNode:
		return n.Value, true
	case *ast.UnaryNode:
		if n.Operator == "-" {
			if v, ok := numberLiteral(n.Node); ok {
				return -v, true
			}
		}
	}
	return 0, false
}

// position converts a rune offset in src to a line and column, from 1.
func position(src string, offset int) (line, col int) {
	line, col = 1, 1
	i := 0
	for _, r := range src {
		if i == offset {
			break
		}
		if r == '\n' {
			line, col = line+1, 1
		} else {
			col++
		}
		i++
	}
	return line, col
}

// Compiled holds a spec's expressions, compiled against a record schema.
type Compiled struct {
	// Derived holds one entry per Spec.Derived, in order: the compiled
	// Derived.Expr (CompileValue).
	Derived []*Expr
	// Filter is the compiled Spec.Filter, nil if there is none.
	Filter *Expr
	// Where holds one entry per aggregate, in order: the compiled
	// Aggregate.Where, or nil if the aggregate has none.
	Where []*Expr
}

// Compile compiles the spec's expressions against the record schema fields
// (nil when there is none, as for JSON; see CompileBool). With a schema it
// also checks that the key fields, the time field and the aggregate fields
// exist and that numeric aggregates (sum, min, max, mean, percentiles) read
// numeric fields. Errors are *FieldErrors joined with errors.Join, like
// Validate's. The runtime calls it once at start-up, after the schema is
// known.
//
// With several rollups, Compile on the pipeline's spec compiles the shared
// expressions (Where is empty) and checks every rollup that reads the
// source as well: its where clauses and, with a schema, its key and
// aggregate fields, with errors under "rollups[i].". Each rollup's own
// spec (RollupSpecs) compiles its where clauses for it.
func (s *Spec) Compile(fields map[string]FieldType) (*Compiled, error) {
	var errs []*FieldError
	c := &Compiled{Where: make([]*Expr, len(s.Aggregates)), Derived: make([]*Expr, len(s.Derived))}
	// The fields the filter, key, where and aggregates see: the record's,
	// then the derived fields, then the lookups' fields.
	var env map[string]FieldType
	if fields != nil {
		env = make(map[string]FieldType, len(fields)+len(s.Derived))
		for k, v := range fields {
			env[k] = v
		}
	}
	for i, d := range s.Derived {
		e, err := CompileValue(d.Expr, env)
		if err != nil {
			errs = append(errs, exprFieldError(fmt.Sprintf("derived[%d].expr", i), err))
		}
		c.Derived[i] = e
		if env == nil {
			continue
		}
		if _, ok := fields[d.Name]; ok {
			errs = append(errs, &FieldError{Field: fmt.Sprintf("derived[%d].name", i),
				Problem: fmt.Sprintf("%q is already a field of the record schema", d.Name), Fix: "choose another name"})
		}
		t := FieldAny
		if e != nil {
			t = e.Type()
		}
		env[d.Name] = t
	}
	for i, l := range s.Lookups {
		if env == nil {
			continue
		}
		if _, ok := env[l.On]; !ok && l.On != "" {
			errs = append(errs, &FieldError{Field: fmt.Sprintf("lookups[%d].on", i),
				Problem: fmt.Sprintf("field %q is neither in the record schema nor a derived field", l.On), Fix: schemaHint(env, l.On)})
		}
		for j, f := range l.Fields {
			if _, ok := fields[f]; ok {
				errs = append(errs, &FieldError{Field: fmt.Sprintf("lookups[%d].fields[%d]", i, j),
					Problem: fmt.Sprintf("%q is already a field of the record schema", f), Fix: "choose another name, or drop it from the lookup"})
			}
			env[f] = FieldAny // JSON values: typed at run time
		}
	}
	if s.Filter != "" {
		e, err := CompileBool(s.Filter, env)
		if err != nil {
			errs = append(errs, exprFieldError("filter", err))
		}
		c.Filter = e
	}
	for i, a := range s.Aggregates {
		if a.Where == "" {
			continue
		}
		e, err := CompileBool(a.Where, env)
		if err != nil {
			errs = append(errs, exprFieldError(fmt.Sprintf("aggregates[%d].where", i), err))
		}
		c.Where[i] = e
	}
	if env != nil {
		errs = append(errs, s.checkSchema(env)...)
	}
	for i, r := range s.Rollups {
		if r.From != "" {
			continue // merges the results of a rollup checked here
		}
		p := fmt.Sprintf("rollups[%d].", i)
		for j, a := range r.Aggregates {
			if a.Where == "" {
				continue
			}
			if _, err := CompileBool(a.Where, env); err != nil {
				errs = append(errs, exprFieldError(fmt.Sprintf("%saggregates[%d].where", p, j), err))
			}
		}
		if env != nil {
			one := &Spec{Key: r.Key, Aggregates: r.Aggregates}
			for _, e := range one.checkSchema(env) {
				e.Field = p + e.Field
				errs = append(errs, e)
			}
		}
	}
	if len(errs) > 0 {
		return nil, joinFieldErrors(errs)
	}
	return c, nil
}

// checkSchema checks the fields the spec names against a record schema.
func (s *Spec) checkSchema(fields map[string]FieldType) []*FieldError {
	var errs []*FieldError
	missing := func(path, name string) {
		errs = append(errs, &FieldError{Field: path, Problem: fmt.Sprintf("field %q is not in the record schema", name), Fix: schemaHint(fields, name)})
	}
	for i, k := range s.Key {
		if _, ok := fields[k]; !ok {
			missing(fmt.Sprintf("key[%d]", i), k)
		}
	}
	if f := s.Time.Field; f != "" {
		switch t, ok := fields[f]; {
		case !ok:
			missing("time.field", f)
		case t == FieldBool:
			errs = append(errs, &FieldError{Field: "time.field", Problem: fmt.Sprintf("field %q is a bool, not a time", f),
				Fix: "name a field holding milliseconds since the Unix epoch, an RFC 3339 string or a timestamp"})
		}
	}
	for i, a := range s.Aggregates {
		if a.Field == "" {
			continue
		}
		path := fmt.Sprintf("aggregates[%d].field", i)
		t, ok := fields[a.Field]
		switch {
		case !ok:
			missing(path, a.Field)
		case a.Op != AggDistinct && a.Op != AggCount && a.Op != AggTopK && !t.numeric():
			op := a.Op
			if op == AggQuantile {
				op = PercentileName(a.Quantile)
			}
			errs = append(errs, &FieldError{Field: path, Problem: fmt.Sprintf("%s needs a number, and field %q is a %s", op, a.Field, t),
				Fix: "name a numeric field, or use op distinct, top_k or count"})
		}
	}
	return errs
}

// schemaHint suggests the schema field closest to name, or lists them.
func schemaHint(fields map[string]FieldType, name string) string {
	names := make([]string, 0, len(fields))
	for f := range fields {
		names = append(names, f)
	}
	sort.Strings(names)
	best, bestDist := "", 1<<30
	for _, f := range names {
		if d := editDistance(strings.ToLower(name), strings.ToLower(f)); d < bestDist {
			best, bestDist = f, d
		}
	}
	if best != "" && bestDist <= max(1, len(name)/3) {
		return fmt.Sprintf("did you mean %q?", best)
	}
	if len(names) > 20 {
		names = append(names[:20], "...")
	}
	return "the schema has: " + strings.Join(names, ", ")
}
