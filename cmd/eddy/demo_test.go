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
	service, endpoint string
	start, end        time.Time
	requests, errors  float64
	p50, p99          float64
	line              string
}

func (r demoResult) id() string {
	return fmt.Sprintf("%s|%s@%s", r.service, r.endpoint, r.start.Format(time.RFC3339))
}

// parseDemoJSON checks every stdout line of a --json run and returns the
// results.
func parseDemoJSON(t *testing.T, run string, r eddyRun) []demoResult {
	t.Helper()
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
		key, ok := m["key"].(map[string]any)
		if !ok {
			fail("key is not an object")
			continue
		}
		d.service, _ = key["service"].(string)
		d.endpoint, _ = key["endpoint"].(string)
		if d.service == "" || d.endpoint == "" {
			fail("key lacks service or endpoint")
		}
		// Each key field is also a field of the result (docs/pipeline-spec.md).
		if m["service"] != key["service"] || m["endpoint"] != key["endpoint"] {
			fail("service %v and endpoint %v fields differ from the key's", m["service"], m["endpoint"])
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
		if d.end.Sub(d.start) != 10*time.Second {
			fail("window_end - window_start = %s, want 10s", d.end.Sub(d.start))
		}
		if d.start.UnixMilli()%10_000 != 0 {
			fail("window_start is not aligned to 10s")
		}
		for _, f := range []struct {
			name string
			to   *float64
		}{{"requests", &d.requests}, {"errors", &d.errors}, {"p50_latency_ms", &d.p50}, {"p99_latency_ms", &d.p99}} {
			v, ok := m[f.name].(float64)
			if !ok {
				fail("%s = %v (%T), want a number", f.name, m[f.name], m[f.name])
			}
			*f.to = v
		}
		if d.requests < 1 || d.requests != math.Trunc(d.requests) {
			fail("requests = %v, want a positive integer", d.requests)
		}
		if d.errors < 0 || d.errors > d.requests || d.errors != math.Trunc(d.errors) {
			fail("errors = %v, want an integer in [0, requests=%v]", d.errors, d.requests)
		}
		if !(d.p50 > 0 && d.p50 <= d.p99) {
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
// test, and reads the input, output and late topics as they were left.
func persisted(t *testing.T, dataDir string) (in []demoInput, outs []demoResult, late map[string]bool) {
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
	for _, r := range kafkatest.ReadAll(t, brokers, "http-stats-10s", true) {
		var m map[string]any
		if err := json.Unmarshal(r.Value, &m); err != nil {
			t.Fatalf("output record is not JSON: %v: %s", err, r.Value)
		}
		m["kind"] = "result"
		b, _ := json.Marshal(m)
		lines = append(lines, string(b))
	}
	outs = parseDemoJSON(t, "output topic", eddyRun{stdout: strings.Join(lines, "\n")})
	late = map[string]bool{}
	for _, r := range kafkatest.ReadAll(t, brokers, "http-stats-late", true) {
		var e demoInput
		if err := json.Unmarshal(r.Value, &e); err != nil {
			t.Fatalf("late record is not a generated event: %v: %s", err, r.Value)
		}
		late[e.RequestID] = true
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
	if res := parseDemoJSON(t, "avro run", r); len(res) == 0 {
		t.Fatalf("no result in 25s\nstderr:\n%s", r.stderr)
	}
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.DataDir(filepath.Join(dir, "kafka")))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, topic := range []string{"http-requests", "http-stats-10s"} {
		recs := kafkatest.ReadAll(t, c.ListenAddrs(), topic, true)
		if len(recs) == 0 {
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
	for _, s := range []string{"http-requests-value", "http-stats-10s-value", "http-stats-10s-key", "http-stats-alerts-value"} {
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

// HH:MM:SS-HH:MM:SS  service endpoint  requests=N errors=N p50_latency_ms=X p99_latency_ms=Y
var readableLine = regexp.MustCompile(`^(\d\d:\d\d:\d\d)-(\d\d:\d\d:\d\d)  (\S+) (\S+) +requests=(\d+) errors=(\d+) ` +
	`p50_latency_ms=(\d+(?:\.\d{1,2})?) p99_latency_ms=(\d+(?:\.\d{1,2})?)$`)

// HH:MM:SS  ALERT firing   rule  summary
var readableAlert = regexp.MustCompile(`^\d\d:\d\d:\d\d  ALERT (firing  |resolved) \S+ +\S.*$`)

func checkReadable(t *testing.T, r eddyRun) {
	t.Helper()
	if len(r.lines()) == 0 {
		t.Fatalf("no result line in 20s\nstderr:\n%s", r.stderr)
	}
	for i, line := range r.lines() {
		if readableAlert.MatchString(line) {
			continue
		}
		m := readableLine.FindStringSubmatch(line)
		if m == nil {
			t.Errorf("line %d does not read \"HH:MM:SS-HH:MM:SS  service endpoint requests=N errors=N p50_latency_ms=X p99_latency_ms=Y\": %q", i+1, line)
			continue
		}
		start, err1 := time.Parse("15:04:05", m[1])
		end, err2 := time.Parse("15:04:05", m[2])
		if err1 != nil || err2 != nil {
			t.Errorf("line %d: bad times: %q", i+1, line)
			continue
		}
		if d := (end.Sub(start) + 24*time.Hour) % (24 * time.Hour); d != 10*time.Second {
			t.Errorf("line %d: window of %s, want 10s: %q", i+1, d, line)
		}
		req, _ := strconv.Atoi(m[5])
		errs, _ := strconv.Atoi(m[6])
		p50, _ := strconv.ParseFloat(m[7], 64)
		p99, _ := strconv.ParseFloat(m[8], 64)
		if req < 1 || errs > req || !(p50 > 0 && p50 <= p99) {
			t.Errorf("line %d: want requests >= 1, errors <= requests, 0 < p50 <= p99: %q", i+1, line)
		}
		if m[4] == "/healthz" {
			t.Errorf("line %d: /healthz is filtered out by the pipeline: %q", i+1, line)
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
	if len(res1) == 0 {
		t.Fatalf("first run printed no result in 25s\nstderr:\n%s", r1.stderr)
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
	if len(res2) == 0 {
		t.Fatalf("second run printed no result in 20s\nstderr:\n%s", r2.stderr)
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
	if len(restores) != 3 || open == 0 {
		t.Errorf("second run restored %d partitions (want 3) with %d open windows (want some):\n%s", len(restores), open, r2.stderr)
	}

	// The second run prints only windows after the first run's: its
	// printer starts at the output topic's end.
	var last1 time.Time
	seen := map[string]bool{}
	for _, r := range res1 {
		if seen[r.id()] {
			t.Errorf("first run printed window %s twice", r.id())
		}
		seen[r.id()] = true
		if r.start.After(last1) {
			last1 = r.start
		}
	}
	first2 := res2[0].start
	for _, r := range res2 {
		if seen[r.id()] {
			t.Errorf("second run printed window %s again (first run printed it): %s", r.id(), r.line)
		}
		seen[r.id()] = true
		if !r.start.After(last1) {
			t.Errorf("second run printed window %s, not after the first run's last window %s", r.id(), last1.Format(time.RFC3339))
		}
		if r.start.Before(first2) {
			first2 = r.start
		}
	}
	// Contiguous: the window open when the first run stopped is the second
	// run's first, so no window is skipped across the restart.
	if want := last1.Add(10 * time.Second); !first2.Equal(want) {
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
	t.Logf("input topic: %d events from the first run, %d from the second; %d late", before, after, len(late))
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
	type agg struct {
		requests, errors float64
		lat              []float64
	}
	exp := map[string]*agg{}
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
	for _, e := range in {
		if e.produced-e.TS > 30_000 {
			if late[e.RequestID] {
				continue
			}
			if !starting(e.produced) {
				// Not on the late topic: not read before the demo stopped,
				// or counted (then the window check below fails).
				continue
			}
		}
		if late[e.RequestID] {
			t.Errorf("event %s, produced %dms after its time (within the grace period), went to the late topic", e.RequestID, e.produced-e.TS)
		}
		if e.Endpoint == "/healthz" {
			continue
		}
		start := time.UnixMilli(e.TS - e.TS%10_000).UTC()
		id := demoResult{service: e.Service, endpoint: e.Endpoint, start: start}.id()
		a := exp[id]
		if a == nil {
			a = &agg{}
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
	all := append([]demoResult(nil), outs...)
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
	if t.Failed() {
		t.Logf("first run stdout:\n%s\nsecond run stdout:\n%s", r1.stdout, r2.stdout)
		for _, o := range outs {
			t.Logf("output topic: %s", o.line)
		}
		t.Logf("first run stderr:\n%s\nsecond run stderr:\n%s", r1.stderr, r2.stderr)
	}
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
	brokers := kafkatest.Kfake(t, kfake.SeedTopics(3, spec.Output.Topic, spec.AlertsTopic()))
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
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: spec.Output.Topic, Value: []byte(result)}).FirstErr(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
		return strings.Contains(out.String(), "requests=1"), out.String()
	})
	at := func(d time.Duration) string { return runStart.Add(d).UTC().Format(time.RFC3339) }
	alert := func(p int32, state, kind, key string, started, when time.Duration) *kgo.Record {
		return &kgo.Record{Topic: spec.AlertsTopic(), Partition: p, Value: []byte(fmt.Sprintf(
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
