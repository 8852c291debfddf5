package main

// Tests of the schema commands (eddy schema, eddy registry, eddy produce)
// against `eddy registry` run as a subprocess on kfake.

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/eddy-streams/eddy/internal/kafkatest"
	"github.com/eddy-streams/eddy/schema"
)

// startRegistryProcess runs `eddy registry` with any extra args and
// returns its URL.
func startRegistryProcess(t *testing.T, brokers []string, args ...string) string {
	t.Helper()
	cmd := exec.Command(eddyBin, append([]string{"registry", "--brokers", strings.Join(brokers, ","), "--http-addr", "127.0.0.1:0"}, args...)...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	addr := make(chan string, 1)
	var log bytes.Buffer
	go func() {
		defer close(done)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			l := sc.Text()
			log.WriteString(l + "\n")
			if i := strings.Index(l, `msg="serving schema registry" addr=`); i >= 0 {
				addr <- strings.Fields(l[i+len(`msg="serving schema registry" addr=`):])[0]
			}
		}
		_ = cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	select {
	case a := <-addr:
		return "http://" + a
	case <-done:
		t.Fatalf("eddy registry exited:\n%s", log.String())
	case <-time.After(60 * time.Second):
		t.Fatal("eddy registry did not start within 60s")
	}
	return ""
}

type cliRun struct {
	stdout, stderr string
	err            error
}

func eddyCLI(t *testing.T, registry, stdin string, args ...string) cliRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, eddyBin, args...)
	cmd.Env = append(os.Environ(), "EDDY_REGISTRY_URL="+registry)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return cliRun{out.String(), errb.String(), err}
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestSchemaCommands(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Kfake(t)
	reg := startRegistryProcess(t, brokers)
	v1 := writeFile(t, "v1.avsc", requestSchema)
	v2 := writeFile(t, "v2.avsc", requestSchemaV2)
	bad := writeFile(t, "bad.avsc", strings.Replace(requestSchema, `{"name":"status","type":"int"}`, `{"name":"status","type":"string"}`, 1))

	must := func(r cliRun, want ...string) {
		t.Helper()
		if r.err != nil {
			t.Fatalf("exit %v\nstdout: %s\nstderr: %s", r.err, r.stdout, r.stderr)
		}
		for _, w := range want {
			if !strings.Contains(r.stdout, w) {
				t.Errorf("output lacks %q:\n%s", w, r.stdout)
			}
		}
	}
	must(eddyCLI(t, reg, "", "schema", "list"), "no subjects")
	must(eddyCLI(t, reg, "", "schema", "check", "--subject", "requests-value", "--file", v1), "compatible: requests-value has no versions yet")
	must(eddyCLI(t, reg, "", "schema", "register", "--subject", "requests-value", "--file", v1), "id 1, version 1")
	must(eddyCLI(t, reg, "", "schema", "register", "--subject", "requests-value", "--file", v1), "id 1, version 1")
	must(eddyCLI(t, reg, "", "schema", "check", "--subject", "requests-value", "--file", v2), "compatible: "+v2)

	r := eddyCLI(t, reg, "", "schema", "check", "--subject", "requests-value", "--file", bad)
	if r.err == nil || !strings.Contains(r.stdout, "NOT compatible") || !strings.Contains(r.stdout, "BACKWARD: the new schema cannot read data written with version 1") {
		t.Errorf("incompatible check: exit %v, want non-zero and the registry's reason:\n%s%s", r.err, r.stdout, r.stderr)
	}
	r = eddyCLI(t, reg, "", "schema", "register", "--subject", "requests-value", "--file", bad)
	if r.err == nil || !strings.Contains(r.stderr, "incompatible") {
		t.Errorf("incompatible register: exit %v:\n%s", r.err, r.stderr)
	}

	must(eddyCLI(t, reg, "", "schema", "register", "--subject", "requests-value", "--file", v2), "id 2, version 2")
	must(eddyCLI(t, reg, "", "schema", "get", "--subject", "requests-value"), "version 2, id 2", `"region"`)
	must(eddyCLI(t, reg, "", "schema", "get", "--subject", "requests-value", "--version", "1"), "version 1, id 1", `"latency_ms"`)
	must(eddyCLI(t, reg, "", "schema", "get", "--id", "1"), "# id 1", `"Request"`)
	must(eddyCLI(t, reg, "", "schema", "list"), "requests-value\tversions 1, 2")
	r = eddyCLI(t, reg, "", "schema", "get", "--subject", "requests-value", "--version", "7")
	if r.err == nil || !strings.Contains(r.stderr, "40402") {
		t.Errorf("missing version: exit %v: %s", r.err, r.stderr)
	}
	// --registry wins over the environment.
	r = eddyCLI(t, "http://127.0.0.1:1", "", "schema", "list", "--registry", reg)
	must(r, "requests-value")
}

func TestProduceAvro(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Kfake(t)
	reg := startRegistryProcess(t, brokers)
	topic := kafkatest.Name(t, "in")
	kafkatest.CreateTopic(t, brokers, topic, 1)
	v1 := writeFile(t, "v1.avsc", requestSchema)
	lines := `{"request_id":"a","ts":1700000000000,"service":"s","endpoint":"/a","status":200,"latency_ms":5}

{"request_id":"b","ts":"2023-11-14T22:13:20.5Z","service":"s","endpoint":"/a","status":500,"latency_ms":7}
{"request_id":"c","ts":1700000000000,"service":"s","endpoint":"/a","status":"oops","latency_ms":7}
{"request_id":"d","ts":1700000000000,"service":"s","endpoint":"/a","status":200,"latency_ms":7}
`
	r := eddyCLI(t, reg, lines, "produce", "--brokers", strings.Join(brokers, ","), "--topic", topic, "--file", v1)
	if r.err == nil {
		t.Fatalf("a bad line must fail the command:\n%s", r.stderr)
	}
	for _, want := range []string{"line 4", `field "status"`, "not an integer", "2 records"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
		}
	}
	recs := kafkatest.ReadAll(t, brokers, topic, false)
	if len(recs) != 2 {
		t.Fatalf("%d records produced, want the 2 good lines before the bad one", len(recs))
	}
	dec := schema.NewDecoder(schema.NewClient(reg), schema.PinSubject(topic+"-value"))
	for i, want := range []string{"a", "b"} {
		m, err := dec.Decode(context.Background(), recs[i].Value)
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		if m["request_id"] != want {
			t.Errorf("record %d is %v, want %s", i, m["request_id"], want)
		}
	}
	m, _ := dec.Decode(context.Background(), recs[1].Value)
	if ts, _ := m["ts"].(time.Time); ts.UnixMilli() != 1700000000500 {
		t.Errorf("RFC 3339 ts decoded as %v", m["ts"])
	}

	// Without --file the subject's latest schema is used; a field the
	// schema lacks is named.
	r = eddyCLI(t, reg, `{"request_id":"e","ts":1,"service":"s","endpoint":"/a","status":1,"latency_ms":1,"colour":"red"}`+"\n",
		"produce", "--brokers", strings.Join(brokers, ","), "--topic", topic)
	if r.err == nil || !strings.Contains(r.stderr, `line 1: field "colour" is not in the schema`) {
		t.Errorf("unknown field: exit %v:\n%s", r.err, r.stderr)
	}

	// --key-fields: each record keyed by an Avro record of those fields,
	// its schema registered under <topic>-key.
	keyedTopic := kafkatest.Name(t, "keyed")
	kafkatest.CreateTopic(t, brokers, keyedTopic, 1)
	r = eddyCLI(t, reg, `{"request_id":"k1","ts":1,"service":"s","endpoint":"/a","status":200,"latency_ms":1}`+"\n",
		"produce", "--brokers", strings.Join(brokers, ","), "--topic", keyedTopic, "--file", v1, "--key-fields", "endpoint,status")
	if r.err != nil || !strings.Contains(r.stderr, "keys: subject "+keyedTopic+"-key") {
		t.Fatalf("--key-fields: exit %v:\n%s", r.err, r.stderr)
	}
	recs = kafkatest.ReadAll(t, brokers, keyedTopic, false)
	k, err := schema.NewDecoder(schema.NewClient(reg), schema.PinSubject(keyedTopic+"-key")).Decode(context.Background(), recs[0].Key)
	if err != nil || len(k) != 2 || k["endpoint"] != "/a" || k["status"] != "200" {
		t.Errorf("key %v (%v), want endpoint /a and status \"200\"", k, err)
	}
	for flag, want := range map[string]string{"colour": `"colour" is not a field of the value schema`, "ts": `field "ts" is Avro long.timestamp-millis`} {
		r = eddyCLI(t, reg, "", "produce", "--brokers", strings.Join(brokers, ","), "--topic", keyedTopic, "--key-fields", flag)
		if r.err == nil || !strings.Contains(r.stderr, want) {
			t.Errorf("--key-fields %s: exit %v, want %q:\n%s", flag, r.err, want, r.stderr)
		}
	}
}
