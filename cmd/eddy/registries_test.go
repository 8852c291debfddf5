package main

// The schema scenario of a service team and an eddy pipeline, run on the
// real broker against two registries: eddy's own (`eddy registry`, a
// subprocess keeping its state in a topic of the broker) and a third-party
// one, Apicurio Registry 3 through its Confluent-compatible API
// (/apis/ccompat/v7, started by scripts/apicurio.sh). The team registers a
// schema, checks and registers a compatible change, is refused an
// incompatible one, produces JSON lines with `eddy produce` under both
// versions; the pipeline reads them as Avro, writes Avro results and
// dead-letters bad records; and a consumer no one here wrote (Confluent's
// Python client with its AvroDeserializer, scripts/avro_consume.py) decodes
// the results with the same registry.
//
// Where the two registries answer differently, the case says so and the
// test asserts each one's own behaviour.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eddy-streams/eddy/internal/kafkatest"
	"github.com/eddy-streams/eddy/schema"
)

// registryCase is one registry under test and how it answers where
// registries differ.
type registryCase struct {
	name  string
	start func(t *testing.T, brokers []string) string // returns the registry's URL

	// What `eddy schema check` says for a subject with no versions yet.
	emptyCheck string
	// What `eddy schema check` prints for an incompatible schema, and what
	// the error of `eddy schema register` says for it.
	incompatibleCheck, incompatibleRegister []string
	// GET /config: the registry-wide level the registry reports.
	globalLevel string
	// GET /config/{subject} for a subject that has no level of its own.
	subjectLevel func(level string, err error) error
}

var registryCases = []registryCase{
	{
		name: "eddy",
		start: func(t *testing.T, brokers []string) string {
			// A topic of its own: other tests on this broker run registries
			// over _schemas, and two registries on one topic could assign
			// the same id.
			return startRegistryProcess(t, brokers, "--topic", kafkatest.Name(t, "schemas"))
		},
		emptyCheck: "has no versions yet",
		// eddy's registry gives Confluent's verbose messages: the level
		// and what breaks.
		incompatibleCheck:    []string{"BACKWARD: the new schema cannot read data written with version 1: reader schema string not compatible with writer schema int"},
		incompatibleRegister: []string{"incompatible"},
		globalLevel:          "BACKWARD",
		// Like Confluent's: 40408, the subject has no level of its own.
		subjectLevel: func(level string, err error) error {
			var ra *registryAnswer
			if !errors.As(err, &ra) || ra.Code != 40408 {
				return fmt.Errorf("want error code 40408, got level %q, error %v", level, err)
			}
			return nil
		},
	},
	{
		name: "apicurio",
		start: func(t *testing.T, _ []string) string {
			return kafkatest.Apicurio(t)
		},
		// Apicurio answers a compatibility check on a subject it does not
		// know with is_compatible true (eddy's and Confluent's registries
		// answer 40401, which eddy schema check turns into "no versions
		// yet"), so the check reads as for any compatible schema.
		emptyCheck: "can be registered as the next version of",
		// Apicurio's verbose check gives no messages; its 409 on register
		// names the rule violation and each incompatible difference.
		incompatibleCheck:    []string{"the registry gave no details"},
		incompatibleRegister: []string{"409", "Incompatible artifact", "not compatible with writer type"},
		// Apicurio's ccompat /config reports only a level stored through
		// the API: the default global rule that scripts/apicurio.sh
		// configures (apicurio.rules.global.compatibility=BACKWARD) is
		// enforced, as the refused register shows, but reported as NONE
		// (a known Apicurio difference: apicurio-registry pull request 5251).
		globalLevel: "NONE",
		// Apicurio answers NONE for a subject without a level of its own,
		// where Confluent's registry and eddy's answer 40408.
		subjectLevel: func(level string, err error) error {
			if err != nil || level != "NONE" {
				return fmt.Errorf("want NONE, got level %q, error %v", level, err)
			}
			return nil
		},
	},
}

// TestKafkaSchemaRegistries runs the schema scenario against eddy's own
// registry and against Apicurio Registry, on the real broker.
func TestKafkaSchemaRegistries(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Real(t)
	python := avroConsumerPython(t)
	for _, rc := range registryCases {
		t.Run(rc.name, func(t *testing.T) {
			t.Parallel()
			testSchemaScenario(t, brokers, rc.start(t, brokers), rc, python)
		})
	}
}

var registeredRE = regexp.MustCompile(`registered under (\S+): id (\d+), version (\d+)`)

func testSchemaScenario(t *testing.T, brokers []string, url string, rc registryCase, python string) {
	// One partition, so that `eddy produce` (which lets the client pick
	// partitions) keeps the scenario's order: out-of-order events within
	// grace, late ones after their windows closed, the flush last.
	e := newE2EWith(t, brokers, "at_least_once", newScenario(7, 1, 60, 4))
	a := newAvroE2EAt(t, e, url, "avro")
	s := a.subject
	v1 := writeFile(t, "v1.avsc", requestSchema)
	v2 := writeFile(t, "v2.avsc", requestSchemaV2)
	bad := writeFile(t, "bad.avsc", strings.Replace(requestSchema, `{"name":"status","type":"int"}`, `{"name":"status","type":"string"}`, 1))

	cli := func(stdin string, args ...string) cliRun {
		t.Helper()
		return eddyCLI(t, url, stdin, args...)
	}
	must := func(r cliRun, want ...string) string {
		t.Helper()
		if r.err != nil {
			t.Fatalf("exit %v\nstdout: %s\nstderr: %s", r.err, r.stdout, r.stderr)
		}
		for _, w := range want {
			if !strings.Contains(r.stdout, w) {
				t.Errorf("output lacks %q:\n%s", w, r.stdout)
			}
		}
		return r.stdout
	}
	registered := func(out string) (id, version int) {
		t.Helper()
		m := registeredRE.FindStringSubmatch(out)
		if m == nil || m[1] != s {
			t.Fatalf("register printed %q, want registered under %s: id N, version V", out, s)
		}
		id, _ = strconv.Atoi(m[2])
		version, _ = strconv.Atoi(m[3])
		return id, version
	}

	// Register, evolve compatibly, be refused an incompatible change.
	must(cli("", "schema", "check", "--subject", s, "--file", v1), "compatible: ", rc.emptyCheck)
	id1, ver := registered(must(cli("", "schema", "register", "--subject", s, "--file", v1)))
	if ver != 1 || id1 <= 0 {
		t.Fatalf("first registration: id %d, version %d", id1, ver)
	}
	if id, ver := registered(must(cli("", "schema", "register", "--subject", s, "--file", v1))); id != id1 || ver != 1 {
		t.Errorf("registering v1 again: id %d version %d, want id %d version 1", id, ver, id1)
	}
	must(cli("", "schema", "check", "--subject", s, "--file", v2), "compatible: "+v2)
	r := cli("", "schema", "check", "--subject", s, "--file", bad)
	if r.err == nil || !strings.Contains(r.stdout, "NOT compatible") {
		t.Errorf("incompatible check: exit %v, want non-zero and NOT compatible:\n%s%s", r.err, r.stdout, r.stderr)
	}
	for _, w := range rc.incompatibleCheck {
		if !strings.Contains(r.stdout, w) {
			t.Errorf("incompatible check lacks %q:\n%s", w, r.stdout)
		}
	}
	r = cli("", "schema", "register", "--subject", s, "--file", bad)
	if r.err == nil {
		t.Fatalf("the registry accepted an incompatible schema (no BACKWARD rule? scripts/apicurio.sh sets one):\n%s", r.stdout)
	}
	for _, w := range rc.incompatibleRegister {
		if !strings.Contains(r.stderr, w) {
			t.Errorf("refused register: stderr lacks %q:\n%s", w, r.stderr)
		}
	}
	id2, ver := registered(must(cli("", "schema", "register", "--subject", s, "--file", v2)))
	if ver != 2 || id2 == id1 {
		t.Fatalf("v2 registered as id %d version %d (v1 is id %d)", id2, ver, id1)
	}
	must(cli("", "schema", "get", "--subject", s), fmt.Sprintf("version 2, id %d", id2), `"region"`)
	if out := must(cli("", "schema", "get", "--id", strconv.Itoa(id1)), `"latency_ms"`); strings.Contains(out, "region") {
		t.Errorf("schema id %d is v1, but shows v2's field:\n%s", id1, out)
	}
	must(cli("", "schema", "list"), s+"\tversions 1, 2")

	ctx := context.Background()
	// registryCall's keep-alive connections to a registry that outlives
	// the test (Apicurio) must not outlive it.
	t.Cleanup(http.DefaultClient.CloseIdleConnections)
	var cfg struct {
		Level string `json:"compatibilityLevel"`
	}
	if err := registryCall(ctx, url, "GET", "/config", nil, &cfg); err != nil || cfg.Level != rc.globalLevel {
		t.Errorf("GET /config: level %q, error %v; want %s", cfg.Level, err, rc.globalLevel)
	}
	cfg.Level = ""
	if err := rc.subjectLevel(cfg.Level, registryCall(ctx, url, "GET", "/config/"+s, nil, &cfg)); err != nil {
		t.Errorf("GET /config/%s: %v", s, err)
	}

	// Bad records, with the registry's ids in their headers where readable.
	a.enc = a.encoder(t, s, requestSchema) // registering v1 again gives its id
	if a.enc.ID() != id1 {
		t.Fatalf("the Go client registered v1 as id %d, the CLI as %d", a.enc.ID(), id1)
	}
	badRecs := a.badRecords(t)
	produceSync(t, brokers, badKafkaRecords(a.in, badRecs, a.sc.parts))

	// The events as JSON lines through `eddy produce`: the first half with
	// v1 (--file, already registered), the rest with the subject's latest
	// version, v2, so the topic mixes two schema ids; the second half keyed
	// by service and endpoint (an Avro record registered under <topic>-key).
	half := len(a.sc.events) / 2
	var lines1, lines2 strings.Builder
	for i, ev := range a.sc.events {
		b, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		if i < half {
			lines1.Write(append(b, '\n'))
		} else {
			lines2.WriteString(strings.TrimSuffix(string(b), "}") + `,"region":"us"}` + "\n")
		}
	}
	r = cli(lines1.String(), "produce", "--brokers", a.brokerList(), "--topic", a.in, "--file", v1)
	if want := fmt.Sprintf("%d records to %s (subject %s, schema id %d)", half, a.in, s, id1); r.err != nil || !strings.Contains(r.stderr, want) {
		t.Fatalf("eddy produce with v1: exit %v, want %q:\n%s", r.err, want, r.stderr)
	}
	r = cli(lines2.String(), "produce", "--brokers", a.brokerList(), "--topic", a.in, "--key-fields", "service,endpoint")
	if want := fmt.Sprintf("%d records to %s (subject %s, schema id %d; keys: subject %s-key", len(a.sc.events)-half, a.in, s, id2, a.in); r.err != nil || !strings.Contains(r.stderr, want) {
		t.Fatalf("eddy produce with the latest version: exit %v, want %q:\n%s", r.err, want, r.stderr)
	}
	inputs := kafkatest.ReadAll(t, brokers, a.in, false)
	valDec := schema.NewDecoder(a.client(t), schema.PinSubject(s))
	keyDec := schema.NewDecoder(a.client(t), schema.PinSubject(a.in+"-key"))
	keyed := 0
	for _, rec := range inputs {
		if rec.Key == nil {
			continue
		}
		keyed++
		k, err := keyDec.Decode(ctx, rec.Key)
		if err != nil {
			t.Fatalf("input key at offset %d is not Avro of %s-key: %v", rec.Offset, a.in, err)
		}
		v, err := valDec.Decode(ctx, rec.Value)
		if err != nil {
			t.Fatalf("input at offset %d: %v", rec.Offset, err)
		}
		if len(k) != 2 || k["service"] != v["service"] || k["endpoint"] != v["endpoint"] {
			t.Errorf("input at offset %d: key %v, value's service %v endpoint %v", rec.Offset, k, v["service"], v["endpoint"])
		}
	}
	if keyed != len(a.sc.events)-half {
		t.Errorf("%d input records have keys, want %d", keyed, len(a.sc.events)-half)
	}

	// The pipeline: Avro in, Avro out, bad records dead-lettered.
	w := a.start(t)
	late := a.settle(t, w)
	got := a.results(t)
	a.sc.verify(t, got, late)
	a.checkDeadLetters(t, badRecs)
	must(cli("", "schema", "get", "--subject", a.out+"-value"), "version 1", `"window_start"`, `"p99_latency"`)
	if out := must(cli("", "schema", "get", "--subject", a.out+"-key"), "version 1", `"service"`, `"endpoint"`); strings.Contains(out, "window_start") {
		t.Errorf("the result key schema has more than the key fields:\n%s", out)
	}

	// A third-party consumer decodes the results with the same registry.
	checkThirdPartyAvro(t, python, a)

	if err := w.stop(syscall.SIGTERM); err != nil {
		t.Errorf("eddy exited with %v after SIGTERM", err)
	}
}

// avroConsumerPython returns the Python that has scripts/avro_consume.py's
// dependencies (EDDY_TEST_PYTHON, a virtualenv scripts/test.sh makes).
// Like kafkatest.Real: skipped under -short, and missing fails the test.
func avroConsumerPython(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("third-party consumer test: skipped under -short")
	}
	p := os.Getenv("EDDY_TEST_PYTHON")
	if p == "" {
		t.Fatal("EDDY_TEST_PYTHON is empty: run scripts/test.sh (it makes a virtualenv with " +
			"scripts/avro_consume.requirements.txt), or point it at a Python with those packages")
	}
	return p
}

// checkThirdPartyAvro reads a's output topic with scripts/avro_consume.py
// (confluent-kafka's AvroDeserializer, schemas fetched from a's registry)
// and checks that it decodes every record, key and value, at the same
// partition and offset, to what eddy's own decoder gives, and that those
// are the right final windows.
func checkThirdPartyAvro(t *testing.T, python string, a *avroE2E) {
	t.Helper()
	recs := kafkatest.ReadAll(t, a.brokers, a.out, true)
	if len(recs) == 0 {
		t.Fatal("no output records to read")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 180*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, python, "../../scripts/avro_consume.py", "--brokers", a.brokerList(),
		"--topic", a.out, "--registry-url", a.registry, "--count", strconv.Itoa(len(recs)), "--timeout", "150",
		"--key-format", "avro")
	cmd.WaitDelay = 5 * time.Second
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("scripts/avro_consume.py: %v\nstderr:\n%s", err, errb.String())
	}
	type line struct {
		Partition int32             `json:"partition"`
		Offset    int64             `json:"offset"`
		Key       map[string]any    `json:"key"`
		KeyID     int               `json:"key_schema_id"`
		SchemaID  int               `json:"schema_id"`
		Value     map[string]any    `json:"value"`
		Types     map[string]string `json:"value_types"`
	}
	var lines []line
	sc := bufio.NewScanner(&out)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var l line
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("avro_consume.py printed %q: %v", sc.Text(), err)
		}
		lines = append(lines, l)
	}
	sort.Slice(lines, func(i, j int) bool {
		if lines[i].Partition != lines[j].Partition {
			return lines[i].Partition < lines[j].Partition
		}
		return lines[i].Offset < lines[j].Offset
	})
	sort.Slice(recs, func(i, j int) bool {
		if recs[i].Partition != recs[j].Partition {
			return recs[i].Partition < recs[j].Partition
		}
		return recs[i].Offset < recs[j].Offset
	})
	if len(lines) != len(recs) {
		t.Fatalf("the Python consumer read %d records, the Go client %d", len(lines), len(recs))
	}
	dec := schema.NewDecoder(a.client(t), schema.PinSubject(a.out+"-value"))
	keyDec := schema.NewDecoder(a.client(t), schema.PinSubject(a.out+"-key"))
	wireID := func(b []byte) int {
		if len(b) < 5 {
			return -1
		}
		return int(uint32(b[1])<<24 | uint32(b[2])<<16 | uint32(b[3])<<8 | uint32(b[4]))
	}
	var asRecords []*kgo.Record
	for i, r := range recs {
		l := lines[i]
		if l.Partition != r.Partition || l.Offset != r.Offset {
			t.Fatalf("record %d: Python read %d@%d, Go %d@%d", i, l.Partition, l.Offset, r.Partition, r.Offset)
		}
		m, err := dec.Decode(context.Background(), r.Value)
		if err != nil {
			t.Fatalf("%d@%d: eddy's decoder: %v", r.Partition, r.Offset, err)
		}
		k, err := keyDec.Decode(context.Background(), r.Key)
		if err != nil {
			t.Fatalf("%d@%d: the key is not Avro of %s-key: %v", r.Partition, r.Offset, a.out, err)
		}
		if l.SchemaID != wireID(r.Value) || l.KeyID != wireID(r.Key) {
			t.Errorf("%d@%d: schema ids %d (key %d) from Python, %d (key %d) in the record",
				r.Partition, r.Offset, l.SchemaID, l.KeyID, wireID(r.Value), wireID(r.Key))
		}
		if want := jsonPlain(k); !reflect.DeepEqual(l.Key, want) {
			t.Errorf("%d@%d: key decodes differently:\n  Python: %v\n  eddy:   %v", r.Partition, r.Offset, l.Key, want)
		}
		if k["service"] != m["service"] || k["endpoint"] != m["endpoint"] {
			t.Errorf("%d@%d: key %v does not match the result's key fields %v, %v", r.Partition, r.Offset, k, m["service"], m["endpoint"])
		}
		// Python gets an int for a count (an Avro long), not 114.0.
		for f, want := range map[string]string{"count": "int", "errors": "int", "min_latency": "int", "p99_latency": "float"} {
			if got := l.Types[f]; got != want && !(m[f] == nil && got == "NoneType") {
				t.Errorf("%d@%d: Python decodes %s as %s, want %s", r.Partition, r.Offset, f, got, want)
			}
		}
		if want := jsonPlain(m); !reflect.DeepEqual(l.Value, want) {
			t.Errorf("%d@%d decodes differently:\n  Python: %v\n  eddy:   %v", r.Partition, r.Offset, l.Value, want)
		}
		// The Python side's values, as eddy's JSON results, for verify.
		js, err := json.Marshal(pythonResult(l.Value))
		if err != nil {
			t.Fatal(err)
		}
		asRecords = append(asRecords, &kgo.Record{Topic: a.out, Partition: r.Partition, Offset: r.Offset, Value: js})
	}
	late := a.lateIDs(t)
	a.sc.verify(t, parseResults(t, asRecords), late)
	t.Logf("confluent-kafka's AvroDeserializer decoded all %d results as eddy does", len(lines))
}

// jsonPlain gives a decoded record the shape avro_consume.py prints it in
// once parsed as JSON: times as milliseconds since the epoch, every number
// a float64.
func jsonPlain(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		switch x := v.(type) {
		case time.Time:
			out[k] = float64(x.UnixMilli())
		case int64:
			out[k] = float64(x)
		case int:
			out[k] = float64(x)
		default:
			out[k] = v
		}
	}
	return out
}

// pythonResult turns a result as the Python consumer printed it into the
// JSON layout of eddy's JSON results, which parseResults reads.
func pythonResult(v map[string]any) map[string]any {
	out := map[string]any{}
	for k, x := range v {
		out[k] = x
	}
	ms := func(x any) string {
		f, _ := x.(float64)
		return time.UnixMilli(int64(f)).UTC().Format(time.RFC3339Nano)
	}
	out["window_start"] = ms(v["window_start"])
	out["window_end"] = ms(v["window_end"])
	out["key"] = map[string]any{"service": v["service"], "endpoint": v["endpoint"]}
	return out
}
