package kafkatest

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Broker is a real Apache Kafka broker of one test's own, started with
// scripts/kafka.sh, that the test may pause, resume or stop (the shared
// broker of EDDY_TEST_BROKERS must never be).
type Broker struct {
	// Addrs are the bootstrap addresses.
	Addrs []string
	t     testing.TB
	sh    string
	env   []string
	pid   int
	log   string
	dir   string // its EDDY_KAFKA_STATE
	done  bool

	// SASLSSL and MTLS are the secured listeners' addresses of a broker
	// from PrivateTLS: SASL_SSL with SCRAM-SHA-512 (and OAUTHBEARER), and
	// SSL requiring a client certificate.
	SASLSSL, MTLS string
}

// Private starts a broker for the test under its own EDDY_KAFKA_STATE in a
// temporary directory and stops it (removing its data) when the test ends.
// It needs java and the Kafka jars (scripts/test.sh provides both; the
// first start fetches the jars with Maven); start-up takes about 6 s and
// up to 512 MB of heap, so use it only where a test must stop or pause a
// broker. Like Real, it skips under -short and fails otherwise.
func Private(t testing.TB, extraProps ...string) *Broker {
	t.Helper()
	return private(t, nil, extraProps)
}

// PrivateTLS is Private with two more listeners (scripts/kafka.sh
// EDDY_KAFKA_TLS_DIR): tlsDir holds server.pem (the broker's PKCS#8 key
// and certificate, valid for 127.0.0.1) and ca.pem (the CA it trusts for
// client certificates). SCRAM users are the test's to create, over the
// PLAINTEXT listener (Addrs).
func PrivateTLS(t testing.TB, tlsDir string, extraProps ...string) *Broker {
	t.Helper()
	return private(t, []string{"EDDY_KAFKA_TLS_DIR=" + tlsDir}, extraProps)
}

func private(t testing.TB, env, extraProps []string) *Broker {
	t.Helper()
	if testing.Short() {
		t.Skip("private real-Kafka broker: skipped under -short (run scripts/test.sh for the full suite)")
	}
	sh, err := kafkaScript()
	if err != nil {
		t.Fatalf("private broker: %v", err)
	}
	stateDir := t.TempDir()
	b := &Broker{t: t, sh: sh, dir: stateDir, env: append(os.Environ(),
		"EDDY_KAFKA_STATE="+stateDir, "EDDY_KAFKA_PORT=", "EDDY_KAFKA_CONTROLLER_PORT=",
		"EDDY_KAFKA_PROPS="+strings.Join(extraProps, " "))}
	b.env = append(append(b.env, "EDDY_KAFKA_TLS_DIR="), env...)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, sh, "start")
	cmd.Env = b.env
	out, err := cmd.Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("private broker: %s start: %v\n%s", sh, err, stderr)
	}
	t.Cleanup(b.Stop)
	// start prints the bootstrap address on its last line; the pid is in
	// the state file.
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	b.Addrs = strings.Split(strings.TrimSpace(lines[len(lines)-1]), ",")
	st, err := readState(filepath.Join(stateDir, "state.env"))
	if err != nil {
		t.Fatalf("private broker: %v", err)
	}
	if b.pid, err = strconv.Atoi(st["KAFKA_PID"]); err != nil || b.pid <= 0 {
		t.Fatalf("private broker: no pid in its state (%v)", st)
	}
	b.log = st["KAFKA_LOG"]
	b.SASLSSL, b.MTLS = st["KAFKA_SASL_SSL_BOOTSTRAP"], st["KAFKA_MTLS_BOOTSTRAP"]
	return b
}

// Pause stops the broker process (SIGSTOP): connections stay open, nothing
// is answered, as with a broker stuck in a long GC or a frozen VM.
func (b *Broker) Pause() { b.signal(syscall.SIGSTOP) }

// Resume continues a paused broker (SIGCONT).
func (b *Broker) Resume() { b.signal(syscall.SIGCONT) }

func (b *Broker) signal(sig syscall.Signal) {
	b.t.Helper()
	if err := syscall.Kill(b.pid, sig); err != nil {
		b.t.Fatalf("private broker: signal %v to pid %d: %v", sig, b.pid, err)
	}
}

// Stop stops the broker and removes its data (idempotent). A paused broker
// is resumed first so that it can shut down.
func (b *Broker) Stop() {
	if b.done {
		return
	}
	b.done = true
	_ = syscall.Kill(b.pid, syscall.SIGCONT)
	cmd := exec.Command(b.sh, "stop")
	cmd.Env = b.env
	if out, err := cmd.CombinedOutput(); err != nil {
		b.t.Errorf("private broker: stop: %v\n%s", err, out)
	}
}

// Kill ends the broker with SIGKILL, keeping its data (kafka.sh kill): a
// crash.
func (b *Broker) Kill() { b.script("kill") }

// Restart starts a killed (or running) broker again on the same data
// directory and ports (kafka.sh restart).
func (b *Broker) Restart() {
	b.t.Helper()
	b.script("restart")
	st, err := readState(filepath.Join(b.dir, "state.env"))
	if err != nil {
		b.t.Fatalf("private broker: %v", err)
	}
	if b.pid, err = strconv.Atoi(st["KAFKA_PID"]); err != nil || b.pid <= 0 {
		b.t.Fatalf("private broker: no pid in its state after restart (%v)", st)
	}
}

func (b *Broker) script(what string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, b.sh, what)
	cmd.Env = b.env
	if out, err := cmd.CombinedOutput(); err != nil {
		b.t.Fatalf("private broker: kafka.sh %s: %v\n%s", what, err, out)
	}
}

// Log returns the broker's log file path.
func (b *Broker) Log() string { return b.log }

// kafkaScript finds scripts/kafka.sh from the working directory up (tests
// run in their package's directory).
func kafkaScript() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		p := filepath.Join(dir, "scripts", "kafka.sh")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", os.ErrNotExist
		}
		dir = parent
	}
}

// readState parses kafka.sh's state file (KEY='value' lines).
func readState(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	m := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if ok {
			m[k] = strings.Trim(v, "'")
		}
	}
	return m, sc.Err()
}
