package main

// Tests of `eddy demo`: the binary runs the bundled pipeline on an embedded
// Kafka fed by the event generator, for a fixed duration, and prints each
// final window. A second run on the same data directory must resume: print
// only windows after the first run's, and finish the window that was open
// when the first run stopped with the records of both runs.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eddy-streams/eddy/deploy/pipelines"
	"github.com/eddy-streams/eddy/internal/kafkatest"
	"github.com/eddy-streams/eddy/topology"
)

// eddyRun is the outcome of one eddy process run to completion.
type eddyRun struct {
	stdout, stderr string
	code           int
	took           time.Duration
}

// runEddy runs the binary with args until it exits (killed after timeout)
// and returns its output and exit code.
func runEddy(t *testing.T, timeout time.Duration, args ...string) eddyRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, eddyBin, args...)
	cmd.WaitDelay = 5 * time.Second
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	err := cmd.Run()
	r := eddyRun{stdout: out.String(), stderr: errb.String(), took: time.Since(start)}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		t.Fatalf("eddy %s: %v", strings.Join(args, " "), err)
	}
	if ctx.Err() != nil {
		t.Fatalf("eddy %s: still running after %s; killed.\nstdout:\n%s\nstderr:\n%s",
			strings.Join(args, " "), timeout, r.stdout, r.stderr)
	}
	return r
}

func (r eddyRun) lines() []string {
	s := strings.TrimRight(r.stdout, "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// demoResult is one line of `eddy demo --json`, checked.
type demoResult struct {
	rollup            string
	key               map[string]string
	service, endpoint string
	start, end        time.Time
	requests, errors  float64
	p50, p99          float64
	line              string
}

// The bundled pipeline's rollups, as the tests read them.
const (
	rollupEndpoint    = "by_endpoint"     // 10s per service and endpoint
	rollupEndpoint1m  = "by_endpoint_1m"  // chained from by_endpoint, 1 min
	rollupStatusClass = "by_status_class" // 1 min per service and status class
)

// bundledRollups are the bundled pipeline's rollups by name.
func bundledRollups(t *testing.T) map[string]*topology.Spec {
	t.Helper()
	spec, err := topology.Parse(pipelines.HTTPRequests)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*topology.Spec{}
	for _, rs := range spec.RollupSpecs() {
		out[rs.RollupName] = rs
	}
	for _, n := range []string{rollupEndpoint, rollupEndpoint1m, rollupStatusClass} {
		if out[n] == nil {
			t.Fatalf("the bundled pipeline has no rollup %s (has %v): adapt the demo tests", n, slices.Sorted(maps.Keys(out)))
		}
	}
	return out
}

// id names the result's rollup, key and window.
func (r demoResult) id() string {
	if r.rollup == rollupStatusClass {
		return fmt.Sprintf("%s|%s|%s@%s", r.rollup, r.service, r.key["status_class"], r.start.Format(time.RFC3339))
	}
	return fmt.Sprintf("%s|%s|%s@%s", r.rollup, r.service, r.endpoint, r.start.Format(time.RFC3339))
}

// ofRollup returns the results of one rollup.
func ofRollup(rs []demoResult, rollup string) []demoResult {
	var out []demoResult
	for _, r := range rs {
		if r.rollup == rollup {
			out = append(out, r)
		}
	}
	return out
}

// parseDemoJSON checks every stdout line of a --json run, for the rollup
// it names (its key fields, window size and aggregates), and returns the
// results.
func parseDemoJSON(t *testing.T, run string, r eddyRun) []demoResult {
	t.Helper()
	rollups := bundledRollups(t)
	var out []demoResult
	for i, line := range r.lines() {
		fail := func(format string, args ...any) {
			t.Errorf("%s: stdout line %d: %s: %s", run, i+1, fmt.Sprintf(format, args...), line)
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			fail("not a JSON object: %v", err)
			continue
		}
		if m["kind"] == "alert" {
			continue // checked by parseDemoAlerts
		}
		if m["kind"] != "result" {
			fail("kind = %v, want \"result\"", m["kind"])
		}
		var d demoResult
		d.line = line
		d.rollup, _ = m["rollup"].(string)
		rs := rollups[d.rollup]
		if rs == nil {
			fail("rollup %v is not one of the pipeline's", m["rollup"])
			continue
		}
		key, ok := m["key"].(map[string]any)
		if !ok {
			fail("key is not an object")
			continue
		}
		d.key = map[string]string{}
		for _, f := range rs.Key {
			d.key[f] = fmt.Sprint(key[f])
			if s, _ := key[f].(string); s == "" {
				fail("key lacks %s (the key of %s is %v)", f, d.rollup, rs.Key)
			}
			// Each key field is also a field of the result (docs/pipeline-spec.md).
			if m[f] != key[f] {
				fail("field %s = %v differs from the key's %v", f, m[f], key[f])
			}
		}
		if len(key) != len(rs.Key) {
			fail("key %v has other fields than %v", key, rs.Key)
		}
		d.service, d.endpoint = d.key["service"], d.key["endpoint"]
		if c := d.key["status_class"]; d.rollup == rollupStatusClass && (len(c) != 1 || c < "1" || c > "5") {
			fail("status_class %q is not a status class (1 to 5)", c)
		}
		if d.endpoint == "/healthz" {
			fail("the pipeline filters out /healthz, yet it has a result")
		}
		for _, f := range []struct {
			name string
			to   *time.Time
		}{{"window_start", &d.start}, {"window_end", &d.end}} {
			s, _ := m[f.name].(string)
			ts, err := time.Parse(time.RFC3339, s)
			if err != nil {
				fail("%s %q is not RFC 3339: %v", f.name, s, err)
			}
			*f.to = ts
		}
		size := rs.Window.Size
		if d.end.Sub(d.start) != size {
			fail("window_end - window_start = %s, want %s (rollup %s)", d.end.Sub(d.start), size, d.rollup)
		}
		if d.start.UnixMilli()%size.Milliseconds() != 0 {
			fail("window_start is not aligned to %s", size)
		}
		aggs := map[string]*float64{"requests": &d.requests, "errors": &d.errors, "p50_latency_ms": &d.p50, "p99_latency_ms": &d.p99}
		for _, a := range rs.Aggregates {
			v, ok := m[a.Name].(float64)
			if !ok {
				fail("%s = %v (%T), want a number", a.Name, m[a.Name], m[a.Name])
			}
			if to := aggs[a.Name]; to != nil {
				*to = v
			} else {
				fail("aggregate %s: the test does not know it", a.Name)
			}
		}
		if d.requests < 1 || d.requests != math.Trunc(d.requests) {
			fail("requests = %v, want a positive integer", d.requests)
		}
		if d.errors < 0 || d.errors > d.requests || d.errors != math.Trunc(d.errors) {
			fail("errors = %v, want an integer in [0, requests=%v]", d.errors, d.requests)
		}
		if !(d.p99 > 0) || d.rollup != rollupStatusClass && !(d.p50 > 0 && d.p50 <= d.p99) {
			fail("p50 = %v, p99 = %v: want 0 < p50 <= p99", d.p50, d.p99)
		}
		out = append(out, d)
	}
	return out
}

// demoInput is one generated event as it is stored in the input topic.
type demoInput struct {
	TS        int64   `json:"ts"`
	Service   string  `json:"service"`
	Endpoint  string  `json:"endpoint"`
	Status    int     `json:"status"`
	LatencyMS float64 `json:"latency_ms"`
	RequestID string  `json:"request_id"`

	produced int64 // record timestamp: when the generator produced it
}

// persisted opens the demo's Kafka data directory with kfake, here in the
// test, and reads the input topic, every rollup's output topic and the
// late topic as they were left. late holds the request ids of the late
// records by the rollup they were late for (header eddy.rollup).
func persisted(t *testing.T, dataDir string) (in []demoInput, outs []demoResult, late map[string]map[string]bool) {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.DataDir(filepath.Join(dataDir, "kafka")))
	if err != nil {
		t.Fatalf("open the demo's Kafka data dir: %v", err)
	}
	defer c.Close()
	brokers := c.ListenAddrs()
	for _, r := range kafkatest.ReadAll(t, brokers, "http-requests", false) {
		var e demoInput
		if err := json.Unmarshal(r.Value, &e); err != nil {
			t.Fatalf("input record is not a generated event: %v: %s", err, r.Value)
		}
		e.produced = r.Timestamp.UnixMilli()
		in = append(in, e)
	}
	var lines []string
	rollups := bundledRollups(t)
	for _, name := range slices.Sorted(maps.Keys(rollups)) {
		for _, r := range kafkatest.ReadAll(t, brokers, rollups[name].Output.Topic, true) {
			var m map[string]any
			if err := json.Unmarshal(r.Value, &m); err != nil {
				t.Fatalf("output record is not JSON: %v: %s", err, r.Value)
			}
			m["kind"], m["rollup"] = "result", name
			b, _ := json.Marshal(m)
			lines = append(lines, string(b))
		}
	}
	outs = parseDemoJSON(t, "output topics", eddyRun{stdout: strings.Join(lines, "\n")})
	late = map[string]map[string]bool{}
	for _, r := range kafkatest.ReadAll(t, brokers, "http-stats-late", true) {
		var e demoInput
		if err := json.Unmarshal(r.Value, &e); err != nil {
			t.Fatalf("late record is not a generated event: %v: %s", err, r.Value)
		}
		rollup := ""
		for _, h := range r.Headers {
			if h.Key == "eddy.rollup" {
				rollup = string(h.Value)
			}
		}
		if rollups[rollup] == nil {
			t.Errorf("late record %s: header eddy.rollup %q names no rollup", e.RequestID, rollup)
		}
		if late[rollup] == nil {
			late[rollup] = map[string]bool{}
		}
		late[rollup][e.RequestID] = true
	}
	return in, outs, late
}

func TestDemo(t *testing.T) {
	t.Parallel()
	t.Run("readable", func(t *testing.T) {
		t.Parallel()
		r := runEddy(t, 90*time.Second, "demo", "--duration", "20s", "--data-dir", t.TempDir())
		if r.code != 0 {
			t.Fatalf("eddy demo exited %d after %s\nstdout:\n%s\nstderr:\n%s", r.code, r.took, r.stdout, r.stderr)
		}
		t.Logf("readable demo: %s, %d lines", r.took.Round(100*time.Millisecond), len(r.lines()))
		checkReadable(t, r)
		checkEndLine(t, r, time.Time{})
	})
	t.Run("json-resume", func(t *testing.T) {
		t.Parallel()
		testDemoResume(t)
	})
	t.Run("alerts", func(t *testing.T) {
		t.Parallel()
		testDemoAlerts(t)
	})
	t.Run("avro", func(t *testing.T) {
		t.Parallel()
		testDemoAvro(t)
	})
}

// testDemoAvro: with --avro the events, results and alerts are Avro in the
// Confluent wire format, with schemas in the embedded registry (the
// _schemas topic); the printed results are the same shape as with JSON.
func testDemoAvro(t *testing.T) {
	dir := t.TempDir()
	r := runEddy(t, 120*time.Second, "demo", "--avro", "--duration", "25s", "--json", "--data-dir", dir)
	if r.code != 0 {
		t.Fatalf("eddy demo --avro exited %d\nstderr:\n%s", r.code, r.stderr)
	}
	if !strings.Contains(r.stderr, "schema registry at http://127.0.0.1:") {
		t.Errorf("the demo does not say where its schema registry is:\n%s", r.stderr)
	}
	if res := parseDemoJSON(t, "avro run", r); len(ofRollup(res, rollupEndpoint)) == 0 {
		t.Fatalf("no result of %s in 25s\nstderr:\n%s", rollupEndpoint, r.stderr)
	}
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.DataDir(filepath.Join(dir, "kafka")))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Every rollup writes Avro; the minutes may not have closed in 25s.
	rollups := bundledRollups(t)
	for _, topic := range []string{"http-requests", "http-stats-10s", rollups[rollupEndpoint1m].Output.Topic, rollups[rollupStatusClass].Output.Topic} {
		recs := kafkatest.ReadAll(t, c.ListenAddrs(), topic, true)
		if len(recs) == 0 && (topic == "http-requests" || topic == "http-stats-10s") {
			t.Errorf("%s is empty", topic)
		}
		for _, rec := range recs {
			if len(rec.Value) < 6 || rec.Value[0] != 0 {
				t.Fatalf("%s: record %d is not in the Confluent wire format: % x", topic, rec.Offset, rec.Value[:min(8, len(rec.Value))])
			}
		}
	}
	subjects := map[string]bool{}
	for _, rec := range kafkatest.ReadAll(t, c.ListenAddrs(), "_schemas", false) {
		var k struct{ Subject string }
		if json.Unmarshal(rec.Key, &k) == nil && k.Subject != "" {
			subjects[k.Subject] = true
		}
	}
	want := []string{"http-requests-value", "http-stats-alerts-value"}
	for _, rs := range rollups {
		want = append(want, rs.Output.Topic+"-value", rs.Output.Topic+"-key")
	}
	for _, s := range want {
		if !subjects[s] {
			t.Errorf("subject %s not in the registry's _schemas topic (has %v)", s, subjects)
		}
	}
}

// testDemoAlerts: within a minute the generator's incidents (an error
// burst on /api/login, a latency spike on /api/pay, a pause of
// /api/search) make the bundled rules fire, and the first two resolve;
// each transition is printed once, with kind "alert" in --json.
func testDemoAlerts(t *testing.T) {
	r := runEddy(t, 150*time.Second, "demo", "--duration", "60s", "--json", "--data-dir", t.TempDir())
	if r.code != 0 {
		t.Fatalf("eddy demo exited %d\nstderr:\n%s", r.code, r.stderr)
	}
	type tr struct{ rule, state, endpoint string }
	var got []tr
	for _, line := range r.lines() {
		var a struct {
			Kind, Rule, State, Severity, Summary string
			Key                                  map[string]string
			Value, Threshold                     *float64
		}
		if err := json.Unmarshal([]byte(line), &a); err != nil || a.Kind != "alert" {
			continue
		}
		// latency-high reports the p99 latency its summary speaks of, and
		// its threshold of 1000 ms, not the request count and the guard.
		if a.Rule == "latency-high" && a.State == "firing" {
			if a.Value == nil || a.Threshold == nil || *a.Threshold != 1000 || *a.Value <= 1000 ||
				!strings.Contains(a.Summary, fmt.Sprintf("p99 latency %.0f ms", *a.Value)) {
				t.Errorf("latency-high: value and threshold are not the p99 latency and 1000 ms: %s", line)
			}
		}
		if a.Summary == "" || a.Severity == "" || a.Key["endpoint"] == "" {
			t.Errorf("alert without summary, severity or key: %s", line)
		}
		got = append(got, tr{a.Rule, a.State, a.Key["endpoint"]})
	}
	t.Logf("alert transitions: %v", got)
	has := func(want tr) bool {
		for _, g := range got {
			if g == want {
				return true
			}
		}
		return false
	}
	for _, want := range []tr{
		{"errors-high", "firing", "/api/login"}, {"errors-high", "resolved", "/api/login"},
		{"latency-high", "firing", "/api/pay"},
		{"traffic-stopped", "firing", "/api/search"}, {"traffic-stopped", "resolved", "/api/search"},
	} {
		if !has(want) {
			t.Errorf("no %s %s alert for %s in 60s of demo", want.rule, want.state, want.endpoint)
		}
	}
	// Transitions alternate per rule and key: firing, resolved, firing...
	last := map[string]string{}
	for _, g := range got {
		k := g.rule + " " + g.endpoint
		if last[k] == g.state || last[k] == "" && g.state == "resolved" {
			t.Errorf("%s: %s after %q: a transition repeated or a resolution without firing", k, g.state, last[k])
		}
		last[k] = g.state
		if g.endpoint != map[string]string{"errors-high": "/api/login", "latency-high": "/api/pay", "traffic-stopped": "/api/search"}[g.rule] {
			t.Errorf("unexpected alert %v: only the injected incidents should fire", g)
		}
	}
}

// HH:MM:SS-HH:MM:SS  rollup  service endpoint  requests=N errors=N p50_latency_ms=X p99_latency_ms=Y
// (by_endpoint and by_endpoint_1m), or
// HH:MM:SS-HH:MM:SS  rollup  service class  requests=N p99_latency_ms=Y
// (by_status_class).
var (
	readableLine = regexp.MustCompile(`^(\d\d:\d\d:\d\d)-(\d\d:\d\d:\d\d)  (by_endpoint|by_endpoint_1m) +(\S+) (\S+) +requests=(\d+) errors=(\d+) ` +
		`p50_latency_ms=(\d+(?:\.\d{1,2})?) p99_latency_ms=(\d+(?:\.\d{1,2})?)$`)
	readableClassLine = regexp.MustCompile(`^(\d\d:\d\d:\d\d)-(\d\d:\d\d:\d\d)  by_status_class  (\S+) ([1-5]) +requests=(\d+) ` +
		`p99_latency_ms=(\d+(?:\.\d{1,2})?)$`)
)

// HH:MM:SS  ALERT firing   rule  summary
var readableAlert = regexp.MustCompile(`^\d\d:\d\d:\d\d  ALERT (firing  |resolved) \S+ +\S.*$`)

func checkReadable(t *testing.T, r eddyRun) {
	t.Helper()
	if len(r.lines()) == 0 {
		t.Fatalf("no result line in 20s\nstderr:\n%s", r.stderr)
	}
	rollups := bundledRollups(t)
	for i, line := range r.lines() {
		if readableAlert.MatchString(line) {
			continue
		}
		var rollup string
		var req, errs int
		var p50, p99 float64
		var start, end time.Time
		var err1, err2 error
		if m := readableClassLine.FindStringSubmatch(line); m != nil {
			rollup = rollupStatusClass
			start, err1 = time.Parse("15:04:05", m[1])
			end, err2 = time.Parse("15:04:05", m[2])
			req, _ = strconv.Atoi(m[5])
			p99, _ = strconv.ParseFloat(m[6], 64)
			p50 = p99
		} else if m := readableLine.FindStringSubmatch(line); m != nil {
			rollup = m[3]
			start, err1 = time.Parse("15:04:05", m[1])
			end, err2 = time.Parse("15:04:05", m[2])
			req, _ = strconv.Atoi(m[6])
			errs, _ = strconv.Atoi(m[7])
			p50, _ = strconv.ParseFloat(m[8], 64)
			p99, _ = strconv.ParseFloat(m[9], 64)
			if m[5] == "/healthz" {
				t.Errorf("line %d: /healthz is filtered out by the pipeline: %q", i+1, line)
			}
		} else {
			t.Errorf("line %d does not read \"HH:MM:SS-HH:MM:SS  rollup  service endpoint requests=N errors=N p50_latency_ms=X p99_latency_ms=Y\""+
				" nor \"HH:MM:SS-HH:MM:SS  by_status_class  service class requests=N p99_latency_ms=Y\": %q", i+1, line)
			continue
		}
		if err1 != nil || err2 != nil {
			t.Errorf("line %d: bad times: %q", i+1, line)
			continue
		}
		if d, want := (end.Sub(start)+24*time.Hour)%(24*time.Hour), rollups[rollup].Window.Size; d != want {
			t.Errorf("line %d: window of %s, want %s (%s): %q", i+1, d, want, rollup, line)
		}
		if req < 1 || errs > req || !(p50 > 0 && p50 <= p99) {
			t.Errorf("line %d: want requests >= 1, errors <= requests, 0 < p50 <= p99: %q", i+1, line)
		}
	}
}

var restoredRe = regexp.MustCompile(`msg="partition restored" .*partition=(\d+) .*from_scratch=(\w+) .*open_windows=(\d+)`)

func testDemoResume(t *testing.T) {
	dir := t.TempDir()

	// First run.
	start1 := time.Now()
	r1 := runEddy(t, 120*time.Second, "demo", "--duration", "25s", "--json", "--data-dir", dir)
	if r1.code != 0 {
		t.Fatalf("first demo exited %d after %s\nstdout:\n%s\nstderr:\n%s", r1.code, r1.took, r1.stdout, r1.stderr)
	}
	res1 := parseDemoJSON(t, "first run", r1)
	checkEndLine(t, r1, time.Time{})
	t.Logf("first run: %s, %d results", r1.took.Round(100*time.Millisecond), len(res1))
	if len(ofRollup(res1, rollupEndpoint)) == 0 {
		t.Fatalf("first run printed no result of %s in 25s\nstderr:\n%s", rollupEndpoint, r1.stderr)
	}
	if t.Failed() {
		t.FailNow()
	}

	// Second run, same data dir. At its default log level the demo says
	// nothing about restoring; at info it logs each partition's restore.
	start2 := time.Now()
	r2 := runEddy(t, 120*time.Second, "demo", "--duration", "20s", "--json", "--data-dir", dir, "--log-level", "info")
	if r2.code != 0 {
		t.Fatalf("second demo exited %d after %s\nstdout:\n%s\nstderr:\n%s", r2.code, r2.took, r2.stdout, r2.stderr)
	}
	res2 := parseDemoJSON(t, "second run", r2)
	checkEndLine(t, r2, start2)
	t.Logf("second run: %s, %d results", r2.took.Round(100*time.Millisecond), len(res2))
	if len(ofRollup(res2, rollupEndpoint)) == 0 {
		t.Fatalf("second run printed no result of %s in 20s\nstderr:\n%s", rollupEndpoint, r2.stderr)
	}
	if !strings.Contains(r2.stderr, "data in "+dir) {
		t.Errorf("second run does not say where its data is:\n%s", r2.stderr)
	}
	// It restored the state the first run left: every task from the local
	// store (not rebuilt from scratch), with the windows still open when
	// the first run stopped.
	restores := restoredRe.FindAllStringSubmatch(r2.stderr, -1)
	open := 0
	for _, m := range restores {
		if m[2] != "false" {
			t.Errorf("second run rebuilt partition %s from scratch: the first run's local state was not reused", m[1])
		}
		n, _ := strconv.Atoi(m[3])
		open += n
	}
	// One restore per partition (3) of each aggregation stage: one per
	// distinct key of the rollups.
	stages := map[string]bool{}
	for _, rs := range bundledRollups(t) {
		stages[rs.RepartitionTopic()] = true
	}
	if len(restores) != 3*len(stages) || open == 0 {
		t.Errorf("second run restored %d partitions (want %d: 3 for each of %d keys) with %d open windows (want some):\n%s",
			len(restores), 3*len(stages), len(stages), open, r2.stderr)
	}

	// The second run prints only windows after the first run's (of each
	// rollup): its printer starts at the output topics' end.
	last1 := map[string]time.Time{}
	seen := map[string]bool{}
	for _, r := range res1 {
		if seen[r.id()] {
			t.Errorf("first run printed window %s twice", r.id())
		}
		seen[r.id()] = true
		if r.start.After(last1[r.rollup]) {
			last1[r.rollup] = r.start
		}
	}
	first2 := ofRollup(res2, rollupEndpoint)[0].start
	for _, r := range res2 {
		if seen[r.id()] {
			t.Errorf("second run printed window %s again (first run printed it): %s", r.id(), r.line)
		}
		seen[r.id()] = true
		if !r.start.After(last1[r.rollup]) {
			t.Errorf("second run printed window %s, not after the first run's last window of %s %s", r.id(), r.rollup, last1[r.rollup].Format(time.RFC3339))
		}
		if r.rollup == rollupEndpoint && r.start.Before(first2) {
			first2 = r.start
		}
	}
	// Contiguous: the 10s window open when the first run stopped is the
	// second run's first, so no window is skipped across the restart.
	if want := last1[rollupEndpoint].Add(10 * time.Second); !first2.Equal(want) {
		t.Errorf("second run's first window starts at %s, want %s (right after the first run's last window): "+
			"windows were skipped across the restart", first2.Format(time.RFC3339), want.Format(time.RFC3339))
	}

	// The embedded Kafka's data persisted across the runs: read it here.
	in, outs, late := persisted(t, dir)
	var before, after int
	for _, e := range in {
		if e.produced < start2.UnixMilli() {
			before++
		} else {
			after++
		}
	}
	t.Logf("input topic: %d events from the first run, %d from the second; late for %s: %d, for %s: %d", before, after,
		rollupEndpoint, len(late[rollupEndpoint]), rollupStatusClass, len(late[rollupStatusClass]))
	if len(late[rollupEndpoint1m]) > 0 {
		t.Errorf("%d late records for the chained rollup %s: a chained rollup has none", len(late[rollupEndpoint1m]), rollupEndpoint1m)
	}
	if before == 0 || after == 0 {
		t.Fatalf("input topic holds %d events of the first run and %d of the second: the data dir did not persist", before, after)
	}
	// Every result on the output topic was printed, once.
	printed := map[string]bool{}
	for _, r := range append(append([]demoResult(nil), res1...), res2...) {
		printed[r.id()] = true
	}
	onTopic := map[string]bool{}
	for _, o := range outs {
		if onTopic[o.id()] {
			t.Errorf("output topic holds window %s twice", o.id())
		}
		onTopic[o.id()] = true
		if !printed[o.id()] {
			t.Errorf("window %s is on the output topic but neither run printed it: %s", o.id(), o.line)
		}
	}
	for id := range printed {
		if !onTopic[id] {
			t.Errorf("window %s was printed but is not on the output topic", id)
		}
	}

	// Every printed window holds exactly the events of its key and window
	// (computed here from the input topic), including the window open
	// across the restart: the second run resumed the first run's state,
	// neither losing nor double counting. Events produced over 30s after
	// their time are the generator's late ones: they go to the late topic
	// (or were not read yet when the demo stopped); out-of-order events
	// lag by under 3s, within the 5s grace.
	exp := map[string]*demoAgg{}
	// starting: produced in the first seconds of a run, while its tasks
	// wait for every input partition's first watermark (or its idle
	// timeout, 5s in the demo pipeline): until then stream time has not
	// moved, so no window has closed and a late event still counts.
	starting := func(produced int64) bool {
		for _, s := range []time.Time{start1, start2} {
			if produced >= s.UnixMilli() && produced < s.Add(10*time.Second).UnixMilli() {
				return true
			}
		}
		return false
	}
	lateEP := late[rollupEndpoint]
	for _, e := range in {
		if e.produced-e.TS <= 30_000 && late[rollupStatusClass][e.RequestID] {
			t.Errorf("event %s, produced %dms after its time (within the grace period), went to the late topic for %s", e.RequestID, e.produced-e.TS, rollupStatusClass)
		}
		if e.produced-e.TS > 30_000 {
			if lateEP[e.RequestID] {
				continue
			}
			if !starting(e.produced) {
				// Not on the late topic: not read before the demo stopped,
				// or counted (then the window check below fails).
				continue
			}
		}
		if lateEP[e.RequestID] {
			t.Errorf("event %s, produced %dms after its time (within the grace period), went to the late topic", e.RequestID, e.produced-e.TS)
		}
		if e.Endpoint == "/healthz" {
			continue
		}
		start := time.UnixMilli(e.TS - e.TS%10_000).UTC()
		id := demoResult{rollup: rollupEndpoint, service: e.Service, endpoint: e.Endpoint, start: start}.id()
		a := exp[id]
		if a == nil {
			a = &demoAgg{}
			exp[id] = a
		}
		a.requests++
		if e.Status >= 500 {
			a.errors++
		}
		a.lat = append(a.lat, e.LatencyMS)
	}
	// The printed results were checked against the output topic above;
	// check the topic's, which also holds any result emitted while no
	// printer ran.
	all := ofRollup(outs, rollupEndpoint)
	sort.Slice(all, func(i, j int) bool { return all[i].id() < all[j].id() })
	for _, r := range all {
		a := exp[r.id()]
		if a == nil {
			t.Errorf("window %s: no input event belongs to it: %s", r.id(), r.line)
			continue
		}
		if r.requests != a.requests || r.errors != a.errors {
			t.Errorf("window %s: requests=%v errors=%v, the input holds %v and %v", r.id(), r.requests, r.errors, a.requests, a.errors)
		}
		sort.Float64s(a.lat)
		lo, hi := a.lat[0], a.lat[len(a.lat)-1]
		for _, q := range []float64{r.p50, r.p99} {
			if q < lo*0.99 || q > hi*1.01 {
				t.Errorf("window %s: p50=%v p99=%v outside the latencies [%v, %v]", r.id(), r.p50, r.p99, lo, hi)
			}
		}
	}
	checkDemoMinutes(t, in, outs, exp, late)
	if t.Failed() {
		t.Logf("first run stdout:\n%s\nsecond run stdout:\n%s", r1.stdout, r2.stdout)
		for _, o := range outs {
			t.Logf("output topic: %s", o.line)
		}
		t.Logf("first run stderr:\n%s\nsecond run stderr:\n%s", r1.stderr, r2.stderr)
	}
}

// demoAgg is what a plain loop over the input says of one window.
type demoAgg struct {
	requests, errors float64
	lat              []float64
}

// checkDemoMinutes checks the minutes of the two 1-minute rollups on
// their topics against the input:
//   - by_endpoint_1m, chained: each minute holds exactly the events of the
//     six 10s windows of by_endpoint in it (tens: the plain loop's 10s
//     windows, by demoResult.id, each checked against by_endpoint's
//     results), its counts their sums, and its percentiles those of all
//     its events (within the sketch's 1%), not averages of the 10s ones.
//   - by_status_class: each minute counts every on-time event of its
//     service and status class, and no event that went to the late topic
//     for it; the generator's late events (over 30s behind) may count
//     while their minute is open.
func checkDemoMinutes(t *testing.T, in []demoInput, outs []demoResult, tens map[string]*demoAgg, late map[string]map[string]bool) {
	t.Helper()
	quantile := func(sorted []float64, q float64) (lo, hi float64) {
		r := q * float64(len(sorted)-1)
		return sorted[int(math.Floor(r))], sorted[int(math.Ceil(r))]
	}
	for _, r := range ofRollup(outs, rollupEndpoint1m) {
		var m demoAgg
		for i := range 6 {
			id := demoResult{rollup: rollupEndpoint, service: r.service, endpoint: r.endpoint, start: r.start.Add(time.Duration(i) * 10 * time.Second)}.id()
			if a := tens[id]; a != nil {
				m.requests += a.requests
				m.errors += a.errors
				m.lat = append(m.lat, a.lat...)
			}
		}
		if r.requests != m.requests || r.errors != m.errors {
			t.Errorf("minute %s: requests=%v errors=%v, its six 10s windows of %s hold %v and %v", r.id(), r.requests, r.errors, rollupEndpoint, m.requests, m.errors)
			continue
		}
		sort.Float64s(m.lat)
		for _, q := range []struct {
			name string
			q    float64
			got  float64
		}{{"p50", 0.5, r.p50}, {"p99", 0.99, r.p99}} {
			lo, hi := quantile(m.lat, q.q)
			if q.got < lo*0.99 || q.got > hi*1.01 {
				t.Errorf("minute %s: %s=%v, but the %s of its %d events is %v..%v (within 1%%)", r.id(), q.name, q.got, q.name, len(m.lat), lo, hi)
			}
		}
	}
	type class struct {
		service, class string
		start          time.Time
	}
	onTime, all := map[class]float64{}, map[class]float64{}
	for _, e := range in {
		if e.Endpoint == "/healthz" {
			continue
		}
		c := class{e.Service, strconv.Itoa(e.Status / 100), time.UnixMilli(e.TS - e.TS%60_000).UTC()}
		if e.produced-e.TS <= 30_000 {
			onTime[c]++
		}
		if !late[rollupStatusClass][e.RequestID] {
			all[c]++
		}
	}
	for _, r := range ofRollup(outs, rollupStatusClass) {
		c := class{r.service, r.key["status_class"], r.start}
		if r.requests < onTime[c] || r.requests > all[c] {
			t.Errorf("minute %s: requests=%v; the input holds %v on-time events of it and %v not late for %s", r.id(), r.requests, onTime[c], all[c], rollupStatusClass)
		}
	}
	t.Logf("checked %d minutes of %s and %d of %s against the input", len(ofRollup(outs, rollupEndpoint1m)), rollupEndpoint1m,
		len(ofRollup(outs, rollupStatusClass)), rollupStatusClass)
}

// syncBuffer is an io.Writer safe for the printer goroutine and the test.
// TestDemoPrinterAlertOrder: the demo's printer prints alert lines in time
// order though they arrive in partition order (here: the later alerts on
// partition 0, the earlier on partition 2, as after a resumed demo), and
// counts what it printed for the end-of-run line, telling absence alerts
// that started before the run (the demo's downtime) from the others.
func TestDemoPrinterAlertOrder(t *testing.T) {
	spec, err := topology.Parse(pipelines.HTTPRequests)
	if err != nil {
		t.Fatal(err)
	}
	first := spec.RollupSpecs()[0] // the rollup with the alerts
	brokers := kafkatest.Kfake(t, kfake.SeedTopics(3, demoTopics(spec)...))
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runStart := time.Now().Truncate(time.Second)
	tally := &demoTally{runStart: runStart}
	var out syncBuffer
	done := make(chan error, 1)
	go func() { done <- printResults(ctx, &out, brokers, spec, false, nil, tally) }()

	// Results until the printer shows one: it reads from the topics' end,
	// so the alerts below are produced once it is surely reading.
	result := `{"key":{"service":"s","endpoint":"/e"},"service":"s","endpoint":"/e","window_start":"2026-01-01T00:00:00Z","window_end":"2026-01-01T00:00:10Z","requests":1,"errors":0,"p50_latency_ms":1,"p99_latency_ms":1}`
	waitFor(t, 30*time.Second, "the printer shows a result", func() (bool, string) {
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: first.Output.Topic, Value: []byte(result)}).FirstErr(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
		return strings.Contains(out.String(), "requests=1"), out.String()
	})
	at := func(d time.Duration) string { return runStart.Add(d).UTC().Format(time.RFC3339) }
	alert := func(p int32, state, kind, key string, started, when time.Duration) *kgo.Record {
		return &kgo.Record{Topic: first.AlertsTopic(), Partition: p, Value: []byte(fmt.Sprintf(
			`{"rule":"r-%s","rule_kind":%q,"state":%q,"key":{"endpoint":%q},"started_at":%q,"at":%q,"summary":"%s %s"}`,
			key, kind, state, key, at(started), at(when), key, state))}
	}
	// Downtime absence alerts (fired in this run, started before it), the
	// resolution of an absence alert whose firing an earlier run printed
	// (d: a real incident of that run), and a threshold alert of this run,
	// spread so that neither partition order is time order.
	recs := []*kgo.Record{
		alert(0, "firing", "absence", "a", -30*time.Second, -30*time.Second),
		alert(0, "resolved", "absence", "d", -40*time.Second, 1*time.Second),
		alert(0, "resolved", "absence", "a", -30*time.Second, 3*time.Second),
		alert(2, "firing", "absence", "b", -20*time.Second, -20*time.Second),
		alert(2, "resolved", "threshold", "c", 1*time.Second, 2*time.Second),
		alert(2, "firing", "threshold", "c", 4*time.Second, 4*time.Second),
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	var lines []string
	waitFor(t, 30*time.Second, "every alert line printed", func() (bool, string) {
		lines = lines[:0]
		for _, l := range strings.Split(out.String(), "\n") {
			if strings.Contains(l, "ALERT") {
				lines = append(lines, l)
			}
		}
		return len(lines) == len(recs), out.String()
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("printer: %v", err)
	}
	var got []string
	for _, l := range lines {
		f := strings.Fields(l)
		got = append(got, f[len(f)-2]+" "+f[len(f)-1])
	}
	want := []string{"a firing", "b firing", "d resolved", "c resolved", "a resolved", "c firing"}
	if !slices.Equal(got, want) {
		t.Errorf("alert lines in order %q, want time order %q:\n%s", got, want, strings.Join(lines, "\n"))
	}
	if tally.firing != 3 || tally.resolved != 3 || tally.downtimeFiring != 2 || tally.downtimeResolved != 1 || tally.results == 0 {
		t.Errorf("tally %+v, want 3 firing, 3 resolved, of which 2 firing and 1 resolved for the downtime, and some results", *tally)
	}
	line := tally.summary(spec.App, 30*time.Second, "/tmp/d")
	for _, want := range []string{`ran pipeline "http-stats" for 30s`, "6 alerts (3 firing, 3 resolved)", "data stays in /tmp/d",
		"3 of the alerts (2 firing, 1 resolved) are absence alerts for the time the demo was not running"} {
		if !strings.Contains(line, want) {
			t.Errorf("end-of-run line lacks %q:\n%s", want, line)
		}
	}
}

// demoTopics are the output and alerts topics of every rollup of spec.
func demoTopics(spec *topology.Spec) []string {
	var out []string
	for _, rs := range spec.RollupSpecs() {
		out = append(out, rs.Output.Topic)
		if t := rs.AlertsTopic(); t != "" {
			out = append(out, t)
		}
	}
	return out
}

// TestDemoPrinterRollups: the printer prints the results of every rollup
// of the bundled pipeline, each line naming its rollup (a column after
// the window; "rollup" with --json), with the rollup's key and aggregates.
func TestDemoPrinterRollups(t *testing.T) {
	t.Parallel()
	spec, err := topology.Parse(pipelines.HTTPRequests)
	if err != nil {
		t.Fatal(err)
	}
	brokers := kafkatest.Kfake(t, kfake.SeedTopics(1, demoTopics(spec)...))
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	// One result per rollup, as the pipeline writes them: the key object,
	// the key fields, the window and each aggregate.
	results := map[string]string{}
	for i, rs := range spec.RollupSpecs() {
		m := map[string]any{"window_start": "2026-01-01T00:00:00Z", "window_end": time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Add(rs.Window.Size).Format(time.RFC3339)}
		key := map[string]any{}
		for _, f := range rs.Key {
			key[f], m[f] = f+"-v", f+"-v"
		}
		m["key"] = key
		for j, a := range rs.Aggregates {
			m[a.Name] = float64(100*i + j + 1)
		}
		b, _ := json.Marshal(m)
		results[rs.RollupName] = string(b)
	}
	for _, asJSON := range []bool{false, true} {
		t.Run(fmt.Sprint("json=", asJSON), func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var out syncBuffer
			done := make(chan error, 1)
			go func() { done <- printResults(ctx, &out, brokers, spec, asJSON, nil, &demoTally{runStart: time.Now()}) }()
			// The printer reads from the topics' end: produce until every
			// rollup's result is printed.
			waitFor(t, 30*time.Second, "a result of every rollup printed", func() (bool, string) {
				for _, rs := range spec.RollupSpecs() {
					if err := cl.ProduceSync(ctx, &kgo.Record{Topic: rs.Output.Topic, Value: []byte(results[rs.RollupName])}).FirstErr(); err != nil {
						t.Fatal(err)
					}
				}
				time.Sleep(100 * time.Millisecond)
				text := out.String()
				for _, rs := range spec.RollupSpecs() {
					if !strings.Contains(text, rs.RollupName+"  ") && !strings.Contains(text, `"rollup":"`+rs.RollupName+`"`) {
						return false, text
					}
				}
				return true, text
			})
			cancel()
			if err := <-done; err != nil {
				t.Fatalf("printer: %v", err)
			}
			for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
				var rollup string
				if asJSON {
					var m map[string]any
					if err := json.Unmarshal([]byte(line), &m); err != nil {
						t.Fatalf("not JSON: %q", line)
					}
					rollup, _ = m["rollup"].(string)
				} else if f := strings.Fields(line); len(f) > 1 {
					rollup = f[1]
				}
				var rs *topology.Spec
				idx := 0
				for i, r := range spec.RollupSpecs() {
					if r.RollupName == rollup {
						rs, idx = r, i
					}
				}
				if rs == nil {
					t.Errorf("line names no rollup: %q", line)
					continue
				}
				for j, a := range rs.Aggregates {
					want := fmt.Sprintf("%s=%d", a.Name, 100*idx+j+1)
					if asJSON {
						want = fmt.Sprintf("%q:%d", a.Name, 100*idx+j+1)
					}
					if !strings.Contains(line, want) {
						t.Errorf("line of %s lacks %s: %q", rollup, want, line)
					}
				}
				for _, f := range rs.Key {
					if !strings.Contains(line, f+"-v") {
						t.Errorf("line of %s lacks its key field %s: %q", rollup, f, line)
					}
				}
			}
		})
	}
}

var endLineRE = regexp.MustCompile(`^eddy demo: ran pipeline "http-stats" for \d+s: printed (\d+) results and (\d+) alerts \((\d+) firing, (\d+) resolved\); data stays in (\S+) `)

// checkEndLine: a demo that stopped (--duration) ends its stderr with one
// line saying what it ran, how many results and alerts it printed (counted
// here from stdout) and where its data stays. With --json and a run start,
// the line also says how many absence alerts were for the time the demo
// was down (started before the run), and says nothing of it when none.
func checkEndLine(t *testing.T, r eddyRun, runStart time.Time) {
	t.Helper()
	lines := strings.Split(strings.TrimRight(r.stderr, "\n"), "\n")
	last := lines[len(lines)-1]
	m := endLineRE.FindStringSubmatch(last)
	if m == nil {
		t.Errorf("the demo's last line does not say what it ran, printed and kept:\n%s", last)
		return
	}
	var results, firing, resolved, downtime int
	fired := map[string]bool{}
	for _, l := range r.lines() {
		var a struct {
			Kind, State, Rule string
			RuleKind          string    `json:"rule_kind"`
			StartedAt         time.Time `json:"started_at"`
			Key               map[string]string
		}
		if strings.HasPrefix(l, "{") {
			_ = json.Unmarshal([]byte(l), &a)
		} else if readableAlert.MatchString(l) {
			a.Kind, a.State = "alert", strings.Fields(l)[2]
		} else {
			a.Kind = "result"
		}
		switch {
		case a.Kind == "result":
			results++
		case a.State == "firing":
			firing++
		default:
			resolved++
		}
		// Absence alerts firing in this run for a silence that began
		// before it, and their resolutions.
		if a.Kind == "alert" && a.RuleKind == "absence" && !runStart.IsZero() && a.StartedAt.Before(runStart) {
			id := fmt.Sprint(a.Rule, a.Key)
			if a.State == "firing" {
				fired[id] = true
				downtime++
			} else if fired[id] {
				downtime++
			}
		}
	}
	want := []string{strconv.Itoa(results), strconv.Itoa(firing + resolved), strconv.Itoa(firing), strconv.Itoa(resolved)}
	if !slices.Equal(m[1:5], want) {
		t.Errorf("last line counts %v (results, alerts, firing, resolved), stdout has %v:\n%s", m[1:5], want, last)
	}
	says := strings.Contains(last, "for the time the demo was not running")
	if runStart.IsZero() {
		return
	}
	t.Logf("%d absence alerts for the downtime: %s", downtime, last)
	if says != (downtime > 0) || downtime > 0 && !strings.Contains(last, fmt.Sprintf("; %d of the alerts", downtime)) {
		t.Errorf("%d absence alerts started before the run, but the last line says:\n%s", downtime, last)
	}
}
