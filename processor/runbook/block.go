package runbook

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/eddy-streams/eddy/topology"
)

// A block's content is the pipeline YAML (what `eddy describe -f` and
// `eddy run -f` read), a line "---", and the display:
//
//	source: {topics: [http-requests]}
//	key: [endpoint]
//	window: {type: tumbling, size: 10s}
//	aggregates: [{name: requests, op: count}]
//	---
//	display: chart
//	value: requests
//	top: 5
//
// app and output may be left out of a block: a preview writes nothing, so
// they are filled in (after the block's last line, so the lines of the
// block are the lines topology.Parse reports). Promote asks for them.
//
// A block may list several rollups (a rollups: list, each with its own
// output topic, as in a pipeline file): the display then shows one of
// them, named by its rollup key (default the first).

// Display kinds.
const (
	DisplayChart  = "chart"  // one aggregate over windows, per key (the top N keys)
	DisplayTable  = "table"  // the latest windows, every aggregate
	DisplayEvents = "events" // the last N records of a step that match a filter
)

// Steps an events display reads.
const (
	StepInput      = "input"       // the source records, as read
	StepOutput     = "output"      // the preview's results
	StepLate       = "late"        // records later than their window's close
	StepDeadLetter = "dead-letter" // records the pipeline could not process
)

// Display is what a block shows, from the lines after "---". Zero values
// take the defaults.
type Display struct {
	// Kind is chart, table or events. Default chart.
	Kind string `yaml:"display" json:"kind"`
	// Rollup (a pipeline with a rollups list) is the rollup shown: the
	// chart's and table's results, the window, the output and late
	// records of an events display. Default: the first.
	Rollup string `yaml:"rollup,omitempty" json:"rollup,omitempty"`
	// Value (chart) is the aggregate drawn. Default: the first.
	Value string `yaml:"value,omitempty" json:"value,omitempty"`
	// Top (chart) is how many keys are drawn: those with the highest
	// value in the latest window. Default 5, at most 20.
	Top int `yaml:"top,omitempty" json:"top,omitempty"`
	// Rows (table) is how many of the latest windows are listed. Default
	// 10, at most 100.
	Rows int `yaml:"rows,omitempty" json:"rows,omitempty"`
	// Last (events) is how many records are listed. Default 10, at most 100.
	Last int `yaml:"last,omitempty" json:"last,omitempty"`
	// Step (events) is which records: input, output, late or
	// dead-letter. Default input.
	Step string `yaml:"step,omitempty" json:"step,omitempty"`
	// Filter (events) keeps the records for which this expression (the
	// pipeline's expression language) is true. Default: all.
	Filter string `yaml:"filter,omitempty" json:"filter,omitempty"`
	// From is where the preview starts reading its source: "now" (the
	// default), a duration back from now ("15m": records since 15 minutes
	// ago) or a time (RFC 3339). The offsets are found by timestamp.
	From string `yaml:"from,omitempty" json:"from,omitempty"`
}

// Problem is one error in a block, at a document line.
type Problem struct {
	// Line is the document line (from 1) the problem is on; 0 when it is
	// about the block as a whole.
	Line int `json:"line,omitempty"`
	// Message reads as `eddy describe` prints it, with the document's
	// line: "line 12: window.size: must be set for a tumbling window; ...".
	Message string `json:"message"`
}

// Block is one parsed block.
type Block struct {
	Index int
	// Line is the document line of the block's first content line.
	Line int
	// Text is the block's content as written.
	Text string
	// Pipeline is the pipeline part (the lines before "---"); Spec is
	// what it parses to for a preview (app and output filled in), nil
	// when Problems says why not.
	Pipeline string
	Spec     *topology.Spec
	// Rollup is the spec of the rollup the display shows (one of
	// Spec.RollupSpecs(); Spec itself in the single-rollup form); nil
	// when Spec is.
	Rollup  *topology.Spec
	Display Display
	// From is where the source is read from (zero: now), from Display.From.
	From     time.Time
	Problems []Problem
}

// Preview defaults for the keys a block may leave out.
const (
	previewApp    = "runbook-preview"
	previewOutput = "runbook-preview-results"
)

var separator = regexp.MustCompile(`(?m)^---[ \t]*\r?$`)

// ParseBlock parses a block's content; line is the document line of its
// first line and now the clock From durations count back from.
func ParseBlock(index, line int, content string, now time.Time) *Block {
	b := &Block{Index: index, Line: line, Text: content}
	pipe, disp := content, ""
	dispLine := 0 // the block line (from 1) where the display starts
	if loc := separator.FindStringIndex(content); loc != nil {
		pipe, disp = content[:loc[0]], content[loc[1]:]
		dispLine = strings.Count(content[:loc[1]], "\n") + 2
		if strings.HasPrefix(disp, "\n") {
			disp = disp[1:]
		} else if strings.HasPrefix(disp, "\r\n") {
			disp = disp[2:]
		}
	}
	b.Pipeline = pipe
	b.parseDisplay(disp, dispLine, now)

	spec, err := topology.Parse([]byte(withPreviewDefaults(pipe)))
	if err != nil {
		b.addSpecErrors(err)
	} else {
		b.Spec = spec
	}
	if b.Spec != nil {
		b.checkDisplay()
	}
	return b
}

// withPreviewDefaults appends app and output when the pipeline lacks them.
func withPreviewDefaults(pipe string) string {
	var top map[string]any
	if yaml.Unmarshal([]byte(pipe), &top) != nil || top == nil {
		return pipe
	}
	var add strings.Builder
	if _, ok := top["app"]; !ok {
		add.WriteString("app: " + previewApp + "\n")
	}
	if _, ok := top["output"]; !ok && top["rollups"] == nil { // each rollup names its own output
		add.WriteString("output:\n  topic: " + previewOutput + "\n")
	}
	if add.Len() == 0 {
		return pipe
	}
	if pipe != "" && !strings.HasSuffix(pipe, "\n") {
		pipe += "\n"
	}
	return pipe + add.String()
}

// addSpecErrors turns topology.Parse's errors into problems at document
// lines: the same message `eddy describe` prints, the block's line added.
func (b *Block) addSpecErrors(err error) {
	fes := topology.FieldErrors(err)
	if len(fes) == 0 {
		b.Problems = append(b.Problems, Problem{Message: err.Error()})
		return
	}
	for _, fe := range fes {
		c := *fe
		if c.Line > 0 {
			c.Line += b.Line - 1
		}
		b.Problems = append(b.Problems, Problem{Line: c.Line, Message: c.Error()})
	}
}

func (b *Block) problem(blockLine int, format string, args ...any) {
	p := Problem{Message: fmt.Sprintf(format, args...)}
	if blockLine > 0 {
		p.Line = b.Line + blockLine - 1
		p.Message = "line " + strconv.Itoa(p.Line) + ": " + p.Message
	}
	b.Problems = append(b.Problems, p)
}

// parseDisplay reads the display lines (dispLine: the block line they
// start on).
func (b *Block) parseDisplay(src string, dispLine int, now time.Time) {
	d := &b.Display
	keyLine := map[string]int{} // display key -> block line
	if strings.TrimSpace(src) != "" {
		var n yaml.Node
		if yaml.Unmarshal([]byte(src), &n) == nil && len(n.Content) > 0 {
			for i := 0; i+1 < len(n.Content[0].Content); i += 2 {
				k := n.Content[0].Content[i]
				keyLine[k.Value] = dispLine + k.Line - 1
			}
		}
		dec := yaml.NewDecoder(strings.NewReader(src))
		dec.KnownFields(true)
		if err := dec.Decode(d); err != nil {
			msg := err.Error()
			var te *yaml.TypeError
			if errors.As(err, &te) && len(te.Errors) > 0 {
				msg = te.Errors[0]
			}
			// yaml's "line N" counts from the display's first line.
			if m := yamlLine.FindStringSubmatch(msg); m != nil {
				n, _ := strconv.Atoi(m[1])
				b.problem(dispLine+n-1, "display: %s", strings.TrimPrefix(msg, m[0]))
			} else {
				b.problem(dispLine, "display: %s", msg)
			}
			return
		}
	}
	if d.Kind == "" {
		d.Kind = DisplayChart
	}
	line := func(key string) int {
		if l, ok := keyLine[key]; ok {
			return l
		}
		return dispLine
	}
	switch d.Kind {
	case DisplayChart, DisplayTable, DisplayEvents:
	default:
		b.problem(line("display"), "display: %q is not a display; write chart, table or events", d.Kind)
	}
	bound := func(name string, v *int, def, most int) {
		switch {
		case *v == 0:
			*v = def
		case *v < 0 || *v > most:
			b.problem(line(name), "%s: %d is out of range; write a number from 1 to %d", name, *v, most)
			*v = def
		}
	}
	bound("top", &d.Top, 5, 20)
	bound("rows", &d.Rows, 10, 100)
	bound("last", &d.Last, 10, 100)
	switch d.Step {
	case "":
		d.Step = StepInput
	case StepInput, StepOutput, StepLate, StepDeadLetter:
	default:
		b.problem(line("step"), "step: %q is not a step; write input, output, late or dead-letter", d.Step)
	}
	if d.Filter != "" {
		if _, err := topology.CompileBool(d.Filter, nil); err != nil {
			b.problem(line("filter"), "filter: %v", err)
		}
	}
	switch from := strings.TrimSpace(d.From); {
	case from == "" || from == "now":
	default:
		if dur, err := time.ParseDuration(from); err == nil && dur > 0 {
			b.From = now.Add(-dur)
		} else if t, err := time.Parse(time.RFC3339, from); err == nil {
			b.From = t
		} else {
			b.problem(line("from"), `from: %q is not "now", a duration back (e.g. "15m") or an RFC 3339 time`, from)
		}
	}
}

var yamlLine = regexp.MustCompile(`^(?:yaml: )?line (\d+): `)

// checkDisplay checks the display against the pipeline: its rollup, then
// its value against that rollup's aggregates.
func (b *Block) checkDisplay() {
	d := &b.Display
	rs := b.Spec.RollupSpecs()
	b.Rollup = rs[0]
	switch {
	case d.Rollup != "" && !b.Spec.MultiRollup():
		b.problem(0, "display rollup: %q: this pipeline has no rollups list; remove the key", d.Rollup)
		return
	case d.Rollup != "":
		var names []string
		b.Rollup = nil
		for _, r := range rs {
			names = append(names, r.RollupName)
			if r.RollupName == d.Rollup {
				b.Rollup = r
			}
		}
		if b.Rollup == nil {
			b.Rollup = rs[0]
			b.problem(0, "display rollup: %q is not a rollup of this pipeline; write one of %s", d.Rollup, strings.Join(names, ", "))
			return
		}
	}
	d.Rollup = b.Rollup.RollupName
	aggs := b.Rollup.Aggregates
	if d.Value == "" {
		d.Value = aggs[0].Name
	}
	for _, a := range aggs {
		if a.Name == d.Value {
			return
		}
	}
	var names []string
	for _, a := range aggs {
		names = append(names, a.Name)
	}
	of := "this pipeline"
	if b.Rollup.RollupName != "" {
		of = "rollup " + b.Rollup.RollupName
	}
	b.problem(0, "display value: %q is not an aggregate of %s; write one of %s", d.Value, of, strings.Join(names, ", "))
}

// OK says whether the block can run.
func (b *Block) OK() bool { return b.Spec != nil && len(b.Problems) == 0 }

// Describe is what `eddy describe -f` prints for the block's pipeline.
func (b *Block) Describe() string {
	if b.Spec == nil {
		return ""
	}
	return topology.Describe(b.Spec, 0)
}

// PromoteOptions are what a promoted pipeline needs that a block may
// leave out. Empty fields keep the block's own value, or take a default.
type PromoteOptions struct {
	// App is the pipeline's app id (its consumer group and topic prefix).
	// Default: the block's, else "<document>-<block number>".
	App string
	// Output is the results topic. Default: the block's, else
	// "<app>-results". Not used for a block with a rollups list: each
	// rollup names its own.
	Output string
	// Processing is at_least_once or exactly_once. Default: the block's,
	// else at_least_once.
	Processing string
	// Header is a comment put at the top of the file.
	Header string
}

// Promote returns a complete pipeline file for the block: its pipeline
// YAML (comments kept) with app, output topic and processing guarantee
// set, which topology.Parse (and so `eddy run -f`) accepts as it is.
func (b *Block) Promote(doc string, o PromoteOptions) ([]byte, error) {
	var root yaml.Node
	if err := yaml.Unmarshal([]byte(b.Pipeline), &root); err != nil || len(root.Content) == 0 || root.Content[0].Kind != yaml.MappingNode {
		return nil, errors.New("the block's pipeline is not a YAML mapping; fix its errors first")
	}
	m := root.Content[0]
	if o.App == "" {
		if v := mapGet(m, "app"); v != nil && v.Value != "" && v.Value != previewApp {
			o.App = v.Value
		} else {
			o.App = fmt.Sprintf("%s-%d", slug(doc), b.Index+1)
		}
	}
	mapSet(m, "app", scalar(o.App))
	if rl := mapGet(m, "rollups"); rl != nil {
		// Each rollup writes its own output topic, written in the block.
		return b.encodePromoted(&root, m, o)
	}
	out := mapGet(m, "output")
	if out == nil || out.Kind != yaml.MappingNode {
		out = &yaml.Node{Kind: yaml.MappingNode}
		mapSet(m, "output", out)
	}
	if o.Output == "" {
		if v := mapGet(out, "topic"); v != nil && v.Value != "" && v.Value != previewOutput {
			o.Output = v.Value
		} else {
			o.Output = o.App + "-results"
		}
	}
	mapSet(out, "topic", scalar(o.Output))
	return b.encodePromoted(&root, m, o)
}

// encodePromoted sets the processing guarantee and encodes the promoted
// pipeline, which must parse.
func (b *Block) encodePromoted(root, m *yaml.Node, o PromoteOptions) ([]byte, error) {
	if o.Processing == "" {
		if v := mapGet(m, "processing"); v != nil && v.Value != "" {
			o.Processing = v.Value
		} else {
			o.Processing = topology.AtLeastOnce
		}
	}
	mapSet(m, "processing", scalar(o.Processing))
	var buf bytes.Buffer
	for _, l := range strings.Split(strings.TrimRight(o.Header, "\n"), "\n") {
		if l != "" {
			buf.WriteString("# " + l + "\n")
		}
	}
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(root); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	if _, err := topology.Parse(buf.Bytes()); err != nil {
		return nil, fmt.Errorf("the promoted pipeline does not parse: %w", err)
	}
	return buf.Bytes(), nil
}

func scalar(v string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Value: v} }

func mapGet(m *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

func mapSet(m *yaml.Node, key string, v *yaml.Node) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			m.Content[i+1] = v
			return
		}
	}
	m.Content = append(m.Content, scalar(key), v)
}

// slug makes a name usable in an app id and a topic name.
func slug(s string) string {
	s = strings.TrimSuffix(strings.ToLower(s), ".md")
	var b strings.Builder
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '_':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
	}
	return strings.Trim(b.String(), "-")
}

// Blocks parses every block of d.
func (d *Document) ParseBlocks(now time.Time) []*Block {
	out := make([]*Block, len(d.Blocks))
	for i, r := range d.Blocks {
		out[i] = ParseBlock(i, r.Line, string(d.Text(i)), now)
	}
	return out
}
