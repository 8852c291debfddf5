package main

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

// TestSettingsDocMatches keeps the settings table in docs/operations.md
// identical to what `eddy settings` prints (one source of truth).
func TestSettingsDocMatches(t *testing.T) {
	doc, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(doc)
	begin, end := strings.Index(s, "<!-- settings:begin -->\n"), strings.Index(s, "<!-- settings:end -->")
	if begin < 0 || end < begin {
		t.Fatal("docs/operations.md lacks the settings:begin/end markers")
	}
	got := s[begin+len("<!-- settings:begin -->\n") : end]
	var want bytes.Buffer
	writeSettingsTable(&want)
	if got != want.String() {
		t.Errorf("docs/operations.md settings table is stale; replace it with the output of `eddy settings`:\n%s", want.String())
	}
}
