package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/eddy-streams/eddy/internal/kafkatest"
	"github.com/eddy-streams/eddy/schema"
)

// securedRegistry is `eddy registry` with TLS, users and a token, and
// the credential files its clients are given.
type securedRegistry struct {
	proc                 *worker
	url                  string
	ca                   *testCA
	writerUser, writerPW string // files
	readerUser, readerPW string
	badPW                string // the writer's name with a wrong password
	tokenFile            string
	secrets              []string // every credential value, for the log greps
}

func startSecuredRegistry(t *testing.T, brokers []string) *securedRegistry {
	t.Helper()
	dir := t.TempDir()
	r := &securedRegistry{ca: newTestCA(t, "registry")}
	cert, key := r.ca.issue(t, "eddy-registry", false)
	const writerPass, readerPass, token = "w-pass-91c2e", "r-pass-5d7a0", "reg-token-0b4e2f"
	hash := func(p string) string {
		h, err := bcrypt.GenerateFromPassword([]byte(p), bcrypt.DefaultCost)
		if err != nil {
			t.Fatal(err)
		}
		return string(h)
	}
	users := "# eddy registry users\nwriter:" + hash(writerPass) + ":write\nreader:" + hash(readerPass) + "\n"
	usersFile := writeSecret(t, dir, "users", users)
	r.writerUser, r.writerPW = writeSecret(t, dir, "writer-user", "writer"), writeSecret(t, dir, "writer-pw", writerPass)
	r.readerUser, r.readerPW = writeSecret(t, dir, "reader-user", "reader"), writeSecret(t, dir, "reader-pw", readerPass)
	r.badPW = writeSecret(t, dir, "bad-pw", "not-the-password-3f1")
	r.tokenFile = writeSecret(t, dir, "token", token)
	r.secrets = []string{writerPass, readerPass, token, "not-the-password-3f1", "url-pass-3c9d"}
	r.proc = startEddy(t, nil, "registry", "--brokers", strings.Join(brokers, ","), "--topic", kafkatest.Name(t, "schemas"),
		"--http-addr", "127.0.0.1:0", "--http-tls-cert-file", cert, "--http-tls-key-file", key,
		"--registry-users-file", usersFile, "--http-token-file", r.tokenFile, "--log-level", "debug")
	r.url = "https://" + r.proc.listenAddr(t, "serving schema registry")
	return r
}

// writer returns the flags of the writer's credentials.
func (r *securedRegistry) flags(user, pw string) []string {
	return []string{"--registry-url", r.url, "--registry-ca-file", r.ca.CAFile,
		"--registry-username-file", user, "--registry-password-file", pw}
}

// eddyIn runs eddy with stdin.
func eddyIn(t *testing.T, stdin string, args ...string) eddyRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, eddyBin, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := eddyRun{stdout: out.String(), stderr: errb.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("eddy %v: %v", args, err)
	}
	return r
}

// TestKafkaRegistryAuth: eddy's registry with TLS, users and a token, on
// the shared broker. The CLI and an exactly-once Avro pipeline work with
// the right credentials; without them, with a wrong password, without
// the CA, and as a read-only user writing, each fails with a message
// that says so; no credential reaches any output.
func TestKafkaRegistryAuth(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Real(t)
	reg := startSecuredRegistry(t, brokers)
	var outputs []string // everything eddy printed, for the secret grep
	keep := func(r eddyRun) eddyRun { outputs = append(outputs, r.stdout, r.stderr); return r }

	e := newE2E(t, brokers, "exactly_once")
	a := newAvroE2EAt(t, e, reg.url, "avro")
	avsc := filepath.Join(t.TempDir(), "request.avsc")
	if err := os.WriteFile(avsc, []byte(requestSchema), 0o644); err != nil {
		t.Fatal(err)
	}
	register := func(cred []string, subject string) eddyRun {
		return keep(runEddy(t, 60*time.Second, append(append([]string{"schema", "register"}, cred...), "--subject", subject, "--file", avsc)...))
	}

	// Refusals first: nothing is registered by them.
	for _, c := range []struct {
		name string
		cred []string
		want []string
	}{
		{"no credentials", []string{"--registry-url", reg.url, "--registry-ca-file", reg.ca.CAFile}, []string{"registry_unauthorized", "HTTP 401", "--registry-username-file"}},
		{"wrong password", reg.flags(reg.writerUser, reg.badPW), []string{"registry_unauthorized", "HTTP 401"}},
		{"read-only user", reg.flags(reg.readerUser, reg.readerPW), []string{"registry_unauthorized", "HTTP 403", "read-only"}},
		{"untrusted certificate", []string{"--registry-url", reg.url, "--registry-username-file", reg.writerUser, "--registry-password-file", reg.writerPW}, []string{"registry_unauthorized", "--registry-ca-file", "certificate signed by unknown authority"}},
	} {
		r := register(c.cred, a.subject)
		t.Logf("schema register with %s: %s", c.name, strings.TrimSpace(r.stderr))
		for _, w := range c.want {
			if r.code == 0 || !strings.Contains(r.stderr, w) {
				t.Errorf("schema register with %s: exit %d, stderr %q; want a failure saying %q", c.name, r.code, r.stderr, w)
			}
		}
	}
	if r := keep(runEddy(t, 60*time.Second, append([]string{"schema", "list"}, reg.flags(reg.readerUser, reg.readerPW)...)...)); r.code != 0 || !strings.Contains(r.stdout, "no subjects") {
		t.Fatalf("schema list as the reader after the refusals: exit %d, %q %q; want no subjects", r.code, r.stdout, r.stderr)
	}

	// The writer registers; the reader reads it; the token may write.
	if r := register(reg.flags(reg.writerUser, reg.writerPW), a.subject); r.code != 0 || !strings.Contains(r.stdout, "registered under "+a.subject) {
		t.Fatalf("schema register as the writer: exit %d, %q %q", r.code, r.stdout, r.stderr)
	}
	if r := keep(runEddy(t, 60*time.Second, append([]string{"schema", "get", "--subject", a.subject}, reg.flags(reg.readerUser, reg.readerPW)...)...)); r.code != 0 || !strings.Contains(r.stdout, "request_id") {
		t.Errorf("schema get as the reader: exit %d, %q %q", r.code, r.stdout, r.stderr)
	}
	if r := register([]string{"--registry-url", reg.url, "--registry-ca-file", reg.ca.CAFile, "--registry-token-file", reg.tokenFile}, a.subject+"-bytoken"); r.code != 0 {
		t.Errorf("schema register with the bearer token: exit %d, %q", r.code, r.stderr)
	}
	// Credentials in the URL are basic auth, and no message quotes them.
	withUser := func(pw string) string { return strings.Replace(reg.url, "https://", "https://writer:"+pw+"@", 1) }
	if r := keep(runEddy(t, 60*time.Second, "schema", "list", "--registry-url", withUser("w-pass-91c2e"), "--registry-ca-file", reg.ca.CAFile)); r.code != 0 || !strings.Contains(r.stdout, a.subject) {
		t.Errorf("schema list with the user in the URL: exit %d, %q %q", r.code, r.stdout, r.stderr)
	}
	if r := keep(runEddy(t, 60*time.Second, "schema", "list", "--registry-url", withUser("url-pass-3c9d"), "--registry-ca-file", reg.ca.CAFile)); r.code == 0 || !strings.Contains(r.stderr, "HTTP 401") {
		t.Errorf("schema list with a wrong password in the URL: exit %d, %q", r.code, r.stderr)
	}

	// eddy produce: refused without credentials (nothing written), then
	// three records with the writer's.
	ptopic := kafkatest.Name(t, "produced")
	kafkatest.CreateTopic(t, brokers, ptopic, 1)
	line := `{"request_id":"p1","ts":"2026-01-01T00:00:00Z","service":"s","endpoint":"/e","status":200,"latency_ms":5}` + "\n"
	if r := keep(eddyIn(t, line, "produce", "--topic", ptopic, "--subject", a.subject, "--brokers", strings.Join(brokers, ","),
		"--registry-url", reg.url, "--registry-ca-file", reg.ca.CAFile)); r.code == 0 || !strings.Contains(r.stderr, "HTTP 401") {
		t.Errorf("produce without credentials: exit %d, %q; want HTTP 401", r.code, r.stderr)
	}
	if r := keep(eddyIn(t, strings.Repeat(line, 3), append([]string{"produce", "--topic", ptopic, "--subject", a.subject,
		"--brokers", strings.Join(brokers, ",")}, reg.flags(reg.writerUser, reg.writerPW)...)...)); r.code != 0 {
		t.Fatalf("produce as the writer: exit %d, %q", r.code, r.stderr)
	}
	if n := len(kafkatest.ReadAll(t, brokers, ptopic, true)); n != 3 {
		t.Errorf("%s holds %d records, want the writer's 3 (none from the refused run)", ptopic, n)
	}

	// eddy run as the reader cannot register its output schema: it stops
	// at start saying why, instead of waiting.
	rr := keep(runEddy(t, 90*time.Second, append([]string{"run", "-f", a.spec(), "--brokers", e.brokerList(), "--state-dir", t.TempDir(),
		"--http-addr", "127.0.0.1:0"}, reg.flags(reg.readerUser, reg.readerPW)...)...))
	t.Logf("eddy run as the reader: %s", lastLine(rr.stderr))
	if rr.code == 0 || !strings.Contains(rr.stderr, "HTTP 403") {
		t.Errorf("eddy run as the reader: exit %d, stderr:\n%s\nwant a stop on HTTP 403", rr.code, rr.stderr)
	}

	// eddy run as the writer: the exactly-once Avro pipeline, results
	// checked against the scenario's own computation.
	a.regOpts = []schema.ClientOption{
		schema.ClientTransport(&http.Transport{TLSClientConfig: reg.ca.tlsClient()}),
		schema.ClientBasicAuth("writer", "w-pass-91c2e"),
	}
	a.enc = a.encoder(t, a.subject, requestSchema)
	produceSync(t, brokers, a.records(t, a.enc, func(int, tevent) bool { return true }))
	w := startWorker(t, a.spec(), e.brokerList(), t.TempDir(), "EDDY_REGISTRY_URL="+reg.url, "EDDY_REGISTRY_CA_FILE="+reg.ca.CAFile,
		"EDDY_REGISTRY_USERNAME_FILE="+reg.writerUser, "EDDY_REGISTRY_PASSWORD_FILE="+reg.writerPW, "EDDY_LOG_LEVEL=debug")
	late := a.settle(t, w)
	a.sc.verify(t, a.results(t), late)
	outputs = append(outputs, scrapeText(t, "http://"+w.metricsAddr(t)+"/metrics"))
	// eddy settings with every credential setting given: it prints the
	// table of defaults and documentation, nothing from the files.
	outputs = append(outputs, settingsWithEnv(t, "EDDY_REGISTRY_USERNAME_FILE="+reg.writerUser, "EDDY_REGISTRY_PASSWORD_FILE="+reg.writerPW,
		"EDDY_REGISTRY_TOKEN_FILE="+reg.tokenFile, "EDDY_HTTP_TOKEN_FILE="+reg.tokenFile, "EDDY_SASL_PASSWORD_FILE="+reg.writerPW))
	if err := w.stop(syscall.SIGTERM); err != nil {
		t.Errorf("eddy run exited with %v", err)
	}
	outputs = append(outputs, w.logs(), reg.proc.logs())
	checkNoSecrets(t, outputs, reg.secrets)
}

// checkNoSecrets fails if any secret appears in any output.
func checkNoSecrets(t *testing.T, outputs, secrets []string) {
	t.Helper()
	for _, s := range secrets {
		for i, o := range outputs {
			if strings.Contains(o, s) {
				t.Errorf("output %d contains the credential %q:\n%s", i, s, o)
			}
		}
	}
}

// TestHTTPAuthRegistryRoutes walks every route of eddy's registry
// (schema/server.go, found like TestHTTPAuthEveryRoute's) bound beyond
// loopback with a token: each needs it.
func TestHTTPAuthRegistryRoutes(t *testing.T) {
	brokers := kafkatest.Kfake(t)
	const tok = "registry-route-token-9e1"
	tokFile := writeSecret(t, t.TempDir(), "token", tok)
	p := startEddy(t, nil, "registry", "--brokers", strings.Join(brokers, ","), "--http-addr", "0.0.0.0:0", "--http-token-file", tokFile)
	base := loopbackURL(t, "http", p.listenAddr(t, "serving schema registry"))
	var routes []route
	for _, r := range registeredRoutes(t) {
		if r.file == "schema/server.go" {
			routes = append(routes, r)
		}
	}
	if len(routes) < 10 {
		t.Fatalf("found %d registry routes: discovery is broken", len(routes))
	}
	c := &http.Client{Timeout: 10 * time.Second}
	defer c.CloseIdleConnections()
	walkRoutes(t, c, base, tok, routes, nil)
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	return s[strings.LastIndex(s, "\n")+1:]
}

// scrapeText returns the body of a GET of url (a worker's /metrics).
func scrapeText(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v", url, resp.StatusCode, err)
	}
	if !strings.Contains(string(b), "eddy_records_in_total") {
		t.Fatalf("GET %s: no eddy metrics in:\n%s", url, b)
	}
	return string(b)
}

// settingsWithEnv runs `eddy settings` with env and returns its output.
func settingsWithEnv(t *testing.T, env ...string) string {
	t.Helper()
	cmd := exec.Command(eddyBin, "settings")
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("eddy settings: %v\n%s", err, out)
	}
	return string(out)
}
