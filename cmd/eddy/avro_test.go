package main

// Avro end-to-end tests: the eddy binary reads Confluent wire-format
// records whose schemas live in eddy's embedded registry (schema.Server
// over the same Kafka cluster, served in-process), dead-letters each kind
// of bad record with its class, and never dead-letters or commits past a
// record while the registry is down.

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eddy-streams/eddy/internal/kafkatest"
	"github.com/eddy-streams/eddy/schema"
	"github.com/eddy-streams/eddy/topology"
)

// requestSchema is the producers' schema of the scenario's events; v2 adds
// a field with a default (a BACKWARD-compatible change).
const requestSchema = `{"type":"record","name":"Request","namespace":"test","fields":[
{"name":"request_id","type":"string"},
{"name":"ts","type":{"type":"long","logicalType":"timestamp-millis"}},
{"name":"service","type":"string"},
{"name":"endpoint","type":"string"},
{"name":"status","type":"int"},
{"name":"latency_ms","type":"int"}]}`

const requestSchemaV2 = `{"type":"record","name":"Request","namespace":"test","fields":[
{"name":"request_id","type":"string"},
{"name":"ts","type":{"type":"long","logicalType":"timestamp-millis"}},
{"name":"service","type":"string"},
{"name":"endpoint","type":"string"},
{"name":"status","type":"int"},
{"name":"latency_ms","type":"int"},
{"name":"region","type":"string","default":"eu"}]}`

const otherSchema = `{"type":"record","name":"Payment","namespace":"test","fields":[{"name":"amount","type":"long"}]}`

// testRegistry is the embedded registry served in-process on a fixed
// address, so it can be stopped and started again where clients expect it.
type testRegistry struct {
	t       testing.TB
	brokers []string
	addr    string
	srv     *http.Server
	cl      *kgo.Client
}

func startRegistry(t testing.TB, brokers []string, addr string) *testRegistry {
	t.Helper()
	r := &testRegistry{t: t, brokers: brokers, addr: addr}
	r.start()
	t.Cleanup(r.stop)
	return r
}

func (r *testRegistry) start() {
	r.t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(r.brokers...))
	if err != nil {
		r.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, err := schema.NewServer(ctx, cl, "")
	if err != nil {
		cl.Close()
		r.t.Fatalf("registry: %v", err)
	}
	var ln net.Listener
	for i := 0; ; i++ { // the old socket may linger for a moment
		if ln, err = net.Listen("tcp", r.addr); err == nil || i == 50 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		cl.Close()
		r.t.Fatalf("registry listen %s: %v", r.addr, err)
	}
	r.addr = ln.Addr().String()
	r.cl = cl
	r.srv = &http.Server{Handler: s, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = r.srv.Serve(ln) }()
}

// stop closes the listener and every connection: clients see connection
// refused from now on.
func (r *testRegistry) stop() {
	if r.srv == nil {
		return
	}
	_ = r.srv.Close()
	r.cl.Close()
	r.srv, r.cl = nil, nil
}

func (r *testRegistry) url() string { return "http://" + r.addr }

// avroE2E is the e2e scenario with Avro input.
type avroE2E struct {
	*e2e
	reg      *testRegistry // the in-process registry, when the test started one
	registry string        // the registry's URL
	subject  string
	enc      *schema.Encoder // v1
	// doubles: the results are expected in the schema of eddy before
	// typed results, every aggregate a double.
	doubles bool
	// regOpts are the test's own client options for the registry
	// (credentials, TLS); none by default.
	regOpts []schema.ClientOption
}

func newAvroE2E(t testing.TB, brokers []string, processing, outFormat string) *avroE2E {
	t.Helper()
	reg := startRegistry(t, brokers, "127.0.0.1:0")
	a := newAvroE2EAt(t, newE2E(t, brokers, processing), reg.url(), outFormat)
	a.reg = reg
	a.enc = a.encoder(t, a.subject, requestSchema)
	return a
}

// newAvroE2EAt turns e into an Avro scenario whose schemas live in the
// registry at url; it registers nothing.
func newAvroE2EAt(t testing.TB, e *e2e, url, outFormat string) *avroE2E {
	t.Helper()
	a := &avroE2E{e2e: e, registry: url, subject: e.in + "-value"}
	spec, err := os.ReadFile(e.spec)
	if err != nil {
		t.Fatal(err)
	}
	y := strings.Replace(string(spec), "  topics: ["+e.in+"]\n",
		"  topics: ["+e.in+"]\n  format: avro\n  subject: "+a.subject+"\n", 1)
	if outFormat != "" {
		y = strings.Replace(y, "  topic: "+e.out+"\n", "  topic: "+e.out+"\n  format: "+outFormat+"\n", 1)
	}
	if err := os.WriteFile(e.spec, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	return a
}

func (a *avroE2E) client(t testing.TB) *schema.Client {
	c := schema.NewClient(a.registry, a.regOpts...)
	t.Cleanup(c.Close)
	return c
}

func (a *avroE2E) encoder(t testing.TB, subject, text string) *schema.Encoder {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	enc, err := schema.NewEncoder(ctx, a.client(t), subject, text)
	if err != nil {
		t.Fatalf("register %s: %v", subject, err)
	}
	return enc
}

// records encodes the scenario's events (filtered by keep) with enc.
func (a *avroE2E) records(t testing.TB, enc *schema.Encoder, keep func(i int, e tevent) bool) []*kgo.Record {
	t.Helper()
	var out []*kgo.Record
	for i, e := range a.sc.events {
		if !keep(i, e) {
			continue
		}
		b, err := enc.Encode(map[string]any{"request_id": e.ID, "ts": time.UnixMilli(e.TS).UTC(), "service": e.Service,
			"endpoint": e.Endpoint, "status": e.Status, "latency_ms": e.Latency})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, &kgo.Record{Topic: a.in, Partition: e.part, Value: b})
	}
	return out
}

func (a *avroE2E) spec() string { return a.e2e.spec }

func (a *avroE2E) start(t testing.TB) *worker {
	return startWorker(t, a.spec(), a.brokerList(), t.TempDir(), "EDDY_REGISTRY_URL="+a.registry)
}

// avroBad is one bad record and what eddy must say about it.
type avroBad struct {
	value    []byte
	class    string
	schemaID string // "" when the header is unreadable
}

func (a *avroE2E) badRecords(t testing.TB) []avroBad {
	good := a.enc.ID()
	other := a.encoder(t, kafkatest.Name(t, "other")+"-value", otherSchema)
	otherVal, err := other.Encode(map[string]any{"amount": 12})
	if err != nil {
		t.Fatal(err)
	}
	return []avroBad{
		{value: []byte{0, 0, 1}, class: "wire_too_short"},
		{value: []byte(`{"service":"checkout"}`), class: "wire_bad_magic"},
		{value: schema.AppendWire(nil, 987654, []byte{2, 'x'}), class: "unknown_schema", schemaID: "987654"},
		{value: otherVal, class: "wrong_subject", schemaID: strconv.Itoa(other.ID())},
		{value: schema.AppendWire(nil, good, []byte{0x0c, 'a'}), class: "avro_decode", schemaID: strconv.Itoa(good)},
	}
}

// badKafkaRecords spreads bad over the topic's first parts partitions.
func badKafkaRecords(topic string, bad []avroBad, parts int32) []*kgo.Record {
	var out []*kgo.Record
	for i, b := range bad {
		out = append(out, &kgo.Record{Topic: topic, Partition: int32(i) % parts, Value: b.value,
			Headers: []kgo.RecordHeader{{Key: "trace", Value: []byte("t-1")}}})
	}
	return out
}

// lateIDs reads the late topic (Avro records) and returns their ids.
func (a *avroE2E) lateIDs(t testing.TB) map[string]bool {
	t.Helper()
	dec := schema.NewDecoder(a.client(t))
	ids := map[string]bool{}
	for _, r := range kafkatest.ReadAll(t, a.brokers, a.late, true) {
		m, err := dec.Decode(context.Background(), r.Value)
		if err != nil {
			t.Fatalf("late record is not the original Avro bytes: %v", err)
		}
		ids[m["request_id"].(string)] = true
	}
	return ids
}

// settle waits for the group to be idle and for every designed-late record
// to be in the late topic: waitIdle alone may return early on a loaded
// machine (its check for records past a committed offset polls briefly).
func (a *avroE2E) settle(t testing.TB, w *worker) map[string]bool {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		a.waitIdle(t, 120*time.Second, w)
		late := a.lateIDs(t)
		all := true
		for _, e := range a.sc.events {
			all = all && (!e.designedLate || late[e.ID])
		}
		if all || time.Now().After(deadline) {
			a.waitIdle(t, 120*time.Second, w)
			return late
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// results reads the output topic, JSON or Avro.
func (a *avroE2E) results(t testing.TB) map[winKey][]result {
	t.Helper()
	recs := kafkatest.ReadAll(t, a.brokers, a.out, true)
	if len(recs) == 0 || recs[0].Value[0] == '{' {
		return parseResults(t, recs)
	}
	dec := schema.NewDecoder(a.client(t), schema.PinSubject(a.out+"-value"))
	out := map[winKey][]result{}
	f := func(v any) *float64 {
		if x, ok := v.(float64); ok {
			return &x
		}
		return nil
	}
	// Counts are longs, and min and max keep the input's Avro int: the
	// registered result schema says so, and the decoder gives int64s.
	latest, err := a.client(t).Latest(context.Background(), a.out+"-value")
	if err != nil {
		t.Fatal(err)
	}
	fields := schema.Fields(latest)
	for name, want := range map[string]string{"count": "long", "errors": "long", "min_latency": "int", "max_latency": "int",
		"sum_latency": "double", "mean_latency": "double", "p99_latency": "double"} {
		if a.doubles {
			want = "double"
		}
		if got := fields[name].Avro; got != want {
			t.Errorf("result field %s is Avro %q, want %q", name, got, want)
		}
	}
	long := func(name string, m map[string]any) *float64 {
		if a.doubles {
			return f(m[name])
		}
		v, ok := m[name].(int64)
		if !ok {
			if m[name] != nil {
				t.Errorf("result field %s decoded as %T %v, want an int64", name, m[name], m[name])
			}
			return nil
		}
		x := float64(v)
		return &x
	}
	for _, r := range recs {
		m, err := dec.Decode(context.Background(), r.Value)
		if err != nil {
			t.Fatalf("output record %d@%d is not Avro of %s-value: %v", r.Partition, r.Offset, a.out, err)
		}
		res := result{Key: map[string]string{"service": m["service"].(string), "endpoint": m["endpoint"].(string)},
			WindowStart: m["window_start"].(time.Time), WindowEnd: m["window_end"].(time.Time),
			Sum: f(m["sum_latency"]), Min: long("min_latency", m), Max: long("max_latency", m), Mean: f(m["mean_latency"]),
			P99: f(m["p99_latency"]), raw: string(r.Value)}
		if c := long("count", m); c != nil {
			res.Count = *c
		}
		if c := long("errors", m); c != nil {
			res.Errors = *c
		}
		k := winKey{res.Key["service"] + "|" + res.Key["endpoint"], res.WindowStart.UnixMilli()}
		out[k] = append(out[k], res)
	}
	return out
}

// checkAvroDeadLetters checks every dead-letter record: original bytes and
// headers, class, message, schema id and source position.
func (a *avroE2E) checkDeadLetters(t testing.TB, bad []avroBad) {
	t.Helper()
	dl := kafkatest.ReadAll(t, a.brokers, a.dlq, true)
	if len(dl) != len(bad) {
		t.Fatalf("dead-letter topic has %d records, want %d", len(dl), len(bad))
	}
	byValue := map[string]*kgo.Record{}
	for _, r := range dl {
		byValue[string(r.Value)] = r
	}
	src := kafkatest.ReadAll(t, a.brokers, a.in, true)
	for _, b := range bad {
		r := byValue[string(b.value)]
		if r == nil {
			t.Errorf("%s record %q is not in the dead-letter topic with its original bytes", b.class, b.value)
			continue
		}
		h := map[string]string{}
		for _, x := range r.Headers {
			h[x.Key] = string(x.Value)
		}
		if h["trace"] != "t-1" {
			t.Errorf("%s: original headers lost: %v", b.class, h)
		}
		if h["eddy.error.class"] != b.class {
			t.Errorf("dead letter %q: class %q, want %q (message %q)", b.value, h["eddy.error.class"], b.class, h["eddy.error.message"])
		}
		if !strings.Contains(h["eddy.error.message"], b.class) {
			t.Errorf("%s: message %q does not name the class", b.class, h["eddy.error.message"])
		}
		if h["eddy.schema.id"] != b.schemaID {
			t.Errorf("%s: eddy.schema.id %q, want %q", b.class, h["eddy.schema.id"], b.schemaID)
		}
		found := false
		for _, s := range src {
			if string(s.Value) == string(b.value) {
				found = true
				if h["eddy.source.topic"] != a.in || h["eddy.source.partition"] != strconv.Itoa(int(s.Partition)) ||
					h["eddy.source.offset"] != strconv.FormatInt(s.Offset, 10) {
					t.Errorf("%s: source headers %s/%s@%s, want %s/%d@%d", b.class, h["eddy.source.topic"],
						h["eddy.source.partition"], h["eddy.source.offset"], a.in, s.Partition, s.Offset)
				}
			}
		}
		if !found {
			t.Errorf("%s: input record not found", b.class)
		}
	}
}

// metricsAddr returns the worker's /metrics address from its log.
func (w *worker) metricsAddr(t testing.TB) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		for _, l := range strings.Split(w.logs(), "\n") {
			if strings.Contains(l, `msg="serving health and metrics"`) {
				if i := strings.Index(l, "addr="); i >= 0 {
					return strings.Fields(l[i+len("addr="):])[0]
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no metrics address in the worker log:\n%s", w.logs())
	return ""
}

// metric sums the samples of name whose labels include every label given
// as `k="v"`.
func metric(t testing.TB, addr, name string, labels ...string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		l := sc.Text()
		if !strings.HasPrefix(l, name+" ") && !strings.HasPrefix(l, name+"{") {
			continue
		}
		ok := true
		for _, lb := range labels {
			ok = ok && strings.Contains(l, lb)
		}
		if !ok {
			continue
		}
		f := strings.Fields(l)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", l, err)
		}
		sum += v
	}
	return sum
}

func testAvroEndToEnd(t *testing.T, brokers []string, processing, outFormat string) {
	a := newAvroE2E(t, brokers, processing, outFormat)
	bad := a.badRecords(t)
	recs := a.records(t, a.enc, func(int, tevent) bool { return true })
	produceSync(t, brokers, append(badKafkaRecords(a.in, bad, a.sc.parts), recs...))
	w := a.start(t)
	late := a.settle(t, w)
	a.sc.verify(t, a.results(t), late)
	a.checkDeadLetters(t, bad)
	addr := w.metricsAddr(t)
	for _, b := range bad {
		if got := metric(t, addr, "eddy_dead_letters_total", `class="`+b.class+`"`); got != 1 {
			t.Errorf("eddy_dead_letters_total{class=%q} = %v, want 1", b.class, got)
		}
	}
	if err := w.stop(syscall.SIGTERM); err != nil {
		t.Errorf("eddy exited with %v after SIGTERM", err)
	}
}

func TestAvroEndToEnd(t *testing.T) {
	t.Parallel()
	testAvroEndToEnd(t, kafkatest.Kfake(t), "at_least_once", "avro")
}

func TestAvroExactlyOnceEndToEnd(t *testing.T) {
	t.Parallel()
	testAvroEndToEnd(t, kafkatest.Kfake(t), "exactly_once", "")
}

func TestKafkaAvroEndToEnd(t *testing.T) {
	t.Parallel()
	testAvroEndToEnd(t, kafkatest.Real(t), "at_least_once", "avro")
}

// testAvroRegistryOutage stops the registry mid-stream, then produces
// records with a schema id the worker has never seen: they must wait (no
// dead letters, eddy_registry_waiting 1) until the registry is back on the
// same address, and then count exactly once.
func testAvroRegistryOutage(t *testing.T, processing string) {
	brokers := kafkatest.Kfake(t)
	a := newAvroE2E(t, brokers, processing, "")
	n := 0
	for _, e := range a.sc.events {
		if !e.designedLate && !e.flush {
			n++
		}
	}
	produceSync(t, brokers, a.records(t, a.enc, func(i int, e tevent) bool { return i < n/2 }))
	w := a.start(t)
	a.waitIdle(t, 120*time.Second, w)
	addr := w.metricsAddr(t)

	v2 := a.encoder(t, a.subject, requestSchemaV2) // registered, never seen by the worker
	if v2.ID() == a.enc.ID() {
		t.Fatal("v2 has the id of v1")
	}
	a.reg.stop()
	produceSync(t, brokers, a.records(t, v2, func(i int, e tevent) bool { return i >= n/2 }))

	deadline := time.Now().Add(30 * time.Second)
	for metric(t, addr, "eddy_registry_waiting") != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("eddy_registry_waiting did not become 1 with the registry down")
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(3 * time.Second)
	if got := metric(t, addr, "eddy_registry_waiting"); got != 1 {
		t.Errorf("eddy_registry_waiting = %v while the registry is down, want 1", got)
	}
	if got := metric(t, addr, "eddy_dead_letters_total"); got != 0 {
		t.Errorf("%v dead letters during the registry outage, want 0", got)
	}
	if !strings.Contains(w.logs(), "waiting for schema registry") {
		t.Errorf("the worker did not log that it waits for the registry")
	}

	a.reg.start() // same address, same _schemas topic
	late := a.settle(t, w)
	a.sc.verify(t, a.results(t), late)
	if dl := kafkatest.ReadAll(t, brokers, a.dlq, true); len(dl) != 0 {
		t.Errorf("%d dead letters after a registry outage, want 0", len(dl))
	}
	if got := metric(t, addr, "eddy_registry_waiting"); got != 0 {
		t.Errorf("eddy_registry_waiting = %v after the registry is back, want 0", got)
	}
	if err := w.stop(syscall.SIGTERM); err != nil {
		t.Errorf("eddy exited with %v after SIGTERM", err)
	}
}

func TestAvroRegistryOutage(t *testing.T) {
	t.Parallel()
	testAvroRegistryOutage(t, "at_least_once")
}

func TestAvroRegistryOutageExactlyOnce(t *testing.T) {
	t.Parallel()
	testAvroRegistryOutage(t, "exactly_once")
}

// TestAvroStartupFieldCheck: a pipeline naming a field the input schema
// lacks, or aggregating a string, stops at start-up with an error naming
// the field.
func TestAvroStartupFieldCheck(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Kfake(t)
	a := newAvroE2E(t, brokers, "at_least_once", "")
	spec, _ := os.ReadFile(a.spec())
	y := strings.Replace(string(spec), "field: latency_ms}", "field: latncy_ms}", 1)
	y = strings.Replace(y, "{name: max_latency, op: max, field: latency_ms}", "{name: max_latency, op: max, field: endpoint}", 1)
	if err := os.WriteFile(a.spec(), []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	w := a.start(t)
	var err error
	select {
	case err = <-w.done:
		w.exited = true
	case <-time.After(60 * time.Second):
		t.Fatal("eddy did not stop on a pipeline that does not fit its schema")
	}
	if err == nil {
		t.Fatal("eddy exited 0")
	}
	log := w.logs()
	for _, want := range []string{`"latncy_ms" is not in the record schema`, `did you mean "latency_ms"?`, `field "endpoint" is a string`, a.subject} {
		if !strings.Contains(log, want) {
			t.Errorf("start-up error lacks %q:\n%s", want, log)
		}
	}
}

// TestAvroResultSchemaUpgrade: an output subject registered by eddy before
// typed results (every aggregate a double) refuses the typed schema under
// its BACKWARD level (a long cannot read a double). The worker does not
// stop: it keeps writing the schema already registered, says so at
// start-up, and its results are right.
func TestAvroResultSchemaUpgrade(t *testing.T) {
	t.Parallel()
	a := newAvroE2E(t, kafkatest.Kfake(t), "at_least_once", "avro")
	text, err := os.ReadFile(a.spec())
	if err != nil {
		t.Fatal(err)
	}
	spec, err := topology.Parse(text)
	if err != nil {
		t.Fatal(err)
	}
	// The schema eddy derived before typed results, built here from the
	// layout docs/schemas.md gave then.
	o := schema.Output{Name: schema.AvroName(spec.App) + "_result", Namespace: "eddy.pipelines",
		Doc: fmt.Sprintf("Results of eddy pipeline %q", spec.App), KeyFields: spec.Key}
	for _, ag := range spec.Aggregates {
		o.Aggregates = append(o.Aggregates, ag.Name)
	}
	legacy, err := schema.DeriveOutput(o)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(legacy, `"long"]`) {
		t.Fatalf("the legacy schema has a long aggregate: %s", legacy)
	}
	old := a.encoder(t, a.out+"-value", legacy)
	a.doubles = true
	produceSync(t, a.brokers, a.records(t, a.enc, func(int, tevent) bool { return true }))
	w := a.start(t)
	late := a.settle(t, w)
	a.sc.verify(t, a.results(t), late)
	if !strings.Contains(w.logs(), "refuses the typed results") {
		t.Errorf("the worker did not say it keeps the registered result types")
	}
	latest, err := a.client(t).Latest(context.Background(), a.out+"-value")
	if err != nil || latest.ID != old.ID() {
		t.Errorf("latest result schema: %v %v, want the legacy schema id %d (nothing new registered)", latest, err, old.ID())
	}
	if err := w.stop(syscall.SIGTERM); err != nil {
		t.Errorf("eddy exited with %v after SIGTERM", err)
	}
}
