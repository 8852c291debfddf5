package deploy

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
)

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	cmd  string // upper case: FROM, RUN, ...
	args string
	line int
}

// stage is one build stage: FROM up to the next FROM.
type stage struct {
	from, name string
	ins        []instruction
}

// parseDockerfile reads the instructions of a Dockerfile: comments and
// parser directives dropped, lines ending in a backslash joined.
func parseDockerfile(t *testing.T, path string) (args []instruction, stages []*stage) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	var cur strings.Builder
	start, n := 0, 0
	for sc.Scan() {
		n++
		line := sc.Text()
		if trimmed := strings.TrimSpace(line); cur.Len() == 0 && (trimmed == "" || strings.HasPrefix(trimmed, "#")) {
			continue
		} else if strings.HasPrefix(trimmed, "#") {
			continue // a comment inside a continued instruction
		}
		if cur.Len() == 0 {
			start = n
		}
		if strings.HasSuffix(line, "\\") {
			cur.WriteString(strings.TrimSuffix(line, "\\") + " ")
			continue
		}
		cur.WriteString(line)
		text := strings.TrimSpace(cur.String())
		cur.Reset()
		cmd, rest, _ := strings.Cut(text, " ")
		in := instruction{cmd: strings.ToUpper(cmd), args: strings.TrimSpace(rest), line: start}
		switch {
		case in.cmd == "FROM":
			fields := strings.Fields(in.args)
			var from, name string
			for i := 0; i < len(fields); i++ {
				switch {
				case strings.HasPrefix(fields[i], "--"):
				case strings.EqualFold(fields[i], "AS") && i+1 < len(fields):
					name = fields[i+1]
					i++
				default:
					from = fields[i]
				}
			}
			stages = append(stages, &stage{from: from, name: name})
		case len(stages) == 0:
			if in.cmd != "ARG" {
				t.Fatalf("%s:%d: %s before the first FROM", path, in.line, in.cmd)
			}
			args = append(args, in)
		default:
			s := stages[len(stages)-1]
			s.ins = append(s.ins, in)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(stages) == 0 {
		t.Fatalf("%s: no FROM", path)
	}
	return args, stages
}

// TestDeployDockerfile checks the image definition without building it:
// a multi-stage build of a static binary (CGO_ENABLED=0) on a distroless
// or scratch base, run by a numeric non-root user, with nothing in the
// final stage that needs a shell.
func TestDeployDockerfile(t *testing.T) {
	path := "Dockerfile"
	globalArgs, stages := parseDockerfile(t, path)
	if len(stages) < 2 {
		t.Fatalf("%s: %d stage(s); want a build stage and a runtime stage", path, len(stages))
	}
	final := stages[len(stages)-1]

	if !strings.HasPrefix(final.from, "gcr.io/distroless/static") && final.from != "scratch" {
		t.Errorf("final stage FROM %s: want gcr.io/distroless/static* or scratch", final.from)
	}
	var user string
	var entrypoint []string
	env := map[string]string{}
	for _, in := range final.ins {
		switch in.cmd {
		case "RUN":
			t.Errorf("%s:%d: RUN in the final stage needs a shell at build time in the runtime image: %s", path, in.line, in.args)
		case "USER":
			user = in.args
		case "ENTRYPOINT", "CMD":
			var v []string
			if err := json.Unmarshal([]byte(in.args), &v); err != nil {
				t.Errorf("%s:%d: %s %s is not the exec (JSON array) form: it would need /bin/sh", path, in.line, in.cmd, in.args)
			}
			if in.cmd == "ENTRYPOINT" {
				entrypoint = v
			}
		case "ENV":
			for _, kv := range strings.Fields(in.args) {
				if k, v, ok := strings.Cut(kv, "="); ok {
					env[k] = v
				}
			}
		}
	}
	uid, gid, ok := strings.Cut(user, ":")
	u, err := strconv.Atoi(uid)
	if err != nil || u == 0 {
		t.Errorf("final stage USER %q: want a numeric non-root uid (Kubernetes' runAsNonRoot can check only numbers)", user)
	}
	if ok {
		if g, err := strconv.Atoi(gid); err != nil || g == 0 {
			t.Errorf("final stage USER %q: want a numeric non-root gid", user)
		}
	}
	if len(entrypoint) != 1 || entrypoint[0] != "/eddy" {
		t.Errorf("ENTRYPOINT %v: want [\"/eddy\"]", entrypoint)
	}

	// The binary: built with cgo off from ./cmd/eddy and copied into the
	// final stage; the state directory owned by the runtime user.
	var built bool
	for _, s := range stages[:len(stages)-1] {
		for _, in := range s.ins {
			if in.cmd == "RUN" && strings.Contains(in.args, "go build") {
				built = true
				if !regexp.MustCompile(`\bCGO_ENABLED=0\b`).MatchString(in.args) {
					t.Errorf("%s:%d: go build without CGO_ENABLED=0: the binary would need libc", path, in.line)
				}
				if !strings.Contains(in.args, "./cmd/eddy") || !strings.Contains(in.args, "-o /out/eddy") {
					t.Errorf("%s:%d: want go build -o /out/eddy ./cmd/eddy: %s", path, in.line, in.args)
				}
			}
		}
	}
	if !built {
		t.Errorf("%s: no build stage runs go build", path)
	}
	var copiedBinary, stateDir bool
	for _, in := range final.ins {
		if in.cmd != "COPY" {
			continue
		}
		if strings.Contains(in.args, "/out/eddy /eddy") {
			copiedBinary = true
		}
		if dir := env["EDDY_STATE_DIR"]; dir != "" && strings.HasSuffix(in.args, " "+dir) {
			stateDir = true
			if !strings.Contains(in.args, "--chown="+user) {
				t.Errorf("%s:%d: the state directory %s is not owned by USER %s: a fresh volume there would not be writable", path, in.line, dir, user)
			}
		}
	}
	if !copiedBinary {
		t.Errorf("%s: the final stage does not COPY /out/eddy to /eddy", path)
	}
	if !stateDir {
		t.Errorf("%s: the final stage does not create EDDY_STATE_DIR (%q) for the runtime user", path, env["EDDY_STATE_DIR"])
	}
	if port := env["EDDY_HTTP_ADDR"]; !strings.HasPrefix(port, ":") {
		t.Errorf("ENV EDDY_HTTP_ADDR=%q: in a container eddy must listen on every interface (e.g. :8080) for probes and scrapes", port)
	}

	// The Go release line of the build image is go.mod's.
	goVersion := ""
	for _, a := range globalArgs {
		if v, ok := strings.CutPrefix(a.args, "GO_VERSION="); ok {
			goVersion = v
		}
	}
	mod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(mod)
	if m == nil || goVersion != string(m[1]) {
		t.Errorf("ARG GO_VERSION=%s: want go.mod's release line %s", goVersion, m[1])
	}
	if !strings.Contains(stages[0].from, "${GO_VERSION}") {
		t.Errorf("build stage FROM %s does not use GO_VERSION", stages[0].from)
	}
}

// TestDeployStaticBuild checks that eddy and every package it imports
// build with cgo off, as the Dockerfile builds it.
func TestDeployStaticBuild(t *testing.T) {
	cmd := exec.Command("go", "list", "-e", "-deps", "-f", "{{if .Error}}{{.ImportPath}}: {{.Error}}{{end}}", "../cmd/eddy")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := cmd.CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "" {
		t.Fatalf("with CGO_ENABLED=0, eddy's packages do not build: %v\n%s", err, out)
	}
}

// TestDeployDockerignore checks that the .dockerignore at the build
// context's root keeps out what the build does not need, and nothing that
// it does: every Go file and embedded file of eddy's own packages, and
// go.mod and go.sum.
func TestDeployDockerignore(t *testing.T) {
	f, err := os.Open(filepath.Join(root, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	patterns, err := ignorefile.ReadAll(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	pm, err := patternmatcher.New(patterns)
	if err != nil {
		t.Fatal(err)
	}
	ignored := func(rel string) bool {
		ok, err := pm.MatchesOrParentMatches(filepath.ToSlash(rel))
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}

	out, err := exec.Command("go", "list", "-deps", "-f",
		`{{if .Module}}{{if .Module.Main}}{{$d := .Dir}}{{range .GoFiles}}{{$d}}/{{.}}{{"\n"}}{{end}}{{range .EmbedFiles}}{{$d}}/{{.}}{{"\n"}}{{end}}{{end}}{{end}}`,
		"../cmd/eddy").Output()
	if err != nil {
		t.Fatal(err)
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		t.Fatal(err)
	}
	needed := []string{"go.mod", "go.sum"}
	for _, p := range strings.Fields(string(out)) {
		rel, err := filepath.Rel(abs, p)
		if err != nil {
			t.Fatal(err)
		}
		needed = append(needed, rel)
	}
	if len(needed) < 10 {
		t.Fatalf("go list found only %v", needed)
	}
	for _, rel := range needed {
		if ignored(rel) {
			t.Errorf(".dockerignore excludes %s, which the build needs", rel)
		}
	}
	for _, rel := range []string{".git/config", "cmd/eddy/e2e_test.go", "docs/deploy.md", "deploy/kubernetes/base/statefulset.yaml"} {
		if !ignored(rel) {
			t.Errorf(".dockerignore lets %s into the build context", rel)
		}
	}
}
