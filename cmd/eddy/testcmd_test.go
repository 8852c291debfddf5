package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/eddy-streams/eddy/internal/kafkatest"
)

const (
	examplePipeline = "../../deploy/pipelines/http-requests.yaml"
	exampleCases    = "../../deploy/pipelines/cases"
)

// TestTestCommandExampleCases: `eddy test` passes the example pipeline's
// cases in process, and exits 0.
func TestTestCommandExampleCases(t *testing.T) {
	t.Parallel()
	out, err := exec.Command(eddyBin, "test", "-f", examplePipeline, exampleCases).CombinedOutput()
	if err != nil {
		t.Fatalf("eddy test: %v\n%s", err, out)
	}
	entries, _ := filepath.Glob(filepath.Join(exampleCases, "*.yaml"))
	for _, e := range entries {
		name := strings.TrimSuffix(filepath.Base(e), ".yaml")
		if !strings.Contains(string(out), "ok   "+name+" (") {
			t.Errorf("no ok line for %s:\n%s", name, out)
		}
	}
	if !strings.Contains(string(out), " passed, 0 failed (in process)") {
		t.Errorf("no summary line:\n%s", out)
	}
}

// TestTestCommandFails: a case with a wrong expectation makes `eddy test`
// exit non-zero with the window and field in its output; --update then
// writes the current outputs and the case passes.
func TestTestCommandFails(t *testing.T) {
	t.Parallel()
	src, err := os.ReadFile(filepath.Join(exampleCases, "results.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	wrong := strings.Replace(string(src), "values: {requests: 3,", "values: {requests: 4,", 1)
	if wrong == string(src) {
		t.Fatal("results.yaml no longer expects 3 requests for checkout /pay; adapt the test")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "wrong.yaml")
	if err := os.WriteFile(path, []byte(wrong), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(eddyBin, "test", "-f", examplePipeline, dir)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() == 0 {
		t.Fatalf("eddy test with a wrong expectation: err %v, want a non-zero exit\n%s", err, out)
	}
	for _, want := range []string{
		"FAIL wrong (" + path,
		"result of by_endpoint {endpoint=/pay service=checkout} window [+0s, +10s): field requests: expected 4 (±1%), got 3",
		"0 passed, 1 failed (in process)",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}

	out, err = exec.Command(eddyBin, "test", "-f", examplePipeline, "--update", path).CombinedOutput()
	if err != nil {
		t.Fatalf("eddy test --update: %v\n%s", err, out)
	}
	updated, _ := os.ReadFile(path)
	if !bytes.Contains(updated, []byte("requests: 3")) || !bytes.Contains(updated, []byte("# Filtered: endpoint")) {
		t.Errorf("the updated case lacks the current count or the steps' comments:\n%s", updated)
	}
	if out, err := exec.Command(eddyBin, "test", "-f", examplePipeline, path).CombinedOutput(); err != nil {
		t.Errorf("the updated case fails: %v\n%s", err, out)
	}
}

// TestKafkaTestCommand: `eddy test --brokers` runs the example cases on
// the real broker, the pipeline as a group member, and they pass there too.
func TestKafkaTestCommand(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Real(t)
	began := time.Now()
	out, err := exec.Command(eddyBin, "test", "-f", examplePipeline, "--brokers", strings.Join(brokers, ","), exampleCases).CombinedOutput()
	if err != nil {
		t.Fatalf("eddy test --brokers: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), " passed, 0 failed (on "+brokers[0]+")") {
		t.Errorf("no summary line:\n%s", out)
	}
	t.Logf("%s\n%s", time.Since(began), out)
}
