package topology

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

const specDoc = "../docs/pipeline-spec.md"

// yamlBlocks returns the ```yaml fenced blocks of a Markdown document with
// the line each starts on.
func yamlBlocks(doc string) (blocks []string, lines []int) {
	var cur []string
	in := false
	for i, l := range strings.Split(doc, "\n") {
		switch {
		case !in && strings.TrimSpace(l) == "```yaml":
			in, cur = true, nil
			lines = append(lines, i+2)
		case in && strings.TrimSpace(l) == "```":
			in = false
			blocks = append(blocks, strings.Join(cur, "\n")+"\n")
		case in:
			cur = append(cur, l)
		}
	}
	return blocks, lines
}

// docExamples parses every example pipeline of doc (every ```yaml block
// that starts with "app:"), reporting parse errors with their line. It
// returns the parsed specs with their lines, and how many examples there are.
func docExamples(t *testing.T, doc string) (specs []*Spec, lines []int, n int) {
	t.Helper()
	data, err := os.ReadFile(filepath.FromSlash(doc))
	if err != nil {
		t.Fatal(err)
	}
	blocks, at := yamlBlocks(string(data))
	for i, b := range blocks {
		if !strings.HasPrefix(b, "app:") {
			continue
		}
		n++
		s, err := Parse([]byte(b))
		if err != nil {
			t.Errorf("%s, example at line %d:\n%v", doc, at[i], err)
			continue
		}
		specs, lines = append(specs, s), append(lines, at[i])
	}
	return specs, lines, n
}

// TestSpecDocExamplesParse parses every example pipeline in the spec
// reference: every ```yaml block that starts with "app:".
func TestSpecDocExamplesParse(t *testing.T) {
	specs, lines, n := docExamples(t, specDoc)
	for i, s := range specs {
		if _, err := s.Compile(nil); err != nil {
			t.Errorf("%s, example at line %d: Compile: %v", specDoc, lines[i], err)
		}
	}
	if n < 3 {
		t.Errorf("found %d example pipelines in %s, want at least 3", n, specDoc)
	}
}

// TestAlertingDocExamplesParse parses and compiles every example pipeline
// of the alerting guide.
func TestAlertingDocExamplesParse(t *testing.T) {
	const doc = "../docs/alerting.md"
	specs, lines, n := docExamples(t, doc)
	for i, s := range specs {
		if s.Alerts == nil || len(s.Alerts.Rules) == 0 {
			t.Errorf("%s, example at line %d has no alert rule", doc, lines[i])
		}
	}
	if n < 3 {
		t.Errorf("found %d example pipelines in %s, want one per rule kind", n, doc)
	}
}

// TestSpecDocMentionsEveryKey keeps the reference complete: every key of
// Spec must appear in it, written as `window.size` or `aggregates[].name`.
func TestSpecDocMentionsEveryKey(t *testing.T) {
	data, err := os.ReadFile(filepath.FromSlash(specDoc))
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keyPaths() {
		if !strings.Contains(string(data), "| `"+k+"` |") {
			t.Errorf("%s has no reference row for `%s`", specDoc, k)
		}
	}
}

// The fully written-out example in the doc must be what defaults give.
func TestSpecDocDefaultsMatch(t *testing.T) {
	data, err := os.ReadFile(filepath.FromSlash(specDoc))
	if err != nil {
		t.Fatal(err)
	}
	blocks, _ := yamlBlocks(string(data))
	if len(blocks) < 2 {
		t.Fatal("want the short example and its written-out form first")
	}
	short, err := Parse([]byte(blocks[0]))
	if err != nil {
		t.Fatal(err)
	}
	full, err := Parse([]byte(blocks[1]))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(short, full) {
		t.Errorf("the written-out example differs from the short one with defaults:\n%+v\n%+v", short, full)
	}
}

// TestSpecDocRollupsExample: the reference shows a pipeline of three
// rollups with a chain, and it is the spec of the describe golden file
// testdata/describe/rollups.yaml, so that file's golden output is what
// `eddy describe` prints for the example in the doc.
func TestSpecDocRollupsExample(t *testing.T) {
	specs, lines, _ := docExamples(t, specDoc)
	golden := mustParseFile(t, filepath.Join("testdata", "describe", "rollups.yaml"))
	found := false
	for i, s := range specs {
		if !s.MultiRollup() {
			continue
		}
		chained, keys := 0, make(map[string]bool)
		for _, r := range s.Rollups {
			if r.From != "" {
				chained++
			} else {
				keys[strings.Join(r.Key, ",")] = true
			}
		}
		if len(s.Rollups) < 3 || chained == 0 || len(keys) < 2 {
			continue
		}
		found = true
		if !reflect.DeepEqual(s, golden) {
			t.Errorf("%s, example at line %d differs from testdata/describe/rollups.yaml: keep them the same", specDoc, lines[i])
		}
	}
	if !found {
		t.Errorf("%s has no example with three rollups, two keys and a chain", specDoc)
	}
}
