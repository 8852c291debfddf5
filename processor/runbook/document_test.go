package runbook

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/eddy-streams/eddy/topology"
)

const sampleDoc = "# Checkout\r\n\nSome prose with `code`.\n\n" +
	"```eddy\n" +
	"source: {topics: [http-requests]}\n" +
	"key: [endpoint]\n" +
	"window: {type: tumbling, size: 10s}\n" +
	"aggregates: [{name: requests, op: count}]\n" +
	"---\n" +
	"display: chart\n" +
	"```\n" +
	"\nMore prose.\n\n" +
	"```go\nnot a block\n```\n\n" +
	"- a list\n\n  ```eddy\n  indented: not a block\n  ```\n\n" +
	"~~~eddy title\n" +
	"source: {topics: [http-requests]}\n" +
	"key: [endpoint]\n" +
	"window: {type: tumbling}\n" +
	"aggregates: [{name: requests, op: count}]\n" +
	"~~~\n" +
	"trailing\twhitespace   \n"

func TestParseFindsTopLevelBlocks(t *testing.T) {
	d := Parse("checkout.md", []byte(sampleDoc))
	if len(d.Blocks) != 2 {
		t.Fatalf("blocks: got %d, want 2 (the indented one and the go one are not blocks)", len(d.Blocks))
	}
	lines := strings.Split(sampleDoc, "\n")
	for i, want := range []string{"source: {topics: [http-requests]}", "source: {topics: [http-requests]}"} {
		b := d.Blocks[i]
		if got := lines[b.Line-1]; got != want {
			t.Errorf("block %d: line %d is %q, want %q", i, b.Line, got, want)
		}
		if !strings.HasPrefix(string(d.Source[b.FenceStart:]), "```eddy") && !strings.HasPrefix(string(d.Source[b.FenceStart:]), "~~~eddy") {
			t.Errorf("block %d: fence starts at %q", i, d.Source[b.FenceStart:b.Start])
		}
	}
}

// Save writes back every byte as it was except the edited block's.
func TestReplaceIsByteExactElsewhere(t *testing.T) {
	src := []byte(sampleDoc)
	d := Parse("checkout.md", src)
	for i := range d.Blocks {
		edited := "key: [service]\n# edited " + fmt.Sprint(i) + "\n"
		out, err := d.Replace(i, []byte(edited))
		if err != nil {
			t.Fatal(err)
		}
		// Independently: find the block's text by its fences and splice by hand.
		old := string(d.Text(i))
		at := strings.Index(sampleDoc, old)
		if i == 1 {
			at = strings.LastIndex(sampleDoc, old)
		}
		want := sampleDoc[:at] + edited + sampleDoc[at+len(old):]
		if string(out) != want {
			t.Fatalf("block %d: saved document differs:\n%q\nwant\n%q", i, out, want)
		}
		// The saved document parses to the same block layout.
		d2 := Parse("checkout.md", out)
		if len(d2.Blocks) != len(d.Blocks) || string(d2.Text(i)) != edited {
			t.Fatalf("block %d: re-parsed: %d blocks, text %q", i, len(d2.Blocks), d2.Text(i))
		}
	}
	if _, err := d.Replace(0, []byte("a\n```\nb")); err == nil {
		t.Fatal("a fence inside a block was accepted")
	}
	out, _ := d.Replace(0, []byte("no newline"))
	if !bytes.Contains(out, []byte("no newline\n```")) {
		t.Fatalf("final newline not added: %q", out)
	}
}

// A block's errors are topology.Parse's (what `eddy describe -f` prints
// for the block's pipeline in a file), at the document's lines.
func TestBlockErrorsAtDocumentLines(t *testing.T) {
	d := Parse("checkout.md", []byte(sampleDoc))
	blocks := d.ParseBlocks(time.Now())
	if !blocks[0].OK() {
		t.Fatalf("block 0: %+v", blocks[0].Problems)
	}
	b := blocks[1]
	if b.OK() || len(b.Problems) == 0 {
		t.Fatal("block 1 (a tumbling window without size) has no problem")
	}
	// What describe says of the same lines in a file of their own.
	_, err := topology.Parse([]byte(b.Text + "app: x\noutput: {topic: y}\n"))
	fes := topology.FieldErrors(err)
	if len(fes) != len(b.Problems) {
		t.Fatalf("problems: %d, describe: %d (%v)", len(b.Problems), len(fes), err)
	}
	for i, fe := range fes {
		wantLine := fe.Line + d.Blocks[1].Line - 1
		want := strings.Replace(fe.Error(), fmt.Sprintf("line %d:", fe.Line), fmt.Sprintf("line %d:", wantLine), 1)
		if b.Problems[i].Line != wantLine || b.Problems[i].Message != want {
			t.Errorf("problem %d: %+v, want line %d %q", i, b.Problems[i], wantLine, want)
		}
		if lines := strings.Split(sampleDoc, "\n"); !strings.HasPrefix(lines[wantLine-1], "window:") {
			t.Errorf("problem %d points at %q", i, lines[wantLine-1])
		}
	}
}

func TestDisplayProblems(t *testing.T) {
	pipe := "source: {topics: [t]}\nkey: [k]\nwindow: {type: tumbling, size: 10s}\naggregates: [{name: n, op: count}]\n---\n"
	for _, c := range []struct{ disp, want string }{
		{"display: pie\n", `line 15: display: "pie" is not a display`},
		{"display: chart\nvalue: nope\n", `display value: "nope" is not an aggregate`},
		{"display: events\nfilter: 'status >'\n", "line 16: filter:"},
		{"display: events\nstep: middle\n", `line 16: step: "middle"`},
		{"display: table\nfrom: yesterday\n", `line 16: from: "yesterday"`},
		{"display: table\ncolour: red\n", "line 16: display: field colour not found"},
	} {
		b := ParseBlock(0, 10, pipe+c.disp, time.Now())
		if len(b.Problems) == 0 || !strings.HasPrefix(b.Problems[0].Message, c.want) {
			t.Errorf("%q: problems %+v, want %q", c.disp, b.Problems, c.want)
		}
	}
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	b := ParseBlock(0, 1, pipe+"display: events\nfrom: 15m\n", now)
	if !b.OK() || !b.From.Equal(now.Add(-15*time.Minute)) || b.Display.Last != 10 || b.Display.Step != StepInput {
		t.Fatalf("defaults: %+v %+v %v", b.Display, b.Problems, b.From)
	}
}

func TestPromoteParses(t *testing.T) {
	d := Parse("Check out.md", []byte(sampleDoc))
	b := d.ParseBlocks(time.Now())[0]
	out, err := b.Promote(d.Name, PromoteOptions{Header: "promoted from Check out.md"})
	if err != nil {
		t.Fatal(err)
	}
	spec, err := topology.Parse(out)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if spec.App != "check-out-2" && spec.App != "check-out-1" {
		t.Errorf("app %q", spec.App)
	}
	if spec.Output.Topic != spec.App+"-results" || spec.Processing != topology.AtLeastOnce || !strings.HasPrefix(string(out), "# promoted") {
		t.Errorf("promoted:\n%s", out)
	}
	out, err = b.Promote(d.Name, PromoteOptions{App: "checkout-errors", Output: "checkout-errors-10s", Processing: topology.ExactlyOnce})
	if err != nil {
		t.Fatal(err)
	}
	spec, err = topology.Parse(out)
	if err != nil || spec.App != "checkout-errors" || spec.Output.Topic != "checkout-errors-10s" || spec.Processing != topology.ExactlyOnce {
		t.Fatalf("%v %+v\n%s", err, spec, out)
	}
}

// Every block of docs/runbooks.md and of the demo's runbook runs as it is
// written (the docs' examples are tested).
func TestDocBlocksParse(t *testing.T) {
	for _, p := range []string{"../../docs/runbooks.md", "../../cmd/eddy/runbooks/http-traffic.md"} {
		src, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		d := Parse(p, src)
		if len(d.Blocks) < 3 {
			t.Errorf("%s: %d blocks, want the examples (3 or more)", p, len(d.Blocks))
		}
		for _, b := range d.ParseBlocks(time.Now()) {
			if !b.OK() {
				t.Errorf("%s: block at line %d: %+v", p, b.Line, b.Problems)
			}
		}
	}
}
