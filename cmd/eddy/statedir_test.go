package main

// A state directory (and the demo's data directory) belongs to one process:
// a second eddy on it exits non-zero with a message naming the directory
// and the holder, and the first goes on, its results right.

import (
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/eddy-streams/eddy/internal/kafkatest"
)

func TestKafkaStateDirOneOwner(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Real(t)
	e := newE2E(t, brokers, "at_least_once")
	produceSync(t, brokers, append(e.sc.records(e.in), e.sc.badRecords(e.in)...))
	stateDir := t.TempDir()
	w1 := startWorker(t, e.spec, e.brokerList(), stateDir)
	// The lock is taken before the topics are checked.
	waitFor(t, 60*time.Second, "first worker checked its topics", func() (bool, string) {
		return strings.Contains(w1.logs(), "topics ready"), w1.logs()
	})

	r := runEddy(t, 60*time.Second, "run", "-f", e.spec, "--brokers", e.brokerList(), "--state-dir", stateDir,
		"--http-addr", "127.0.0.1:0", "--log-level", "info")
	dir := filepath.Join(stateDir, e.app)
	if r.code == 0 {
		t.Fatalf("second eddy run on %s exited 0; want non-zero\nstderr:\n%s", stateDir, r.stderr)
	}
	for _, want := range []string{"state directory is in use by another process", dir,
		"pid " + strconv.Itoa(w1.cmd.Process.Pid)} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("second eddy run's stderr lacks %q:\n%s", want, r.stderr)
		}
	}
	if !strings.Contains(r.stderr, `level=ERROR msg=exiting reason="state directory is in use`) {
		t.Errorf("second eddy run does not log why it exits:\n%s", r.stderr)
	}
	if strings.Contains(r.stderr, "corrupt") || strings.Contains(r.stderr, "rebuilding") {
		t.Errorf("second eddy run took the lock for damage:\n%s", r.stderr)
	}
	if strings.Contains(w1.logs(), "damaged") {
		t.Errorf("first worker saw damage:\n%s", w1.logs())
	}

	// The first worker goes on, and its results are right.
	got, late := e.finalResults(t, w1)
	e.sc.verify(t, got, late)
	checkDeadLetters(t, brokers, e)
	t.Logf("first worker: %d final windows; its log:\n%s", len(got), w1.logs())
	if err := w1.stop(syscall.SIGTERM); err != nil {
		t.Errorf("first eddy exited with %v after SIGTERM", err)
	}
}

// syncBuffer is a bytes.Buffer safe for a process writing and a test
// reading.
func TestDemoDataDirOneOwner(t *testing.T) {
	t.Parallel()
	dataDir := t.TempDir()
	cmd := exec.Command(eddyBin, "demo", "--duration", "40s", "--json", "--data-dir", dataDir)
	var out, errb syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	exited := make(chan struct{})
	go func() { done <- cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	// The demo locks its data directory before it starts the embedded Kafka.
	waitFor(t, 30*time.Second, "first demo started its embedded Kafka", func() (bool, string) {
		return strings.Contains(errb.String(), "embedded Kafka at"), errb.String()
	})

	r := runEddy(t, 60*time.Second, "demo", "--duration", "10s", "--json", "--data-dir", dataDir)
	linesAtRefusal := strings.Count(out.String(), "\n")
	if r.code == 0 {
		t.Fatalf("second demo on %s exited 0; want non-zero\nstderr:\n%s", dataDir, r.stderr)
	}
	for _, want := range []string{"state directory is in use by another process", dataDir,
		"pid " + strconv.Itoa(cmd.Process.Pid), "--data-dir"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("second demo's stderr lacks %q:\n%s", want, r.stderr)
		}
	}
	if r.stdout != "" || strings.Contains(r.stderr, "embedded Kafka at") {
		t.Errorf("second demo started anyway:\nstdout:\n%s\nstderr:\n%s", r.stdout, r.stderr)
	}

	// The first demo keeps printing results, to its end.
	var err error
	select {
	case err = <-done:
	case <-time.After(120 * time.Second):
		t.Fatalf("first demo still running 120s after a 40s --duration\nstderr:\n%s", errb.String())
	}
	if err != nil {
		t.Fatalf("first demo: %v\nstderr:\n%s", err, errb.String())
	}
	res := parseDemoJSON(t, "first demo", eddyRun{stdout: out.String()})
	after := len(strings.Split(strings.TrimSpace(out.String()), "\n")) - linesAtRefusal
	t.Logf("first demo: %d results, %d lines after the second was refused", len(res), after)
	if after <= 0 {
		t.Errorf("first demo printed nothing after the second was refused\nstderr:\n%s", errb.String())
	}
	if strings.Contains(errb.String(), "lost records") || strings.Contains(errb.String(), "damaged") {
		t.Errorf("first demo's stderr shows damage:\n%s", errb.String())
	}
}
