package main

import (
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/eddy-streams/eddy/internal/kafkatest"
)

// TestKafkaBrokerAuth: a private Apache Kafka with a SASL_SSL
// (SCRAM-SHA-512) listener and an mTLS listener, certificates made by the
// test. eddy runs an exactly-once pipeline on each, results checked
// against the scenario's own computation; a wrong password, an untrusted
// broker certificate, a missing client certificate and a client
// certificate from another CA each stop eddy within seconds with a
// message naming the cause, and write nothing. No credential reaches the
// output.
func TestKafkaBrokerAuth(t *testing.T) {
	ca := newTestCA(t, "kafka")
	b := kafkatest.PrivateTLS(t, kafkaTLSDir(t, ca))
	if b.SASLSSL == "" || b.MTLS == "" {
		t.Fatalf("the private broker has no secured listeners: %+v", b)
	}
	const user, pass = "eddy-scram", "scram-pass-6a0d1c"
	adm := kadm.NewClient(kafkatest.Client(t, b.Addrs))
	// A broker just started may not take SCRAM changes yet: retried
	// until it does, reporting the last error.
	waitFor(t, 30*time.Second, "create the SCRAM user", func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		res, err := adm.AlterUserSCRAMs(ctx, nil, []kadm.UpsertSCRAM{{User: user, Mechanism: kadm.ScramSha512, Iterations: 4096, Password: pass}})
		if err == nil {
			res.EachError(func(a kadm.AlteredUserSCRAM) { err = a.Err })
		}
		if err != nil {
			return false, err.Error()
		}
		return true, ""
	})
	dir := t.TempDir()
	userFile, passFile := writeSecret(t, dir, "user", user), writeSecret(t, dir, "pass", pass)
	badPass := writeSecret(t, dir, "bad-pass", "wrong-pass-77e2")
	clientCert, clientKey := ca.issue(t, "eddy-client", true)
	other := newTestCA(t, "other")
	otherCert, otherKey := other.issue(t, "eddy-stranger", true)
	var outputs []string

	// OAUTHBEARER: unsecured JWTs, which the test broker's validator
	// accepts when sub, iat and exp are right.
	now := time.Now().Unix()
	goodJWT := writeSecret(t, dir, "jwt", unsecuredJWT("eddy", now, now+3600))
	expiredJWT := writeSecret(t, dir, "expired-jwt", unsecuredJWT("eddy", now-7200, now-3600))
	oauth := func(f string) []string {
		return []string{"EDDY_SASL_MECHANISM=OAUTHBEARER", "EDDY_SASL_TOKEN_FILE=" + f, "EDDY_TLS_CA_FILE=" + ca.CAFile}
	}
	sasl := []string{"EDDY_SASL_MECHANISM=SCRAM-SHA-512", "EDDY_SASL_USERNAME_FILE=" + userFile, "EDDY_TLS_CA_FILE=" + ca.CAFile}
	for _, c := range []struct {
		name, addr string
		env        []string
	}{
		{"sasl_ssl", b.SASLSSL, append(append([]string(nil), sasl...), "EDDY_SASL_PASSWORD_FILE="+passFile)},
		{"mtls", b.MTLS, []string{"EDDY_TLS_CA_FILE=" + ca.CAFile, "EDDY_TLS_CERT_FILE=" + clientCert, "EDDY_TLS_KEY_FILE=" + clientKey}},
		{"oauthbearer", b.SASLSSL, oauth(goodJWT)},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newE2E(t, b.Addrs, "exactly_once") // topics and checks over PLAINTEXT
			produceSync(t, b.Addrs, append(e.sc.records(e.in), e.sc.badRecords(e.in)...))
			w := startWorker(t, e.spec, c.addr, t.TempDir(), c.env...)
			got, late := e.finalResults(t, w)
			e.sc.verify(t, got, late)
			outputs = append(outputs, w.logs(), scrapeText(t, "http://"+w.metricsAddr(t)+"/metrics"))
		})
	}

	for _, c := range []struct {
		name, addr string
		env        []string
		want       string
	}{
		{"wrong password", b.SASLSSL, append(append([]string(nil), sasl...), "EDDY_SASL_PASSWORD_FILE="+badPass), "SASL"},
		{"expired OAuth token", b.SASLSSL, oauth(expiredJWT), "--sasl-token-file"},
		{"untrusted broker certificate", b.SASLSSL, []string{"EDDY_SASL_MECHANISM=SCRAM-SHA-512", "EDDY_SASL_USERNAME_FILE=" + userFile, "EDDY_SASL_PASSWORD_FILE=" + passFile, "EDDY_TLS=true"}, "--tls-ca-file"},
		{"missing client certificate", b.MTLS, []string{"EDDY_TLS_CA_FILE=" + ca.CAFile}, "--tls-cert-file"},
		{"client certificate of another CA", b.MTLS, []string{"EDDY_TLS_CA_FILE=" + ca.CAFile, "EDDY_TLS_CERT_FILE=" + otherCert, "EDDY_TLS_KEY_FILE=" + otherKey}, "--tls-cert-file"},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newE2E(t, b.Addrs, "exactly_once")
			produceSync(t, b.Addrs, e.sc.records(e.in))
			start := time.Now()
			r := startEddy(t, c.env, "run", "-f", e.spec, "--brokers", c.addr, "--state-dir", t.TempDir(), "--http-addr", "127.0.0.1:0")
			var exit error
			select {
			case exit = <-r.done:
				r.exited = true
			case <-time.After(45 * time.Second):
				t.Fatalf("eddy still runs %s after starting with a %s (a retry loop?); log:\n%s", time.Since(start), c.name, r.logs())
			}
			took := time.Since(start)
			logs := r.logs()
			outputs = append(outputs, logs)
			t.Logf("%s: exit %v after %s: %s", c.name, exit, took.Round(time.Millisecond), lastLine(logs))
			if exit == nil || !strings.Contains(logs, c.want) {
				t.Errorf("%s: exit %v; want a failure naming %s; log:\n%s", c.name, exit, c.want, logs)
			}
			// Nothing written: no topic of the app, no output topic, no
			// committed offsets of its group.
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			topics, err := adm.ListTopics(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, name := range topics.Names() {
				if strings.HasPrefix(name, e.app) || name == e.out {
					t.Errorf("%s: eddy created topic %s", c.name, name)
				}
			}
			if offs, err := adm.FetchOffsets(ctx, e.app); err == nil && len(offs) > 0 {
				t.Errorf("%s: the group %s has committed offsets %v", c.name, e.app, offs)
			}
		})
	}
	jwt, _ := os.ReadFile(goodJWT)
	checkNoSecrets(t, outputs, []string{pass, "wrong-pass-77e2", strings.TrimSpace(string(jwt))})
}

// unsecuredJWT is an unsigned JWT (alg none) for Kafka's unsecured
// OAUTHBEARER validator.
func unsecuredJWT(sub string, iat, exp int64) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"none"}`)) + "." + enc([]byte(fmt.Sprintf(`{"sub":%q,"iat":%d,"exp":%d}`, sub, iat, exp))) + "."
}
