package topology

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Defaults. Parse and SetDefaults fill these into fields left unset.
const (
	DefaultEmit           = EmitClose
	DefaultStore          = "windows"
	DefaultProcessing     = AtLeastOnce
	DefaultFormat         = FormatJSON
	DefaultCommitInterval = time.Second
	DefaultIdleTimeout    = 10 * time.Second
	DefaultMaxWait        = 2 * time.Minute
	DefaultMaxFuture      = time.Hour
)

// Parse decodes a pipeline spec from YAML, fills in defaults (see
// SetDefaults) and validates it (see Validate).
//
// Decoding is strict: an unknown or misspelt key is an error naming the key
// and its line, with a suggestion. Durations are strings with a unit, as Go
// writes them: "500ms", "10s", "1m30s", "2h". A bare number is an error
// (is 10 seconds or 10 minutes meant?), and so is "1d" (write "24h").
//
// Problems are reported all at once: the error joins one *FieldError per
// problem (see FieldErrors), each with the line of the key in data. Errors
// in the shape of the file (unknown keys, a list where a value belongs, bad
// durations) come first, on their own, since checking the values of a
// misshapen spec would only repeat them; once there are none, every
// problem Validate finds is reported.
func Parse(data []byte) (*Spec, error) {
	doc, err := decodeNode(data)
	if err != nil {
		return nil, err
	}

	// First pass over the node tree: unknown keys, wrong shapes and bad
	// durations, with their paths and lines, all at once. yaml.v3 would stop
	// at the first and say "field windw not found in type topology.Spec".
	w := &keyWalker{lines: make(map[string]int)}
	w.walk(doc, specType, "")
	if len(w.errs) > 0 {
		return nil, joinFieldErrors(w.errs)
	}

	// Second pass: the real decoding, strict as well. The first pass checks
	// everything this one rejects, so an error here is a gap in keyWalker.
	var s Spec
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&s); err != nil {
		return nil, &FieldError{Problem: "cannot decode the spec: " + err.Error(), Err: err}
	}

	s.fillDefaults(func(path string) bool {
		_, ok := w.lines[path]
		return ok
	})
	errs := s.validate()
	for _, e := range errs {
		e.Line = lineOf(w.lines, e.Field)
	}
	if len(errs) > 0 {
		return nil, joinFieldErrors(errs)
	}
	return &s, nil
}

// decodeNode decodes the single YAML document in data and returns its root.
func decodeNode(data []byte) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var root yaml.Node
	if err := dec.Decode(&root); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &FieldError{Problem: "the spec is empty",
				Fix: `start with e.g. "app: checkout-latency"; see docs/pipeline-spec.md`}
		}
		return nil, &FieldError{Problem: "not valid YAML: " + err.Error(), Err: err}
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return nil, &FieldError{Problem: "not valid YAML: " + err.Error(), Err: err}
	default:
		return nil, &FieldError{Line: next.Line, Problem: "a spec file holds one pipeline, this one has a second YAML document",
			Fix: `remove the "---" and what follows, or move it to a file of its own`}
	}
	doc := &root
	if doc.Kind == yaml.DocumentNode && len(doc.Content) == 1 {
		doc = doc.Content[0]
	}
	if doc.Kind != yaml.MappingNode {
		return nil, &FieldError{Line: doc.Line, Problem: "the spec must be a mapping of keys (app, source, key, window, aggregates, output, ...)",
			Fix: `start with e.g. "app: checkout-latency"; see docs/pipeline-spec.md`}
	}
	return doc, nil
}

// lineOf returns the line recorded for path or, when the key is missing,
// for the nearest enclosing key; 0 if none.
func lineOf(lines map[string]int, path string) int {
	for path != "" {
		if l, ok := lines[path]; ok {
			return l
		}
		path = parentPath(path)
	}
	return 0
}

// parentPath drops the last segment of a path: "aggregates[2].field" ->
// "aggregates[2]" -> "aggregates" -> "".
func parentPath(path string) string {
	i := strings.LastIndexAny(path, ".[")
	if i < 0 {
		return ""
	}
	return path[:i]
}

// SetDefaults fills in every unset field that has a default (see the field
// comments of Spec) and turns percentile ops such as "p99" into
// Op "quantile" with Quantile 0.99. Parse calls it; call it yourself on a
// Spec built in Go, before Validate. It does not validate: an op that is not
// a valid percentile is left as written, for Validate to report.
func (s *Spec) SetDefaults() {
	s.fillDefaults(func(string) bool { return false })
}

// fillDefaults fills defaults into zero-valued fields, except those the
// user wrote explicitly (present reports that, by YAML path): an explicit
// "idle_timeout: 0s" must be reported by Validate, not silently replaced.
func (s *Spec) fillDefaults(present func(path string) bool) {
	setString := func(v *string, path, def string) {
		if *v == "" && !present(path) {
			*v = def
		}
	}
	setDuration := func(v *time.Duration, path string, def time.Duration) {
		if *v == 0 && !present(path) {
			*v = def
		}
	}
	// In the multi-rollup form the emit mode, store and output are each
	// rollup's (fillRollupDefaults), and Validate refuses them at the top.
	if !s.MultiRollup() {
		setString(&s.Emit, "emit", DefaultEmit)
		setString(&s.Store, "store", DefaultStore)
		setString(&s.Output.Format, "output.format", DefaultFormat)
	}
	if s.App != "" {
		setString(&s.LateTopic, "late_topic", s.App+"-late")
		setString(&s.DeadLetterTopic, "dead_letter_topic", s.App+"-dlq")
	}
	setString(&s.Processing, "processing", DefaultProcessing)
	setDuration(&s.CommitInterval, "commit_interval", DefaultCommitInterval)
	setDuration(&s.IdleTimeout, "idle_timeout", DefaultIdleTimeout)
	setDuration(&s.MaxWait, "max_wait", DefaultMaxWait)
	setDuration(&s.Time.MaxFuture, "time.max_future", DefaultMaxFuture)
	setString(&s.Source.Format, "source.format", DefaultFormat)
	for i := range s.Lookups {
		setString(&s.Lookups[i].OnMiss, fmt.Sprintf("lookups[%d].on_miss", i), OnMissDefault)
	}
	rewritePercentiles(s.Aggregates)
	s.fillAlertDefaults(present)
	s.fillRollupDefaults(present)
}

// rewritePercentiles turns percentile ops such as "p99" into Op
// "quantile" with Quantile 0.99, leaving other ops as written.
func rewritePercentiles(aggs []Aggregate) {
	for i := range aggs {
		a := &aggs[i]
		if q, ok := ParsePercentile(a.Op); ok {
			a.Op, a.Quantile = AggQuantile, q
		}
	}
}

var percentileRE = regexp.MustCompile(`^p([0-9]{1,2})(?:\.([0-9]+))?$`)

// ParsePercentile parses a percentile op: "p50", "p99", "p99.9", or any
// pNN or pNN.N strictly between p0 and p100, and returns it as a quantile
// (0.5, 0.99, 0.999). The quantile is the float64 nearest to the decimal
// written, so "p99.9" gives exactly 0.999, not 99.9/100.
func ParsePercentile(op string) (float64, bool) {
	m := percentileRE.FindStringSubmatch(op)
	if m == nil {
		return 0, false
	}
	whole := m[1]
	if len(whole) == 1 {
		whole = "0" + whole
	}
	q, err := strconv.ParseFloat("0."+whole+m[2], 64)
	if err != nil || q <= 0 || q >= 1 {
		return 0, false
	}
	return q, true
}

// PercentileName is the inverse of ParsePercentile: 0.999 -> "p99.9".
func PercentileName(q float64) string {
	s := strconv.FormatFloat(q, 'f', -1, 64)
	digits, ok := strings.CutPrefix(s, "0.")
	if !ok || q <= 0 || q >= 1 {
		return "quantile(" + s + ")"
	}
	for len(digits) < 2 {
		digits += "0"
	}
	whole, frac := strings.TrimPrefix(digits[:2], "0"), digits[2:]
	if frac != "" {
		return "p" + whole + "." + frac
	}
	return "p" + whole
}

var (
	specType     = reflect.TypeOf(Spec{})
	rollupType   = reflect.TypeOf(Rollup{})
	durationType = reflect.TypeOf(time.Duration(0))
)

// keyWalker checks a YAML node tree against the Spec type before decoding:
// unknown keys, lists where values belong and the other way round, and
// durations. It records the line of every key it sees, by path.
type keyWalker struct {
	lines map[string]int
	errs  []*FieldError
}

func (w *keyWalker) fail(path string, line int, problem, fix string) {
	w.errs = append(w.errs, &FieldError{Field: path, Line: line, Problem: problem, Fix: fix})
}

func (w *keyWalker) walk(n *yaml.Node, t reflect.Type, path string) {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return // an empty value: the field keeps its zero value
	}
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t == durationType:
		w.duration(n, path)
	case t.Kind() == reflect.Struct:
		if n.Kind != yaml.MappingNode {
			w.fail(path, n.Line, "must be a mapping of keys ("+strings.Join(yamlKeys(t), ", ")+")", "")
			return
		}
		seen := make(map[string]int)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.ShortTag() == "!!merge" { // "<<: *anchor"
				if v.Kind == yaml.SequenceNode {
					for _, m := range v.Content {
						w.walk(m, t, path)
					}
				} else {
					w.walk(v, t, path)
				}
				continue
			}
			p := joinPath(path, k.Value)
			f, ok := fieldByKey(t, k.Value)
			if !ok {
				w.fail(p, k.Line, "unknown key", suggestKey(t, path, k.Value))
				continue
			}
			if first, dup := seen[k.Value]; dup {
				w.fail(p, k.Line, fmt.Sprintf("is set twice (first on line %d)", first), "remove one of them")
				continue
			}
			seen[k.Value] = k.Line
			w.lines[p] = k.Line
			w.walk(v, f.Type, p)
		}
	case t.Kind() == reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			w.fail(path, n.Line, "must be a list", `write it as [a, b] or as one "- item" per line`)
			return
		}
		for i, e := range n.Content {
			p := fmt.Sprintf("%s[%d]", path, i)
			w.lines[p] = e.Line
			w.walk(e, t.Elem(), p)
		}
	case t.Kind() == reflect.String:
		if n.Kind != yaml.ScalarNode {
			w.fail(path, n.Line, "must be a single value, not a list or a mapping", "")
		}
	case t.Kind() == reflect.Map:
		if n.Kind != yaml.MappingNode {
			w.fail(path, n.Line, "must be a mapping of names to values", "write e.g. {team: unknown}")
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := joinPath(path, k.Value)
			w.lines[p] = k.Line
			if v.Kind != yaml.ScalarNode {
				w.fail(p, v.Line, "must be a single value (a string, number, boolean or null)", "")
			}
		}
	case t.Kind() == reflect.Int:
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" {
			w.fail(path, n.Line, fmt.Sprintf("must be a whole number, not %q", n.Value), "write e.g. 10")
		}
	case t.Kind() == reflect.Bool:
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" {
			w.fail(path, n.Line, fmt.Sprintf("must be true or false, not %q", n.Value), "")
		}
	}
}

func (w *keyWalker) duration(n *yaml.Node, path string) {
	if n.Kind != yaml.ScalarNode {
		w.fail(path, n.Line, "must be a duration", `write e.g. "10s", "1m30s" or "500ms"`)
		return
	}
	tag := n.ShortTag()
	if tag == "!!str" {
		if _, err := time.ParseDuration(n.Value); err == nil {
			return
		}
	}
	switch {
	case tag == "!!int" || tag == "!!float":
		fix := fmt.Sprintf(`write e.g. "%ss" for %s seconds or "%sm" for %s minutes`, n.Value, n.Value, n.Value, n.Value)
		if v, _ := strconv.ParseFloat(n.Value, 64); v == 0 {
			fix = `write "0s"`
		}
		w.fail(path, n.Line, fmt.Sprintf("%s has no unit", n.Value), fix)
	case strings.HasSuffix(n.Value, "d"):
		w.fail(path, n.Line, fmt.Sprintf("%q is not a duration: days are not a unit", n.Value), `write hours instead, e.g. "24h" for one day`)
	default:
		w.fail(path, n.Line, fmt.Sprintf("%q is not a duration", n.Value), `write a number and a unit (ms, s, m or h), e.g. "10s", "1m30s" or "500ms"`)
	}
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// yamlKey returns the YAML key of a struct field, or "" if it has none.
func yamlKey(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	if name == "-" || !f.IsExported() {
		return ""
	}
	if name == "" {
		return strings.ToLower(f.Name)
	}
	return name
}

func fieldByKey(t reflect.Type, key string) (reflect.StructField, bool) {
	for i := 0; i < t.NumField(); i++ {
		if f := t.Field(i); yamlKey(f) == key {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

func yamlKeys(t reflect.Type) []string {
	var keys []string
	for i := 0; i < t.NumField(); i++ {
		if k := yamlKey(t.Field(i)); k != "" {
			keys = append(keys, k)
		}
	}
	return keys
}

// keyPaths lists every key a spec may have, as YAML paths with "[]" for
// list elements: "app", "source.topics", "aggregates[].name", ... The
// documentation test uses it to check that docs/pipeline-spec.md mentions
// every key. The keys of a rollup that are sections of the single form
// (rollups[].window, .aggregates, .output, .alerts) are listed, not the
// keys under them: they are those of the top-level sections.
func keyPaths() []string {
	var out []string
	var walk func(t reflect.Type, prefix string)
	walk = func(t reflect.Type, prefix string) {
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			k := yamlKey(f)
			if k == "" {
				continue
			}
			p := joinPath(prefix, k)
			out = append(out, p)
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Slice {
				ft = ft.Elem()
				p += "[]"
			}
			if ft.Kind() == reflect.Struct && ft != durationType && t != rollupType {
				walk(ft, p)
			}
		}
	}
	walk(specType, "")
	return out
}

// suggestKey says what an unknown key at path probably should have been:
// a key of the same section spelt alike (misspelt: `source.topic` is
// `source.topics`, though `topic` is also a key of output and alerts), the
// same key elsewhere in the spec (misplaced), or else the list of keys
// allowed here.
func suggestKey(t reflect.Type, path, key string) string {
	known := yamlKeys(t)
	best, bestDist := "", 1<<30
	for _, k := range known {
		if d := editDistance(strings.ToLower(key), k); d < bestDist {
			best, bestDist = k, d
		}
	}
	if bestDist <= max(1, len(key)/3) {
		return fmt.Sprintf("did you mean %q?", best)
	}
	var elsewhere []string
	for _, p := range keyPaths() {
		if p == key || strings.HasSuffix(p, "."+key) {
			elsewhere = append(elsewhere, p)
		}
	}
	if len(elsewhere) > 0 {
		var parents []string
		for _, p := range elsewhere {
			parent := parentPath(strings.ReplaceAll(p, "[]", ""))
			if parent == "" {
				return fmt.Sprintf("%q belongs at the top level, not under %q", key, path)
			}
			parents = append(parents, strconv.Quote(parent))
		}
		return fmt.Sprintf("%q belongs under %s", key, strings.Join(parents, " or "))
	}
	sort.Strings(known)
	if path == "" {
		return "the top-level keys are: " + strings.Join(known, ", ")
	}
	return fmt.Sprintf("the keys of %s are: %s", path, strings.Join(known, ", "))
}

// editDistance is the optimal string alignment distance between a and b:
// the number of insertions, deletions, substitutions and transpositions of
// adjacent bytes ("feild" is 1 from "field").
func editDistance(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}
