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

// TestDocsScriptInvocations keeps the docs' examples of the test scripts
// runnable: every `scripts/apicurio.sh CMD` in the docs' code blocks is a
// command the script has, and every flag given to scripts/avro_consume.py is one it
// defines. (The commands themselves run in scripts/test.sh and in
// TestKafkaSchemaRegistries.)
func TestDocsScriptInvocations(t *testing.T) {
	apicurio, err := os.ReadFile("../../scripts/apicurio.sh")
	if err != nil {
		t.Fatal(err)
	}
	consume, err := os.ReadFile("../../scripts/avro_consume.py")
	if err != nil {
		t.Fatal(err)
	}
	var cmds, flags int
	for _, doc := range []string{"../../docs/schemas.md", "../../docs/testing.md", "../../README.md"} {
		b, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		// Continuation lines belong to the command they continue.
		text := strings.ReplaceAll(string(b), "\\\n", " ")
		fenced := false
		for _, line := range strings.Split(text, "\n") {
			if strings.HasPrefix(line, "```") {
				fenced = !fenced
				continue
			}
			if !fenced {
				continue
			}
			f := strings.Fields(line)
			for i, w := range f {
				w = strings.Trim(w, "`\"$()")
				switch {
				case w == "scripts/apicurio.sh" && i+1 < len(f):
					c := strings.Trim(f[i+1], "`\"$()")
					if c == "" || strings.HasPrefix(c, "-") && c != "--help" {
						continue
					}
					cmds++
					if !strings.Contains(string(apicurio), "\n    "+c+")") && !strings.Contains(string(apicurio), "|"+c+")") {
						t.Errorf("%s: `scripts/apicurio.sh %s` is not a command of the script:\n  %s", doc, c, line)
					}
				case strings.HasSuffix(w, "scripts/avro_consume.py"):
					for _, a := range f[i+1:] {
						if strings.HasPrefix(a, "--") {
							flags++
							if !strings.Contains(string(consume), `"`+a+`"`) {
								t.Errorf("%s: scripts/avro_consume.py has no flag %s:\n  %s", doc, a, line)
							}
						}
					}
				}
			}
		}
	}
	if cmds == 0 || flags == 0 {
		t.Errorf("found %d apicurio.sh commands and %d avro_consume.py flags in the docs; the test no longer sees them", cmds, flags)
	}
}
