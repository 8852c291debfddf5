package eddytest_test

import (
	"os"
	"strings"
	"testing"

	"github.com/eddy-streams/eddy/processor/eddytest"
)

// TestDocCases: every case shown in docs/testing-pipelines.md (a YAML
// block whose first line is "# case for deploy/pipelines/...") parses
// and passes against that pipeline.
func TestDocCases(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile("../../docs/testing-pipelines.md")
	if err != nil {
		t.Fatal(err)
	}
	const marker = "# case for "
	n := 0
	for _, block := range strings.Split(string(doc), "```yaml\n")[1:] {
		block = block[:strings.Index(block, "```")]
		if !strings.HasPrefix(block, marker) {
			continue
		}
		n++
		pipeline := strings.TrimSpace(strings.SplitN(block, "\n", 2)[0][len(marker):])
		spec := loadSpec(t, "../../"+pipeline)
		c, err := eddytest.ParseCase([]byte(block))
		if err != nil {
			t.Fatalf("case %d of the doc: %v", n, err)
		}
		out, err := c.Run(spec, nil)
		if err != nil {
			t.Fatalf("case %d of the doc: %v", n, err)
		}
		for _, d := range c.Check(spec, out) {
			t.Errorf("case %d of the doc: %s", n, d)
		}
	}
	if n == 0 {
		t.Error("docs/testing-pipelines.md shows no case (a yaml block starting with \"# case for \")")
	}
}
