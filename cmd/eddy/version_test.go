package main

import (
	"bytes"
	"os"
	"regexp"
	"runtime"
	"strings"
	"testing"
)

// TestVersion: `eddy version` and `eddy --version` print the same text:
// eddy's version and commit, the Go version it was built with, and the
// versions of its main libraries, which must be the ones go.mod requires.
func TestVersion(t *testing.T) {
	run := func(args ...string) string {
		root := rootCmd()
		var out bytes.Buffer
		root.SetOut(&out)
		root.SetArgs(args)
		if err := root.Execute(); err != nil {
			t.Fatalf("eddy %s: %v", strings.Join(args, " "), err)
		}
		return out.String()
	}
	got := run("version")
	if flag := run("--version"); flag != got {
		t.Errorf("eddy --version:\n%s\ndiffers from eddy version:\n%s", flag, got)
	}
	lines := strings.Split(got, "\n")
	if !strings.HasPrefix(lines[0], "eddy ") || len(lines[0]) <= len("eddy ") {
		t.Errorf("first line %q does not name eddy's version", lines[0])
	}
	if !strings.HasPrefix(lines[1], "commit  ") {
		t.Errorf("second line %q does not name the commit", lines[1])
	}
	if !strings.Contains(got, runtime.Version()) {
		t.Errorf("output lacks the Go version %s:\n%s", runtime.Version(), got)
	}
	gomod, err := os.ReadFile("../../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	for _, lib := range mainLibraries {
		var want string
		for _, l := range strings.Split(string(gomod), "\n") {
			if f := strings.Fields(l); len(f) >= 2 && f[0] == lib {
				want = f[1]
			}
		}
		if want == "" {
			t.Fatalf("go.mod does not require %s", lib)
		}
		if !strings.Contains(got, lib+" "+want+"\n") {
			t.Errorf("output lacks %s %s (go.mod's version):\n%s", lib, want, got)
		}
	}
}

// TestVersionLinkerOverride: a build without module or VCS information
// (a Docker build) can set version and commit at link time.
func TestVersionLinkerOverride(t *testing.T) {
	defer func(v, c string) { version, commit = v, c }(version, commit)
	version, commit = "v9.8.7", "abc123"
	v := buildVersion()
	if v.Version != "v9.8.7" || v.Commit != "abc123" {
		t.Errorf("buildVersion() = %q, %q; want the link-time values v9.8.7, abc123", v.Version, v.Commit)
	}
}

// TestRegistryURLOneName: every subcommand that talks to a schema registry
// calls the setting --registry-url; --registry, the older name of eddy
// schema and eddy produce, still parses into the same flag but is not in
// any help text.
func TestRegistryURLOneName(t *testing.T) {
	for _, path := range [][]string{{"run"}, {"produce"}, {"schema", "list"}, {"schema", "register"}, {"schema", "get"}, {"schema", "check"}} {
		for _, name := range []string{"registry-url", "registry"} {
			root := rootCmd()
			c, _, err := root.Find(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := c.ParseFlags([]string{"--" + name, "http://r.example:8081"}); err != nil {
				t.Errorf("eddy %s --%s: %v", strings.Join(path, " "), name, err)
				continue
			}
			if got := flagString(c, "registry-url"); got != "http://r.example:8081" {
				t.Errorf("eddy %s --%s: --registry-url is %q", strings.Join(path, " "), name, got)
			}
			if name == "registry" && regexp.MustCompile(`(?m)^\s+--registry\s`).MatchString(c.UsageString()) {
				t.Errorf("eddy %s --help shows --registry:\n%s", strings.Join(path, " "), c.UsageString())
			}
		}
	}
}
