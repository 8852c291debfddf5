package main

import (
	"bytes"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
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
// command the script has, every `scripts/kafka.sh tool NAME` a short name
// the script knows, and every flag given to scripts/avro_consume.py is one it
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
	kafkaSh, err := os.ReadFile("../../scripts/kafka.sh")
	if err != nil {
		t.Fatal(err)
	}
	aliases := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^    ([a-z|-]+)\)\s+echo `).FindAllStringSubmatch(string(kafkaSh), -1) {
		for _, a := range strings.Split(m[1], "|") {
			aliases[a] = true
		}
	}
	var cmds, flags, tools int
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
				case w == "scripts/kafka.sh" && i+2 < len(f) && f[i+1] == "tool":
					// A short name must be one of tool_alias's; a class
					// name (with dots) is passed through.
					c := f[i+2]
					if strings.Contains(c, ".") || c == "CLASS" || c == "--help" {
						continue
					}
					tools++
					if !aliases[c] {
						t.Errorf("%s: `scripts/kafka.sh tool %s`: not an alias of the script (it has %v):\n  %s", doc, c, slices.Sorted(maps.Keys(aliases)), line)
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
	if cmds == 0 || flags == 0 || tools == 0 || !aliases["topics"] {
		t.Errorf("found %d apicurio.sh commands, %d avro_consume.py flags and %d kafka.sh tool aliases in the docs (aliases known: %d); the test no longer sees them",
			cmds, flags, tools, len(aliases))
	}
}

// TestDocCommandsParse keeps every eddy command line shown to users
// runnable: each `eddy ...` (or `./eddy ...`, `go run ./cmd/eddy ...`) in
// the README, docs/*.md (code blocks and inline code) and the demo's banner
// names a real subcommand, uses only flags that subcommand has, and passes
// it the positional arguments it accepts. Flag values are not checked (they
// are often placeholders such as URL or $BROKERS).
func TestDocCommandsParse(t *testing.T) {
	docs, err := filepath.Glob("../../docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	type source struct{ name, text string }
	sources := []source{{"demo banner", "```\n" + demoRegistryHint("http://127.0.0.1:8081") + "\n```\n"}}
	for _, p := range append([]string{"../../README.md"}, docs...) {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		sources = append(sources, source{strings.TrimPrefix(p, "../../"), string(b)})
	}
	n := 0
	for _, src := range sources {
		for _, line := range docCommandLines(src.text) {
			for _, args := range eddyInvocations(line) {
				n++
				if err := checkInvocation(args); err != nil {
					t.Errorf("%s: `eddy %s`: %v\n  in: %s", src.name, strings.Join(args, " "), err, line)
				}
			}
		}
	}
	t.Logf("%d eddy command lines checked", n)
	if n < 20 {
		t.Errorf("found only %d eddy command lines in the README, docs and banner; the scanner no longer sees them", n)
	}
	// The scanner itself: a wrong flag and a wrong subcommand are caught.
	for _, bad := range [][]string{{"schema", "list", "--registri-url", "x"}, {"shema", "list"}, {"describe", "extra"},
		{"run", "-f", "p.yaml", "--state-dir", "./state"}, {"run", "--state-dir", "./my-state"}} {
		if checkInvocation(bad) == nil {
			t.Errorf("`eddy %s` passed the check", strings.Join(bad, " "))
		}
	}
}

// docCommandLines returns the lines of fenced code blocks (with shell line
// continuations joined) and the inline code spans of the other lines.
func docCommandLines(text string) []string {
	text = strings.ReplaceAll(text, "\\\n", " ")
	var out []string
	fenced := false
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			fenced = !fenced
			continue
		}
		if fenced {
			out = append(out, line)
			continue
		}
		parts := strings.Split(line, "`")
		for i := 1; i < len(parts); i += 2 {
			out = append(out, parts[i])
		}
	}
	return out
}

// eddyInvocations finds the eddy command lines in one shell line and
// returns their arguments (after the program name), each cut at the first
// shell operator or comment.
func eddyInvocations(line string) [][]string {
	if i := strings.Index(line, "#"); i >= 0 && strings.TrimSpace(line[:i]) == "" {
		return nil // a comment line
	}
	f := strings.Fields(line)
	var out [][]string
	for i, w := range f {
		start := false
		switch {
		case w == "eddy" || w == "./eddy" || w == "bin/eddy":
			start = i == 0 || strings.ContainsAny(f[i-1], "|&;(") || f[i-1] == "$"
		case w == "./cmd/eddy":
			start = i >= 2 && f[i-1] == "run" && f[i-2] == "go"
		}
		if !start {
			continue
		}
		var args []string
		for _, a := range f[i+1:] {
			if strings.HasPrefix(a, "#") || strings.ContainsAny(a[:1], "|&;<>)") || strings.HasPrefix(a, "2>") {
				break
			}
			args = append(args, strings.Trim(a, `"'`))
		}
		out = append(out, args)
	}
	return out
}

// checkInvocation parses args with a fresh eddy command tree, without
// running anything.
func checkInvocation(args []string) error {
	root := rootCmd()
	c, rest, err := root.Find(args)
	if err != nil {
		return err
	}
	if c == root && len(rest) > 0 && !strings.HasPrefix(rest[0], "-") {
		return fmt.Errorf("unknown subcommand %q", rest[0])
	}
	c.InitDefaultHelpFlag() // cobra adds --help and --version when it executes
	c.InitDefaultVersionFlag()
	c.InheritedFlags() // merges the parents' persistent flags into c.Flags()
	for _, a := range rest {
		if a == "--" {
			break
		}
		var name string
		switch {
		case strings.HasPrefix(a, "--"):
			name, _, _ = strings.Cut(a[2:], "=")
			if c.Flags().Lookup(string(normalizeFlag(nil, name))) == nil {
				return fmt.Errorf("%s has no flag --%s", c.CommandPath(), name)
			}
		case strings.HasPrefix(a, "-") && len(a) > 1:
			name = a[1:2]
			if c.Flags().ShorthandLookup(name) == nil {
				return fmt.Errorf("%s has no flag -%s", c.CommandPath(), name)
			}
		}
	}
	if err := c.ParseFlags(rest); err != nil {
		// Values are placeholders (--partitions N), and an inline mention
		// such as `eddy describe -f` names a flag without its value; neither
		// is an error of the flag's name.
		if strings.Contains(err.Error(), "invalid argument") ||
			strings.Contains(err.Error(), "flag needs an argument") && strings.HasPrefix(rest[len(rest)-1], "-") {
			return nil
		}
		return err
	}
	if f := c.Flags().Lookup("state-dir"); f != nil && f.Changed {
		if err := checkStateDir(f.Value.String()); err != nil {
			return err
		}
	}
	if c.Runnable() {
		return c.ValidateArgs(c.Flags().Args())
	}
	if len(c.Flags().Args()) > 0 {
		return fmt.Errorf("%q is not a subcommand of %s", c.Flags().Args()[0], c.CommandPath())
	}
	return nil
}

// checkStateDir fails for a relative --state-dir that, run from the
// repository root as the docs do, would write into one of the repository's
// own directories (./state is the source package state/) or show in `git
// status`.
func checkStateDir(dir string) error {
	if filepath.IsAbs(dir) || strings.HasPrefix(dir, "$") || strings.HasPrefix(dir, "~") {
		return nil
	}
	first := strings.Split(filepath.Clean(dir), string(filepath.Separator))[0]
	if fi, err := os.Stat(filepath.Join("../..", first)); err == nil && fi.IsDir() {
		return fmt.Errorf("--state-dir %s writes into the repository's directory %s/", dir, first)
	}
	if _, err := exec.LookPath("git"); err == nil {
		cmd := exec.Command("git", "check-ignore", "-q", "--no-index", dir+"/x")
		cmd.Dir = "../.."
		if cmd.Run() != nil {
			return fmt.Errorf("--state-dir %s is not ignored by .gitignore: its files would show in git status", dir)
		}
	}
	return nil
}
