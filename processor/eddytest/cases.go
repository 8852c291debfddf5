package eddytest

// Test cases as YAML files (docs/testing-pipelines.md describes every
// key): input steps, then the expected outputs.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.yaml.in/yaml/v3"

	"github.com/eddy-streams/eddy/schema"
	"github.com/eddy-streams/eddy/topology"
)

// Case is one test case of a pipeline: records and wall-clock steps in,
// the expected outputs.
type Case struct {
	// Name defaults to the file's name without its extension.
	Name        string `yaml:"name,omitempty"`
	Description string `yaml:"description,omitempty"`
	// Start is the wall clock when the case begins (RFC 3339); relative
	// times in the case ("+10s") count from it. Default
	// 2024-01-01T00:00:00Z.
	Start string `yaml:"start,omitempty"`
	// Partitions of the source topics. Default 1.
	Partitions int `yaml:"partitions,omitempty"`
	// Schema is the Avro schema file (.avsc, relative to the case file)
	// of the records' values, for pipelines with source.format avro.
	Schema string `yaml:"schema,omitempty"`
	Steps  []Step `yaml:"steps"`
	Expect Expect `yaml:"expect"`

	// Path is the file the case was read from.
	Path string `yaml:"-"`
}

// Step is one step of a case: records produced at the current wall
// clock, or the wall clock moving.
type Step struct {
	Records []InRecord `yaml:"records,omitempty"`
	// Advance moves the wall clock forward by a duration ("30s").
	Advance string `yaml:"advance,omitempty"`
	// WallClock sets the wall clock: RFC 3339, or relative to start
	// ("+1m").
	WallClock string `yaml:"wall_clock,omitempty"`
}

// InRecord is one input record of a case.
type InRecord struct {
	Topic     string `yaml:"topic,omitempty"` // default the pipeline's first source topic
	Partition int32  `yaml:"partition,omitempty"`
	Key       string `yaml:"key,omitempty"` // the Kafka key
	// Value is a mapping (written as JSON, or as Avro with the case's
	// schema) or a string (the bytes as they are: a record that is not
	// JSON, for instance).
	Value any `yaml:"value"`
	// EventTime (RFC 3339 or "+5s") sets the pipeline's time.field in
	// the value, as epoch milliseconds, unless the value has it already;
	// for a pipeline on the Kafka timestamp it sets the timestamp.
	EventTime string `yaml:"event_time,omitempty"`
	// Timestamp is the Kafka timestamp; default the wall clock.
	Timestamp string            `yaml:"timestamp,omitempty"`
	Headers   map[string]string `yaml:"headers,omitempty"`
	// Repeat writes the record this many times. Default 1.
	Repeat int `yaml:"repeat,omitempty"`
}

// Expect is what a case expects the pipeline to write.
type Expect struct {
	Results     []ExpResult     `yaml:"results,omitempty"`
	Late        []ExpLate       `yaml:"late,omitempty"`
	DeadLetters []ExpDeadLetter `yaml:"dead_letters,omitempty"`
	Alerts      []ExpAlert      `yaml:"alerts,omitempty"`
	// Partial allows outputs that are not listed. Default false: every
	// result, late record, dead letter and alert must be listed.
	Partial bool `yaml:"partial,omitempty"`
	// Tolerance is the relative tolerance of every expected number that
	// does not set its own (0.01: within 1%). Default 0: equal.
	Tolerance float64 `yaml:"tolerance,omitempty"`
}

// ExpResult is one expected window result.
type ExpResult struct {
	// Rollup names the rollup whose result it is, in a pipeline with
	// several (rollups:). Default the first rollup.
	Rollup      string            `yaml:"rollup,omitempty"`
	Key         map[string]string `yaml:"key"`
	WindowStart string            `yaml:"window_start"`
	WindowEnd   string            `yaml:"window_end,omitempty"`
	// Values are the aggregates to check, by name; those not listed are
	// not checked.
	Values map[string]Num `yaml:"values,omitempty"`
}

// ExpLate is one expected record of the late topic; the fields set are
// checked.
type ExpLate struct {
	// Rollup names the rollup the record is late for (its eddy.rollup
	// header), in a pipeline with several. Default the first rollup.
	Rollup      string `yaml:"rollup,omitempty"`
	Partition   *int32 `yaml:"partition,omitempty"` // of the source record
	Offset      *int64 `yaml:"offset,omitempty"`    // of the source record
	EventTime   string `yaml:"event_time,omitempty"`
	WindowStart string `yaml:"window_start,omitempty"` // of the window it missed
}

// ExpDeadLetter is one expected dead letter; the fields set are checked.
type ExpDeadLetter struct {
	// Rollup, in a pipeline with several, is the rollup whose key or
	// aggregate refused the record (its eddy.rollup header). Records
	// refused by a step all rollups share (decoding, derived fields,
	// event time) have none. Default: not checked.
	Rollup          string `yaml:"rollup,omitempty"`
	Class           string `yaml:"class"`
	Field           string `yaml:"field,omitempty"`
	Partition       *int32 `yaml:"partition,omitempty"`
	Offset          *int64 `yaml:"offset,omitempty"`
	MessageContains string `yaml:"message_contains,omitempty"`
}

// ExpAlert is one expected alert transition; the fields set besides rule
// and state are checked.
type ExpAlert struct {
	// Rollup names the rollup whose alert rule it is, in a pipeline with
	// several. Default the first rollup.
	Rollup      string            `yaml:"rollup,omitempty"`
	Rule        string            `yaml:"rule"`
	State       string            `yaml:"state"` // firing or resolved
	Key         map[string]string `yaml:"key,omitempty"`
	WindowStart string            `yaml:"window_start,omitempty"`
	Value       *Num              `yaml:"value,omitempty"`
}

// Num is an expected number: exact (3), null (no value), or approximate
// ({approx: 120, rel: 0.02} within 2%, {approx: 120, abs: 5} within 5).
type Num struct {
	V        *float64
	Rel, Abs float64
	approx   bool
}

// Exact returns the Num v.
func Exact(v float64) Num { return Num{V: &v} }

// UnmarshalYAML implements yaml.Unmarshaler.
func (n *Num) UnmarshalYAML(node *yaml.Node) error {
	switch node.Kind {
	case yaml.ScalarNode:
		if node.Tag == "!!null" {
			*n = Num{}
			return nil
		}
		f, err := strconv.ParseFloat(node.Value, 64)
		if err != nil {
			return fmt.Errorf("line %d: %q is not a number (write 3, null or {approx: 3, rel: 0.01})", node.Line, node.Value)
		}
		*n = Num{V: &f}
		return nil
	case yaml.MappingNode:
		var m struct {
			Approx *float64 `yaml:"approx"`
			Rel    float64  `yaml:"rel"`
			Abs    float64  `yaml:"abs"`
		}
		if err := node.Decode(&m); err != nil {
			return err
		}
		if m.Approx == nil {
			return fmt.Errorf("line %d: an approximate number needs approx: (e.g. {approx: 120, rel: 0.02})", node.Line)
		}
		*n = Num{V: m.Approx, Rel: m.Rel, Abs: m.Abs, approx: true}
		return nil
	}
	return fmt.Errorf("line %d: want a number, null or {approx: N, rel: R}", node.Line)
}

// MarshalYAML implements yaml.Marshaler.
func (n Num) MarshalYAML() (any, error) {
	if n.V == nil {
		return nil, nil
	}
	if !n.approx {
		return *n.V, nil
	}
	m := map[string]float64{"approx": *n.V}
	if n.Rel != 0 {
		m["rel"] = n.Rel
	}
	if n.Abs != 0 {
		m["abs"] = n.Abs
	}
	return m, nil
}

func (n Num) String() string {
	if n.V == nil {
		return "null"
	}
	s := fmtNum(*n.V)
	switch {
	case n.Rel != 0:
		s += fmt.Sprintf(" (±%s%%)", fmtNum(n.Rel*100))
	case n.Abs != 0:
		s += " (±" + fmtNum(n.Abs) + ")"
	}
	return s
}

// match reports whether got matches n, with tol the case's default
// relative tolerance.
func (n Num) match(got *float64, tol float64) bool {
	if n.V == nil || got == nil {
		return n.V == nil && got == nil
	}
	want, g := *n.V, *got
	rel, abs := n.Rel, n.Abs
	if rel == 0 && abs == 0 {
		rel = tol
	}
	diff := math.Abs(g - want)
	return diff <= abs || diff <= rel*math.Abs(want) || diff <= 1e-9*math.Max(1, math.Abs(want))
}

func fmtNum(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

// LoadCases reads the case files at path: one file, or every .yaml and
// .yml file of a directory (not its subdirectories), in name order.
func LoadCases(path string) ([]*Case, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	files := []string{path}
	if st.IsDir() {
		files = nil
		entries, err := os.ReadDir(path)
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			if ext := filepath.Ext(e.Name()); !e.IsDir() && (ext == ".yaml" || ext == ".yml") {
				files = append(files, filepath.Join(path, e.Name()))
			}
		}
		if len(files) == 0 {
			return nil, fmt.Errorf("%s: no case files (*.yaml)", path)
		}
	}
	var cases []*Case
	for _, f := range files {
		c, err := LoadCase(f)
		if err != nil {
			return nil, err
		}
		cases = append(cases, c)
	}
	return cases, nil
}

// LoadCase reads one case file.
func LoadCase(path string) (*Case, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	c, err := ParseCase(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	c.Path = path
	if c.Name == "" {
		c.Name = strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
	}
	return c, nil
}

// ParseCase parses a case. Unknown keys are errors.
func ParseCase(data []byte) (*Case, error) {
	var c Case
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		return nil, err
	}
	if _, err := c.start(); err != nil {
		return nil, err
	}
	for i, s := range c.Steps {
		n := 0
		if len(s.Records) > 0 {
			n++
		}
		if s.Advance != "" {
			n++
		}
		if s.WallClock != "" {
			n++
		}
		if n != 1 {
			return nil, fmt.Errorf("step %d: want exactly one of records, advance or wall_clock", i+1)
		}
	}
	return &c, nil
}

func (c *Case) start() (time.Time, error) {
	if c.Start == "" {
		return DefaultStart, nil
	}
	t, err := time.Parse(time.RFC3339Nano, c.Start)
	if err != nil {
		return t, fmt.Errorf("start: %q is not RFC 3339 (e.g. 2024-01-01T00:00:00Z)", c.Start)
	}
	return t.UTC(), nil
}

// at reads a time of the case: RFC 3339, or a duration relative to start
// ("+10s", "-5s").
func at(s string, start time.Time) (time.Time, error) {
	if strings.HasPrefix(s, "+") || strings.HasPrefix(s, "-") {
		d, err := time.ParseDuration(strings.TrimPrefix(s, "+"))
		if err != nil {
			return time.Time{}, fmt.Errorf("%q: want RFC 3339 or a duration from start such as +10s", s)
		}
		return start.Add(d), nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return t, fmt.Errorf("%q: want RFC 3339 or a duration from start such as +10s", s)
	}
	return t.UTC(), nil
}

// rel writes t relative to start, as the case's times are written.
func rel(t, start time.Time) string {
	d := t.Sub(start)
	if d < 0 {
		return d.String()
	}
	return "+" + d.String()
}

// action is one resolved step: records, or a new wall clock.
type action struct {
	records []Record
	wall    time.Time
}

// valueEncoder encodes a mapping value of a record for its topic.
type valueEncoder func(topic string, v map[string]any) ([]byte, error)

// plan resolves the case's steps into records and wall clocks.
func (c *Case) plan(spec *topology.Spec, enc valueEncoder) ([]action, error) {
	start, err := c.start()
	if err != nil {
		return nil, err
	}
	now := start
	var acts []action
	for i, s := range c.Steps {
		switch {
		case s.Advance != "":
			d, err := time.ParseDuration(s.Advance)
			if err != nil || d < 0 {
				return nil, fmt.Errorf("step %d: advance %q: want a positive duration such as 30s", i+1, s.Advance)
			}
			now = now.Add(d)
			acts = append(acts, action{wall: now})
		case s.WallClock != "":
			t, err := at(s.WallClock, start)
			if err != nil {
				return nil, fmt.Errorf("step %d: wall_clock: %w", i+1, err)
			}
			if t.Before(now) {
				return nil, fmt.Errorf("step %d: wall_clock %s is before the wall clock already reached (%s): it does not go back", i+1, s.WallClock, rel(now, start))
			}
			now = t
			acts = append(acts, action{wall: now})
		default:
			var recs []Record
			for j, r := range s.Records {
				kr, err := c.record(spec, r, start, now, enc)
				if err != nil {
					return nil, fmt.Errorf("step %d, record %d: %w", i+1, j+1, err)
				}
				for range max(1, r.Repeat) {
					recs = append(recs, kr)
				}
			}
			acts = append(acts, action{records: recs, wall: now})
		}
	}
	return acts, nil
}

func (c *Case) record(spec *topology.Spec, r InRecord, start, now time.Time, enc valueEncoder) (Record, error) {
	out := Record{Topic: r.Topic, Partition: r.Partition, Timestamp: now}
	if out.Topic == "" {
		out.Topic = spec.Source.Topics[0]
	} else if !slices.Contains(spec.Source.Topics, out.Topic) {
		return out, fmt.Errorf("topic %q is not a source topic of the pipeline (%v)", out.Topic, spec.Source.Topics)
	}
	if parts := max(1, c.Partitions); r.Partition < 0 || int(r.Partition) >= parts {
		return out, fmt.Errorf("partition %d: the case has %d source partitions (partitions:)", r.Partition, parts)
	}
	if r.Key != "" {
		out.Key = []byte(r.Key)
	}
	for _, k := range slices.Sorted(mapKeys(r.Headers)) {
		out.Headers = append(out.Headers, kgoHeader(k, r.Headers[k]))
	}
	if r.Timestamp != "" {
		t, err := at(r.Timestamp, start)
		if err != nil {
			return out, fmt.Errorf("timestamp: %w", err)
		}
		out.Timestamp = t
	}
	var et time.Time
	if r.EventTime != "" {
		t, err := at(r.EventTime, start)
		if err != nil {
			return out, fmt.Errorf("event_time: %w", err)
		}
		et = t
		if spec.Time.Field == "" {
			out.Timestamp = t
		}
	}
	switch v := r.Value.(type) {
	case string:
		out.Value = []byte(v)
	case nil:
	case map[string]any:
		if !et.IsZero() && spec.Time.Field != "" {
			if _, ok := v[spec.Time.Field]; !ok {
				v = maps2(v)
				v[spec.Time.Field] = et.UnixMilli()
			}
		}
		var err error
		if c.Schema != "" {
			out.Value, err = enc(out.Topic, v)
		} else {
			out.Value, err = json.Marshal(v)
		}
		if err != nil {
			return out, fmt.Errorf("value: %w", err)
		}
	default:
		return out, fmt.Errorf("value: want a mapping (the record's fields) or a string (its bytes), not %T", v)
	}
	return out, nil
}

func kgoHeader(k, v string) kgo.RecordHeader { return kgo.RecordHeader{Key: k, Value: []byte(v)} }

func maps2(m map[string]any) map[string]any {
	out := make(map[string]any, len(m)+1)
	for k, v := range m {
		out[k] = v
	}
	return out
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// avroEncoder registers the case's schema in reg under the subject of
// each topic (or the pipeline's source.subject), rename giving the topic
// as written, and encodes values with it.
func (c *Case) avroEncoder(ctx context.Context, spec *topology.Spec, reg schema.Registry, rename func(string) string) (valueEncoder, error) {
	if c.Schema == "" {
		return nil, nil
	}
	if spec.Source.Format != topology.FormatAvro {
		return nil, fmt.Errorf("schema: %s: the pipeline reads %s, not avro", c.Schema, spec.Source.Format)
	}
	path := c.Schema
	if !filepath.IsAbs(path) && c.Path != "" {
		path = filepath.Join(filepath.Dir(c.Path), path)
	}
	text, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("schema: %w", err)
	}
	encs := map[string]*schema.Encoder{}
	subject := func(topic string) string {
		if spec.Source.Subject != "" {
			return spec.Source.Subject
		}
		return rename(topic) + "-value"
	}
	for _, t := range spec.Source.Topics {
		e, err := schema.NewEncoder(ctx, reg, subject(t), string(text))
		if err != nil {
			return nil, fmt.Errorf("schema %s: %w", c.Schema, err)
		}
		encs[t] = e
	}
	return func(topic string, v map[string]any) ([]byte, error) {
		return encs[topic].Encode(avroValues(v))
	}, nil
}

// avroValues turns YAML's ints into int64s (Avro longs).
func avroValues(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		switch t := v.(type) {
		case int:
			out[k] = int64(t)
		case map[string]any:
			out[k] = avroValues(t)
		default:
			out[k] = v
		}
	}
	return out
}

// Run runs the case in process (a Driver: the code of `eddy run`) and
// returns what the pipeline wrote, after a final commit (as `eddy run`
// stopping). reg is the registry of an Avro pipeline; nil makes a
// MemRegistry.
func (c *Case) Run(spec *topology.Spec, reg schema.Registry) (*Outcome, error) {
	start, err := c.start()
	if err != nil {
		return nil, err
	}
	if reg == nil && usesAvro(spec) {
		reg = NewMemRegistry()
	}
	// The input schema first: the pipeline checks its fields against it.
	enc, err := c.avroEncoder(context.Background(), spec, reg, func(s string) string { return s })
	if err != nil {
		return nil, err
	}
	acts, err := c.plan(spec, enc)
	if err != nil {
		return nil, err
	}
	d, err := New(spec, WithPartitions(max(1, c.Partitions)), WithStart(start), WithRegistry(reg))
	if err != nil {
		return nil, err
	}
	defer d.Close()
	for _, a := range acts {
		if a.records == nil {
			if err := d.SetWallClock(a.wall); err != nil {
				return nil, err
			}
			continue
		}
		if err := d.Pipe(a.records...); err != nil {
			return nil, err
		}
	}
	if err := d.Stop(); err != nil {
		return nil, err
	}
	return d.Outcome(), nil
}

// Check compares the outcome with the case's expectations and returns one
// line per mismatch (none when the case passes). Results are matched by
// rollup, key and window, the other outputs by the fields the case sets;
// each expectation takes the first output it matches that no other took.
// An expectation without rollup: is about the pipeline's first rollup
// (dead letters: of any rollup, or of none).
func (c *Case) Check(spec *topology.Spec, o *Outcome) []string {
	start, _ := c.start()
	e := c.Expect
	names := RollupNames(spec)
	multi := spec.MultiRollup()
	var diffs []string
	// rollupOf resolves the rollup of an expectation (what): the first
	// when unset; false, with a diff, when the pipeline has no such rollup.
	rollupOf := func(what, name string) (string, bool) {
		switch {
		case name == "":
			return names[0], true
		case !multi:
			diffs = append(diffs, fmt.Sprintf("%s: rollup %q: the pipeline is one rollup, written without rollups: (remove rollup:)", what, name))
			return "", false
		case !slices.Contains(names, name):
			diffs = append(diffs, fmt.Sprintf("%s: rollup %q: the pipeline has no such rollup (it has %s)", what, name, strings.Join(names, ", ")))
			return "", false
		}
		return name, true
	}
	win := func(rollup string, key map[string]string, s, end time.Time) string {
		w := "[" + rel(s, start)
		if !end.IsZero() {
			w += ", " + rel(end, start)
		}
		of := ""
		if multi {
			of = "of " + rollup + " "
		}
		return of + fmtKey(key) + " window " + w + ")"
	}
	specs := map[string]*topology.Spec{}
	for _, rs := range spec.RollupSpecs() {
		specs[rs.RollupName] = rs
	}

	used := make([]bool, len(o.Results))
	for i, er := range e.Results {
		rollup, ok := rollupOf(fmt.Sprintf("expect.results[%d]", i), er.Rollup)
		if !ok {
			continue
		}
		ws, err := at(er.WindowStart, start)
		if err != nil {
			diffs = append(diffs, "expect.results: window_start: "+err.Error())
			continue
		}
		var we time.Time
		if er.WindowEnd != "" {
			if we, err = at(er.WindowEnd, start); err != nil {
				diffs = append(diffs, "expect.results: window_end: "+err.Error())
				continue
			}
		}
		j := firstUnused(len(o.Results), used, func(k int) bool {
			r := o.Results[k]
			return r.Rollup == rollup && keyEq(er.Key, r.Key) && r.WindowStart.Equal(ws) && (we.IsZero() || r.WindowEnd.Equal(we))
		})
		if j < 0 {
			diffs = append(diffs, fmt.Sprintf("result %s: missing (expected %s, got no such result)", win(rollup, er.Key, ws, we), fmtValues(er.Values)))
			continue
		}
		used[j] = true
		r := o.Results[j]
		for _, name := range slices.Sorted(mapKeys(er.Values)) {
			want := er.Values[name]
			got, known := r.Values[name]
			if !known {
				diffs = append(diffs, fmt.Sprintf("result %s: field %s: the rollup has no aggregate %s", win(rollup, r.Key, r.WindowStart, r.WindowEnd), name, name))
				continue
			}
			if !want.match(got, e.Tolerance) {
				diffs = append(diffs, fmt.Sprintf("result %s: field %s: expected %s, got %s", win(rollup, r.Key, r.WindowStart, r.WindowEnd), name, want.withTol(e.Tolerance), fmtPtr(got)))
			}
		}
	}
	if !e.Partial {
		for j, r := range o.Results {
			if !used[j] {
				diffs = append(diffs, fmt.Sprintf("result %s: unexpected (got %s)", win(r.Rollup, r.Key, r.WindowStart, r.WindowEnd), fmtGot(specs[r.Rollup], r.Values)))
			}
		}
	}

	usedL := make([]bool, len(o.Late))
	for i, el := range e.Late {
		rollup, ok := rollupOf(fmt.Sprintf("expect.late[%d]", i), el.Rollup)
		if !ok {
			continue
		}
		j := firstUnused(len(o.Late), usedL, func(k int) bool { return o.Late[k].Rollup == rollup && lateMatch(el, o.Late[k], start) })
		if j < 0 {
			diffs = append(diffs, fmt.Sprintf("late record %d: missing (expected %s; got %s)", i+1, fmtExpLate(el), fmtLates(o.Late, start)))
			continue
		}
		usedL[j] = true
	}
	usedD := make([]bool, len(o.DeadLetters))
	for i, ed := range e.DeadLetters {
		if ed.Rollup != "" {
			if _, ok := rollupOf(fmt.Sprintf("expect.dead_letters[%d]", i), ed.Rollup); !ok {
				continue
			}
		}
		j := firstUnused(len(o.DeadLetters), usedD, func(k int) bool { return deadMatch(ed, o.DeadLetters[k]) })
		if j < 0 {
			diffs = append(diffs, fmt.Sprintf("dead letter %d: missing (expected %s; got %s)", i+1, fmtExpDead(ed), fmtDeads(o.DeadLetters)))
			continue
		}
		usedD[j] = true
	}
	usedA := make([]bool, len(o.Alerts))
	for i, ea := range e.Alerts {
		rollup, ok := rollupOf(fmt.Sprintf("expect.alerts[%d]", i), ea.Rollup)
		if !ok {
			continue
		}
		j := firstUnused(len(o.Alerts), usedA, func(k int) bool {
			return o.Alerts[k].Rollup == rollup && alertMatch(ea, o.Alerts[k], start, e.Tolerance)
		})
		if j < 0 {
			diffs = append(diffs, fmt.Sprintf("alert %d: missing (expected %s; got %s)", i+1, fmtExpAlert(ea), fmtAlerts(o.Alerts, start)))
			continue
		}
		usedA[j] = true
	}
	if !e.Partial {
		for j, l := range o.Late {
			if !usedL[j] {
				diffs = append(diffs, "late record: unexpected "+fmtLate(l, start))
			}
		}
		for j, d := range o.DeadLetters {
			if !usedD[j] {
				diffs = append(diffs, "dead letter: unexpected "+fmtDead(d))
			}
		}
		for j, a := range o.Alerts {
			if !usedA[j] {
				diffs = append(diffs, "alert: unexpected "+fmtAlert(a, start))
			}
		}
	}
	return diffs
}

func firstUnused(n int, used []bool, ok func(int) bool) int {
	for k := range n {
		if !used[k] && ok(k) {
			return k
		}
	}
	return -1
}

func (n Num) withTol(tol float64) Num {
	if n.V != nil && n.Rel == 0 && n.Abs == 0 && tol != 0 {
		n.Rel = tol
	}
	return n
}

func keyEq(want, got map[string]string) bool {
	if len(want) != len(got) {
		return false
	}
	for k, v := range want {
		if got[k] != v {
			return false
		}
	}
	return true
}

func lateMatch(e ExpLate, l Late, start time.Time) bool {
	if e.Partition != nil && *e.Partition != l.Partition || e.Offset != nil && *e.Offset != l.Offset {
		return false
	}
	if e.EventTime != "" {
		if t, err := at(e.EventTime, start); err != nil || !t.Equal(l.EventTime) {
			return false
		}
	}
	if e.WindowStart != "" {
		if t, err := at(e.WindowStart, start); err != nil || !t.Equal(lateWindowStart(l)) {
			return false
		}
	}
	return true
}

// lateWindowStart reads the start of the window a late record missed from
// its eddy.late.window header ("[start, end)").
func lateWindowStart(l Late) time.Time {
	s := strings.TrimPrefix(l.Window, "[")
	if i := strings.Index(s, ","); i >= 0 {
		s = s[:i]
	}
	t, _ := time.Parse(time.RFC3339Nano, s)
	return t.UTC()
}

func deadMatch(e ExpDeadLetter, d DeadLetter) bool {
	return (e.Rollup == "" || e.Rollup == d.Rollup) && (e.Class == "" || e.Class == d.Class) && (e.Field == "" || e.Field == d.Field) &&
		(e.Partition == nil || *e.Partition == d.Partition) && (e.Offset == nil || *e.Offset == d.Offset) &&
		(e.MessageContains == "" || strings.Contains(d.Message, e.MessageContains))
}

func alertMatch(e ExpAlert, a Alert, start time.Time, tol float64) bool {
	if e.Rule != a.Rule || e.State != a.State || e.Key != nil && !keyEq(e.Key, a.Key) {
		return false
	}
	if e.WindowStart != "" {
		t, err := at(e.WindowStart, start)
		if err != nil || a.WindowStart == nil {
			return false
		}
		if got, err := time.Parse(time.RFC3339Nano, *a.WindowStart); err != nil || !got.Equal(t) {
			return false
		}
	}
	return e.Value == nil || e.Value.match(a.Value, tol)
}

func fmtKey(k map[string]string) string {
	var parts []string
	for _, f := range slices.Sorted(mapKeys(k)) {
		parts = append(parts, f+"="+k[f])
	}
	return "{" + strings.Join(parts, " ") + "}"
}

func fmtPtr(f *float64) string {
	if f == nil {
		return "null"
	}
	return fmtNum(*f)
}

func fmtValues(vs map[string]Num) string {
	var parts []string
	for _, k := range slices.Sorted(mapKeys(vs)) {
		parts = append(parts, k+"="+vs[k].String())
	}
	return strings.Join(parts, " ")
}

// fmtGot writes the values of a result of the rollup whose spec is spec.
func fmtGot(spec *topology.Spec, vs map[string]*float64) string {
	var parts []string
	if spec == nil {
		return fmtValuesGot(vs)
	}
	for _, a := range spec.Aggregates {
		parts = append(parts, a.Name+"="+fmtPtr(vs[a.Name]))
	}
	return strings.Join(parts, " ")
}

func fmtValuesGot(vs map[string]*float64) string {
	var parts []string
	for _, k := range slices.Sorted(mapKeys(vs)) {
		parts = append(parts, k+"="+fmtPtr(vs[k]))
	}
	return strings.Join(parts, " ")
}

func fmtExpLate(e ExpLate) string {
	var parts []string
	if e.Rollup != "" {
		parts = append(parts, "rollup="+e.Rollup)
	}
	if e.Partition != nil {
		parts = append(parts, fmt.Sprintf("partition=%d", *e.Partition))
	}
	if e.Offset != nil {
		parts = append(parts, fmt.Sprintf("offset=%d", *e.Offset))
	}
	if e.EventTime != "" {
		parts = append(parts, "event_time="+e.EventTime)
	}
	if e.WindowStart != "" {
		parts = append(parts, "window_start="+e.WindowStart)
	}
	return "{" + strings.Join(parts, " ") + "}"
}

func fmtLate(l Late, start time.Time) string {
	of := ""
	if l.Rollup != "" {
		of = "rollup=" + l.Rollup + " "
	}
	return fmt.Sprintf("{%spartition=%d offset=%d event_time=%s window_start=%s}", of, l.Partition, l.Offset, rel(l.EventTime, start), rel(lateWindowStart(l), start))
}

func fmtLates(ls []Late, start time.Time) string {
	if len(ls) == 0 {
		return "none"
	}
	var parts []string
	for _, l := range ls {
		parts = append(parts, fmtLate(l, start))
	}
	return strings.Join(parts, ", ")
}

func fmtExpDead(e ExpDeadLetter) string {
	s := "{"
	if e.Rollup != "" {
		s += "rollup=" + e.Rollup + " "
	}
	s += "class=" + e.Class
	if e.Field != "" {
		s += " field=" + e.Field
	}
	if e.Partition != nil {
		s += fmt.Sprintf(" partition=%d", *e.Partition)
	}
	if e.Offset != nil {
		s += fmt.Sprintf(" offset=%d", *e.Offset)
	}
	if e.MessageContains != "" {
		s += fmt.Sprintf(" message_contains=%q", e.MessageContains)
	}
	return s + "}"
}

func fmtDead(d DeadLetter) string {
	s := "{"
	if d.Rollup != "" {
		s += "rollup=" + d.Rollup + " "
	}
	s += "class=" + d.Class
	if d.Field != "" {
		s += " field=" + d.Field
	}
	return s + fmt.Sprintf(" partition=%d offset=%d message=%q}", d.Partition, d.Offset, d.Message)
}

func fmtDeads(ds []DeadLetter) string {
	if len(ds) == 0 {
		return "none"
	}
	var parts []string
	for _, d := range ds {
		parts = append(parts, fmtDead(d))
	}
	return strings.Join(parts, ", ")
}

func fmtExpAlert(e ExpAlert) string {
	s := "{"
	if e.Rollup != "" {
		s += "rollup=" + e.Rollup + " "
	}
	s += "rule=" + e.Rule + " state=" + e.State
	if e.Key != nil {
		s += " key=" + fmtKey(e.Key)
	}
	if e.WindowStart != "" {
		s += " window_start=" + e.WindowStart
	}
	if e.Value != nil {
		s += " value=" + e.Value.String()
	}
	return s + "}"
}

func fmtAlert(a Alert, start time.Time) string {
	s := "{"
	if a.Rollup != "" {
		s += "rollup=" + a.Rollup + " "
	}
	s += "rule=" + a.Rule + " state=" + a.State + " key=" + fmtKey(a.Key)
	if a.WindowStart != nil {
		if t, err := time.Parse(time.RFC3339Nano, *a.WindowStart); err == nil {
			s += " window_start=" + rel(t, start)
		}
	}
	if a.Value != nil {
		s += " value=" + fmtNum(*a.Value)
	}
	return s + "}"
}

func fmtAlerts(as []Alert, start time.Time) string {
	if len(as) == 0 {
		return "none"
	}
	var parts []string
	for _, a := range as {
		parts = append(parts, fmtAlert(a, start))
	}
	return strings.Join(parts, ", ")
}

// Expected returns the expectations that o meets exactly: every result
// with all its values, every late record, dead letter and alert. The
// case's partial and tolerance settings, and the tolerances it gave
// numbers of the same key, window and field, are kept.
//
// In a pipeline with several rollups, the outputs of every rollup but the
// first name theirs (rollup:), as do the dead letters a rollup refused.
func (c *Case) Expected(o *Outcome) Expect {
	start, _ := c.start()
	first := ""
	if len(o.Rollups) > 0 {
		first = o.Rollups[0]
	}
	e := Expect{Partial: c.Expect.Partial, Tolerance: c.Expect.Tolerance}
	named := func(rollup string) string {
		if rollup == first {
			return ""
		}
		return rollup
	}
	for _, r := range o.Results {
		er := ExpResult{Rollup: named(r.Rollup), Key: r.Key, WindowStart: rel(r.WindowStart, start), WindowEnd: rel(r.WindowEnd, start), Values: map[string]Num{}}
		old := c.oldResult(r, first, start)
		for name, v := range r.Values {
			n := Num{}
			if v != nil {
				f := *v
				n.V = &f
			}
			if o, ok := old[name]; ok && o.approx && n.V != nil {
				n.Rel, n.Abs, n.approx = o.Rel, o.Abs, true
			}
			er.Values[name] = n
		}
		e.Results = append(e.Results, er)
	}
	for _, l := range o.Late {
		el := ExpLate{Rollup: named(l.Rollup), Offset: ptr(l.Offset), EventTime: rel(l.EventTime, start), WindowStart: rel(lateWindowStart(l), start)}
		if l.Partition != 0 {
			el.Partition = ptr(l.Partition)
		}
		e.Late = append(e.Late, el)
	}
	for _, d := range o.DeadLetters {
		ed := ExpDeadLetter{Rollup: d.Rollup, Class: d.Class, Field: d.Field, Offset: ptr(d.Offset)}
		if d.Partition != 0 {
			ed.Partition = ptr(d.Partition)
		}
		e.DeadLetters = append(e.DeadLetters, ed)
	}
	for _, a := range o.Alerts {
		ea := ExpAlert{Rollup: named(a.Rollup), Rule: a.Rule, State: a.State, Key: a.Key}
		if a.WindowStart != nil {
			if t, err := time.Parse(time.RFC3339Nano, *a.WindowStart); err == nil {
				ea.WindowStart = rel(t, start)
			}
		}
		if a.Value != nil {
			n := Exact(*a.Value)
			ea.Value = &n
		}
		e.Alerts = append(e.Alerts, ea)
	}
	return e
}

func (c *Case) oldResult(r Result, first string, start time.Time) map[string]Num {
	for _, er := range c.Expect.Results {
		rollup := er.Rollup
		if rollup == "" {
			rollup = first
		}
		if ws, err := at(er.WindowStart, start); err == nil && ws.Equal(r.WindowStart) && keyEq(er.Key, r.Key) && rollup == r.Rollup {
			return er.Values
		}
	}
	return nil
}

func ptr[T any](v T) *T { return &v }

// flowStyle writes the small mappings of expectations (key:, values:,
// and each late record and dead letter) on one line, as cases are
// written by hand.
func flowStyle(n *yaml.Node) {
	if n.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(n.Content); i += 2 {
			if k := n.Content[i].Value; (k == "key" || k == "values") && n.Content[i+1].Kind == yaml.MappingNode {
				n.Content[i+1].Style = yaml.FlowStyle
			}
			if k := n.Content[i].Value; (k == "late" || k == "dead_letters") && n.Content[i+1].Kind == yaml.SequenceNode {
				for _, item := range n.Content[i+1].Content {
					item.Style = yaml.FlowStyle
				}
			}
		}
	}
	for _, c := range n.Content {
		flowStyle(c)
	}
}

// Update rewrites the case file with e as its expect: section, keeping
// the rest of the file (its steps and comments) as it is.
func (c *Case) Update(e Expect) error {
	if c.Path == "" {
		return errors.New("eddytest: the case was not read from a file")
	}
	data, err := os.ReadFile(c.Path)
	if err != nil {
		return err
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return err
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return fmt.Errorf("%s: not a mapping", c.Path)
	}
	var val yaml.Node
	if err := val.Encode(e); err != nil {
		return err
	}
	flowStyle(&val)
	m := doc.Content[0]
	replaced := false
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == "expect" {
			val.HeadComment = m.Content[i+1].HeadComment
			m.Content[i+1] = &val
			replaced = true
		}
	}
	if !replaced {
		m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: "expect"}, &val)
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return err
	}
	if err := enc.Close(); err != nil {
		return err
	}
	if err := os.WriteFile(c.Path, buf.Bytes(), 0o644); err != nil {
		return err
	}
	c.Expect = e
	return nil
}
