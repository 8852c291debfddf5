package runbook

import (
	"bytes"
	"fmt"

	"github.com/yuin/goldmark"
	"github.com/yuin/goldmark/ast"
	"github.com/yuin/goldmark/text"
)

// Lang is the info string of a runbook block: ```eddy.
const Lang = "eddy"

// Document is one runbook: its source bytes and where its blocks are. It
// is immutable; Replace returns a new source.
type Document struct {
	Name   string
	Source []byte
	// Blocks in document order.
	Blocks []BlockRange
}

// BlockRange is where a block is in Document.Source.
type BlockRange struct {
	// FenceStart and FenceEnd span the whole fenced block, fences
	// included (FenceEnd after the closing fence's newline, if any).
	FenceStart, FenceEnd int
	// Start and End span the block's content: the lines between the
	// fences, newlines included. Start == End for an empty block.
	Start, End int
	// Line is the document line (from 1) of the content's first line.
	Line int
}

// Text is the block's content.
func (d *Document) Text(i int) []byte { b := d.Blocks[i]; return d.Source[b.Start:b.End] }

// Parse finds the eddy blocks of a Markdown document. Only top-level
// blocks count: one in a list or a quote is shown as code (its lines are
// indented, and saving it back could not be byte-exact).
func Parse(name string, src []byte) *Document {
	d := &Document{Name: name, Source: src}
	root := goldmark.New().Parser().Parse(text.NewReader(src))
	for n := root.FirstChild(); n != nil; n = n.NextSibling() {
		fc, ok := n.(*ast.FencedCodeBlock)
		if !ok || fc.Info == nil {
			continue
		}
		if f := bytes.Fields(fc.Info.Segment.Value(src)); len(f) == 0 || string(f[0]) != Lang {
			continue
		}
		info := fc.Info.Segment
		var b BlockRange
		b.FenceStart = bytes.LastIndexByte(src[:info.Start], '\n') + 1
		openEnd := bytes.IndexByte(src[info.Stop:], '\n')
		if openEnd < 0 {
			continue // a fence line at the end of the file: no content
		}
		b.Start = info.Stop + openEnd + 1
		b.End = b.Start
		if lines := fc.Lines(); lines.Len() > 0 {
			first, last := lines.At(0), lines.At(lines.Len()-1)
			if first.Padding > 0 || first.Start != lineStart(src, first.Start) {
				continue // indented content: not byte-exact, left as code
			}
			b.Start, b.End = first.Start, last.Stop
		}
		b.FenceEnd = b.End
		if b.End < len(src) {
			e := bytes.IndexByte(src[b.End:], '\n')
			if e < 0 {
				b.FenceEnd = len(src)
			} else {
				b.FenceEnd = b.End + e + 1
			}
		}
		b.Line = bytes.Count(src[:b.Start], []byte{'\n'}) + 1
		d.Blocks = append(d.Blocks, b)
	}
	return d
}

func lineStart(src []byte, i int) int { return bytes.LastIndexByte(src[:i], '\n') + 1 }

// Replace returns the document's source with block i's content replaced
// by content, every other byte unchanged. content gets a final newline if
// it lacks one (the closing fence must stay on its own line).
func (d *Document) Replace(i int, content []byte) ([]byte, error) {
	if i < 0 || i >= len(d.Blocks) {
		return nil, fmt.Errorf("runbook %s: no block %d (it has %d)", d.Name, i, len(d.Blocks))
	}
	if len(content) > 0 && content[len(content)-1] != '\n' {
		content = append(append([]byte(nil), content...), '\n')
	}
	if bytes.Contains(append([]byte{'\n'}, content...), []byte("\n```")) {
		return nil, fmt.Errorf("runbook %s: block %d: a line starting with ``` would end the block early", d.Name, i)
	}
	b := d.Blocks[i]
	out := make([]byte, 0, len(d.Source)-(b.End-b.Start)+len(content))
	out = append(out, d.Source[:b.Start]...)
	out = append(out, content...)
	out = append(out, d.Source[b.End:]...)
	return out, nil
}

// Part is a piece of a document as the page shows it: prose rendered to
// HTML, or a block (its index).
type Part struct {
	HTML  string `json:"html,omitempty"`
	Block int    `json:"block"` // -1 for prose
}

// Parts renders the prose between blocks to HTML (goldmark, raw HTML
// escaped) and places the blocks between.
func (d *Document) Parts() ([]Part, error) {
	md := goldmark.New()
	var out []Part
	prose := func(src []byte) error {
		if len(bytes.TrimSpace(src)) == 0 {
			return nil
		}
		var buf bytes.Buffer
		if err := md.Convert(src, &buf); err != nil {
			return err
		}
		out = append(out, Part{HTML: buf.String(), Block: -1})
		return nil
	}
	at := 0
	for i, b := range d.Blocks {
		if err := prose(d.Source[at:b.FenceStart]); err != nil {
			return nil, err
		}
		out = append(out, Part{Block: i})
		at = b.FenceEnd
	}
	if err := prose(d.Source[at:]); err != nil {
		return nil, err
	}
	return out, nil
}
