package engine

// Tests of the alert rules on the harness of task_test.go: records go
// through the same steps as in App (onRecord, aggregate, closeWindows with
// onWindow, checkDue), the wall clock is injected, and every published
// transition is collected in h.alerts.

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/eddy-streams/eddy/state"
	"github.com/eddy-streams/eddy/topology"
)

const alertBase = `app: alerting
source: {topics: [requests]}
time: {field: ts}
key: [endpoint]
window: {type: tumbling, size: 10s}
aggregates:
  - {name: requests, op: count}
  - {name: errors, op: count, where: 'status >= 500'}
  - {name: total, op: sum, field: v}
output: {topic: out}
idle_timeout: 5s
`

// transitions renders h.alerts as "rule state endpoint at" lines.
func transitions(h *harness) []string {
	var out []string
	for _, a := range h.alerts {
		at, _ := time.Parse(timeLayout, a.At)
		out = append(out, fmt.Sprintf("%s %s %s %s", a.Rule, a.State, a.Key["endpoint"], fmtClock(at.UnixMilli())))
	}
	return out
}

func wantTransitions(t *testing.T, h *harness, want ...string) {
	t.Helper()
	got := transitions(h)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("alert transitions:\n  got  %q\n  want %q", got, want)
	}
}

// window feeds one window [start, start+10s) of endpoint with n requests of
// which errs fail.
func (h *harness) window(endpoint string, start int64, n, errs int) {
	h.tb.Helper()
	for i := range n {
		status := 200.0
		if i < errs {
			status = 500
		}
		ts := start + int64(i)*10_000/int64(n)
		if err := h.record(map[string]any{"endpoint": endpoint, "status": status, "v": 1.0}, ts); err != nil {
			h.tb.Fatal(err)
		}
	}
}

func clock(s string) int64 {
	ms, err := parseClock(s)
	if err != nil {
		panic(err)
	}
	return ms
}

func TestAlertThresholdForAndResolve(t *testing.T) {
	h := mustHarness(t, alertBase+`alerts:
  rules:
    - name: errors-high
      kind: threshold
      condition: errors > 5
      for_windows: 2
      resolve_windows: 2
`)
	// Per window of /a: errors 10, 3, 10, 10 (fires at the close of the
	// 4th), 10, 2, 10 (one good window is not enough), 2, 2 (resolves).
	errs := []int{10, 3, 10, 10, 10, 2, 10, 2, 2}
	start := clock("12:00:00")
	for i, e := range errs {
		h.window("/a", start+int64(i)*10_000, 20, e)
	}
	h.window("/b", start+int64(len(errs))*10_000, 1, 0) // closes /a's last window
	wantTransitions(t, h,
		"errors-high firing /a 12:00:40",
		"errors-high resolved /a 12:01:30",
	)
	a := h.alerts[0]
	if a.Value == nil || *a.Value != 10 || a.Threshold == nil || *a.Threshold != 5 {
		t.Errorf("firing alert value %v threshold %v, want 10 and 5", a.Value, a.Threshold)
	}
	if *a.WindowStart != "2025-06-02T12:00:30.000Z" || a.Severity != "warning" || a.RuleKind != "threshold" {
		t.Errorf("firing alert %+v", a)
	}
	if r := h.alerts[1]; r.StartedAt != "2025-06-02T12:00:40.000Z" {
		t.Errorf("resolved alert started_at %s, want when it fired (12:00:40)", r.StartedAt)
	}
	if !strings.Contains(a.Summary, "errors-high firing for endpoint=/a") {
		t.Errorf("default summary %q", a.Summary)
	}
}

// Flapping input: a condition that alternates never holds for two windows
// in a row, so nothing fires; once fired, alternating does not resolve it
// with resolve_windows 3.
func TestAlertThresholdFlapping(t *testing.T) {
	h := mustHarness(t, alertBase+`alerts:
  rules:
    - name: errors-high
      kind: threshold
      condition: errors > 5
      for_windows: 2
      resolve_windows: 3
`)
	start := clock("12:00:00")
	pattern := "TFTFTFTF" + "TT" + "FTFTFTFT" + "FFF" + "T"
	for i, c := range pattern {
		e := 0
		if c == 'T' {
			e = 10
		}
		h.window("/a", start+int64(i)*10_000, 20, e)
	}
	h.window("/b", start+int64(len(pattern))*10_000+20_000, 1, 0)
	// Fires at the close of the second T of "TT" (window 9, [12:01:30,
	// 12:01:40)); resolves after "FFF" (windows 18-20, closing at 12:03:30).
	wantTransitions(t, h,
		"errors-high firing /a 12:01:40",
		"errors-high resolved /a 12:03:30",
	)
}

// A firing key that stops receiving records resolves once resolve_windows
// empty windows have closed: while other keys move stream time, and with no
// input at all (idle timeout, wall clock).
func TestAlertThresholdResolvesWhenKeyGoesQuiet(t *testing.T) {
	spec := alertBase + `alerts:
  rules:
    - name: errors-high
      kind: threshold
      condition: errors > 5
      resolve_windows: 2
`
	start := clock("12:00:00")
	t.Run("other keys", func(t *testing.T) {
		h := mustHarness(t, spec)
		h.window("/a", start, 20, 10)
		for i := 1; i <= 4; i++ {
			h.window("/b", start+int64(i)*10_000, 2, 0)
		}
		if err := h.advanceWall(0); err != nil { // App punctuates after every poll
			t.Fatal(err)
		}
		// /a's empty windows [12:00:10,20) and [12:00:20,30) close at
		// 12:00:20 and 12:00:30.
		wantTransitions(t, h, "errors-high firing /a 12:00:10", "errors-high resolved /a 12:00:30")
	})
	t.Run("no input at all", func(t *testing.T) {
		h := mustHarness(t, spec)
		h.window("/a", start, 20, 10)
		h.window("/b", start+10_000, 1, 0) // closes /a's window: fires
		wantTransitions(t, h, "errors-high firing /a 12:00:10")
		// No more records. After the idle timeout, stream time follows
		// the wall clock.
		for range 10 {
			if err := h.advanceWall(5 * time.Second); err != nil {
				t.Fatal(err)
			}
		}
		wantTransitions(t, h, "errors-high firing /a 12:00:10", "errors-high resolved /a 12:00:30")
	})
}

func TestAlertAbsence(t *testing.T) {
	spec := alertBase + `alerts:
  rules:
    - name: traffic-stopped
      kind: absence
      for: 30s
      forget_after: 2m
`
	start := clock("12:00:00")
	t.Run("other keys move stream time", func(t *testing.T) {
		h := mustHarness(t, spec)
		h.window("/a", start, 5, 0) // last /a record at 12:00:08
		for i := 1; i <= 5; i++ {
			h.window("/b", start+int64(i)*10_000, 2, 0)
		}
		wantTransitions(t, h, "traffic-stopped firing /a 12:00:38")
		h.window("/a", start+60_000, 1, 0)
		wantTransitions(t, h, "traffic-stopped firing /a 12:00:38", "traffic-stopped resolved /a 12:01:00")
		if a := h.alerts[1]; a.StartedAt != "2025-06-02T12:00:38.000Z" {
			t.Errorf("resolved started_at %s", a.StartedAt)
		}
	})
	t.Run("no further input at all", func(t *testing.T) {
		h := mustHarness(t, spec)
		h.window("/a", start, 5, 0)
		h.window("/b", start+10_000, 1, 0) // stream time 12:00:10
		// Nothing more arrives. idle_timeout 5s: after it, stream time
		// moves with the wall clock from the last arrival.
		for range 8 {
			if err := h.advanceWall(5 * time.Second); err != nil {
				t.Fatal(err)
			}
		}
		wantTransitions(t, h, "traffic-stopped firing /a 12:00:38", "traffic-stopped firing /b 12:00:40")
		// Past forget_after both are forgotten: resolved, state deleted.
		for range 30 {
			if err := h.advanceWall(5 * time.Second); err != nil {
				t.Fatal(err)
			}
		}
		wantTransitions(t, h,
			"traffic-stopped firing /a 12:00:38", "traffic-stopped firing /b 12:00:40",
			"traffic-stopped resolved /a 12:02:08", "traffic-stopped resolved /b 12:02:10")
		if n := len(h.t.alerts.Keys()); n != 0 {
			t.Errorf("%d absence states kept after forget_after, want 0", n)
		}
	})
}

// Alert state is committed with the windows and survives a restart: a
// firing alert is not fired again, and resolves after the restart.
func TestAlertStateSurvivesRestart(t *testing.T) {
	h := mustHarness(t, alertBase+`alerts:
  rules:
    - name: errors-high
      kind: threshold
      condition: errors > 5
    - name: traffic-stopped
      kind: absence
      for: 30s
`)
	start := clock("12:00:00")
	h.window("/a", start, 20, 10)
	h.window("/c", start, 1, 0)
	h.window("/a", start+10_000, 20, 10) // closes the first: fires
	for i := 2; i <= 4; i++ {
		h.window("/a", start+int64(i)*10_000, 20, 10)
	}
	// /c is silent since 12:00:00: fires at 12:00:30.
	wantTransitions(t, h, "errors-high firing /a 12:00:10", "traffic-stopped firing /c 12:00:30")
	if err := h.commit(); err != nil {
		t.Fatal(err)
	}
	if err := h.restart(); err != nil {
		t.Fatal(err)
	}
	if n := len(h.t.alerts.Keys()); n != 3 {
		t.Errorf("restored %d alert states, want 3 (errors-high /a, absence /a and /c)", n)
	}
	h.window("/a", start+50_000, 20, 10) // still firing: nothing new
	h.window("/a", start+60_000, 20, 0)  // closes 12:00:50: still bad
	h.window("/c", start+70_000, 1, 0)   // closes 12:01:00 (good): resolves; /c back
	wantTransitions(t, h,
		"errors-high firing /a 12:00:10", "traffic-stopped firing /c 12:00:30",
		"traffic-stopped resolved /c 12:01:10", "errors-high resolved /a 12:01:10")
}

func TestAlertDeviationEWMA(t *testing.T) {
	h := mustHarness(t, alertBase+`alerts:
  rules:
    - name: volume
      kind: deviation
      value: requests
      stddevs: 3
      min_history: 20
`)
	start := clock("12:00:00")
	n := []int{10, 40} // a spike before min_history: not armed
	for i := 0; i < 30; i++ {
		n = append(n, 10+i%3) // 10, 11, 12, ...
	}
	n = append(n, 100, 11, 10, 12, 11)
	for i, c := range n {
		h.window("/a", start+int64(i)*10_000, c, 0)
	}
	h.window("/b", start+int64(len(n))*10_000, 1, 0)
	if len(h.alerts) != 2 {
		t.Fatalf("transitions %q, want firing and resolved", transitions(h))
	}
	f, r := h.alerts[0], h.alerts[1]
	if f.State != "firing" || *f.Value != 100 || f.Baseline == nil || f.StdDev == nil {
		t.Errorf("firing: %+v", f)
	}
	// The spike is the 33rd window ([12:05:20, 12:05:30)).
	if f.At != "2025-06-02T12:05:30.000Z" || r.State != "resolved" || r.At != "2025-06-02T12:05:40.000Z" {
		t.Errorf("firing at %s, resolved %s at %s; want 12:05:30 and 12:05:40", f.At, r.State, r.At)
	}
	if *f.Baseline < 10 || *f.Baseline > 13 {
		t.Errorf("baseline %v, want near the normal 10-12 (the early spike has decayed)", *f.Baseline)
	}
}

// The seasonal baseline learns each time of day separately: a spike at
// 09:10 every day is normal at 09:10 and abnormal at 15:00.
func TestAlertDeviationSeasonal(t *testing.T) {
	h := mustHarness(t, `app: alerting
source: {topics: [requests]}
time: {field: ts}
key: [endpoint]
window: {type: tumbling, size: 10m}
aggregates:
  - {name: total, op: sum, field: v}
output: {topic: out}
alerts:
  rules:
    - name: unusual-load
      kind: deviation
      value: total
      baseline: seasonal
      direction: both
      min_history: 3
      stddevs: 4
`)
	day0 := clock("00:00:00") - 5*24*3600_000
	value := func(day, slot int) float64 {
		noise := float64((day*7+slot*3)%5) * 2 // 0..8, deterministic
		if slot == 55 {                        // 09:10
			return 1000 + noise*5
		}
		return 100 + noise
	}
	feed := func(day, slot int, v float64) {
		ts := day0 + int64(day)*24*3600_000 + int64(slot)*600_000
		if err := h.record(map[string]any{"endpoint": "/a", "v": v}, ts); err != nil {
			t.Fatal(err)
		}
	}
	for day := range 5 {
		for slot := range 144 {
			feed(day, slot, value(day, slot))
		}
	}
	if len(h.alerts) != 0 {
		t.Fatalf("alerts while learning the daily pattern: %q", transitions(h))
	}
	// Day 6: the usual 09:10 spike, then the same spike at 15:00.
	for slot := 0; slot < 144; slot++ {
		v := value(5, slot)
		if slot == 90 { // 15:00
			v = 1000
		}
		feed(5, slot, v)
	}
	feed(6, 0, 100)
	got := transitions(h)
	want := []string{
		"unusual-load firing /a 15:10:00",
		"unusual-load resolved /a 15:20:00",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("transitions %q, want %q (the 09:10 spike is normal)", got, want)
	}
}

func TestAlertSummaryTemplateAndEncoding(t *testing.T) {
	h := mustHarness(t, alertBase+`alerts:
  topic: my-alerts
  rules:
    - name: errors-high
      kind: threshold
      severity: critical
      labels: {team: web}
      condition: errors > 5 && requests >= 10
      summary: '{{.endpoint}}: {{printf "%.0f" .errors}} errors of {{.requests}} ({{.state}})'
      runbook_url: https://runbooks.example/errors
`)
	start := clock("12:00:00")
	h.window("/a", start, 10, 7)
	h.window("/a", start+10_000, 10, 0)
	h.window("/b", start+20_000, 1, 0)
	if len(h.alerts) != 2 {
		t.Fatalf("transitions %q", transitions(h))
	}
	a := h.alerts[0]
	if a.Summary != "/a: 7 errors of 10 (firing)" {
		t.Errorf("summary %q", a.Summary)
	}
	if a.Labels["team"] != "web" || a.Severity != "critical" || a.RunbookURL == nil || *a.Value != 7 || *a.Threshold != 5 {
		t.Errorf("alert %+v", a)
	}
	if h.p.spec.AlertsTopic() != "my-alerts" {
		t.Errorf("alerts topic %q", h.p.spec.AlertsTopic())
	}
}

func TestAlertSpecErrors(t *testing.T) {
	for _, tc := range []struct{ rules, want string }{
		{"- {name: a, kind: threshold}", "alerts.rules[0].condition: must be set"},
		{"- {name: a, kind: threshold, condition: 'erors > 1'}", "alerts.rules[0].condition"},
		{"- {name: a, kind: absence}", "alerts.rules[0].for: must be set"},
		{"- {name: a, kind: absence, for: 1m, forget_after: 30s}", "alerts.rules[0].forget_after"},
		{"- {name: a, kind: deviation}", "alerts.rules[0].value: must name the aggregate"},
		{"- {name: a, kind: deviation, value: total, baseline: weekly}", `alerts.rules[0].baseline: "weekly" is not ewma or seasonal`},
		{"- {name: a, kind: deviation, value: total, baseline: seasonal, bucket: 7m}", "alerts.rules[0].bucket"},
		{"- {name: a, kind: threshold, condition: 'errors > 1', for: 1m}", "alerts.rules[0].for: is not used by threshold rules"},
		{"- {name: a, kind: threshold, condition: 'errors > 1'}\n    - {name: a, kind: absence, for: 1m}", `alerts.rules[1].name: "a" is also the name`},
		{"- {name: a, kind: page}", `alerts.rules[0].kind: "page" is not threshold or absence or deviation`},
		{"- {name: a, kind: threshold, condition: 'errors > 1', summary: '{{.x'}", "alerts.rules[0].summary: is not a valid template"},
		{"- {name: a, kind: threshold, condition: 'errors > 1', value: nope}", `alerts.rules[0].value: "nope" is not an aggregate`},
	} {
		_, err := topology.Parse([]byte(alertBase + "alerts:\n  rules:\n    " + tc.rules + "\n"))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("rules %s:\n  got  %v\n  want an error containing %q", tc.rules, err, tc.want)
		}
	}
}

// The alert record shown in docs/alerting.md has exactly the fields eddy
// writes.
func TestAlertingDocRecord(t *testing.T) {
	doc, err := os.ReadFile("../../docs/alerting.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(doc), "```json\n")
	block, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 {
		t.Fatal("docs/alerting.md has no ```json block")
	}
	var shown map[string]any
	if err := json.Unmarshal([]byte(block), &shown); err != nil {
		t.Fatalf("the JSON example does not parse: %v", err)
	}
	b, _ := json.Marshal(Alert{})
	var real map[string]any
	_ = json.Unmarshal(b, &real)
	if got, want := slices.Sorted(maps.Keys(shown)), slices.Sorted(maps.Keys(real)); !slices.Equal(got, want) {
		t.Errorf("documented fields %v, eddy writes %v", got, want)
	}
}

// A deviation rule forgets the baseline of a key that has had no window
// for forget_after, so state stays bounded as keys come and go.
func TestAlertDeviationForgetsQuietKeys(t *testing.T) {
	h := mustHarness(t, alertBase+`alerts:
  rules:
    - {name: volume, kind: deviation, value: requests, min_history: 3, forget_after: 1m}
`)
	start := clock("12:00:00")
	for i := range 5 {
		h.window("/a", start+int64(i)*10_000, 5, 0)
	}
	if n := len(h.t.alerts.Keys()); n != 1 {
		t.Fatalf("%d deviation states, want 1", n)
	}
	for i := 5; i < 14; i++ { // /a silent; its last window ended 12:00:50
		h.window("/b", start+int64(i)*10_000, 5, 0)
	}
	for _, key := range h.t.alerts.Keys() {
		if key == `["/a"]` {
			t.Errorf("the baseline of /a is kept 1m after its last window")
		}
	}
	if err := h.commit(); err != nil {
		t.Fatal(err)
	}
	if err := h.restart(); err != nil {
		t.Fatal(err)
	}
	if n := len(h.t.alerts.Keys()); n != 1 {
		t.Errorf("after restart: %d deviation states, want 1 (/b)", n)
	}
}

// TestThresholdRulesConcurrentTasks: two tasks of one pipeline, on two
// goroutines (as the shell's parallel tasks run them), close windows with
// a threshold rule at the same time. Each fires for its own keys only, and
// under -race nothing they share is written (the rules' expression
// environment is per task).
func TestThresholdRulesConcurrentTasks(t *testing.T) {
	spec, err := topology.Parse([]byte(alertBase + `alerts:
  rules:
    - {name: busy, kind: threshold, condition: "requests > 3 && endpoint != '/quiet'", summary: "busy"}
`))
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewPipeline(spec)
	if err != nil {
		t.Fatal(err)
	}
	db, err := state.OpenMem()
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	start := scenarioDay.Add(12 * time.Hour)
	run := func(part int32, keys []string) (fired []string, err error) {
		ts := db.TaskStore(spec.Store, part, p.AggSpecs(), 0)
		task := NewTask(p, ts, state.Checkpoint{}, start)
		in := state.SourcePartition{Topic: "requests", Partition: part}
		var fx Effects
		off := int64(0)
		for w := int64(0); w < 50; w++ {
			for _, k := range keys {
				for i := int64(0); i < 5; i++ {
					key, _, _ := groupKey(map[string]any{"endpoint": k}, spec.Key)
					rec := Record{Input: in, Offset: off, Source: in, SourceOffset: off, Key: key,
						Time: start.UnixMilli() + w*10_000 + i, Fields: map[string]any{"endpoint": k, "status": 200.0}}
					off++
					if err := task.Process(rec, start, &fx); err != nil {
						return nil, err
					}
					for _, tr := range fx.Alerts {
						if tr.Alert.State == "firing" {
							fired = append(fired, tr.Alert.Key["endpoint"])
						}
					}
				}
			}
		}
		return fired, nil
	}
	type out struct {
		fired []string
		err   error
	}
	a, b := make(chan out, 1), make(chan out, 1)
	go func() { f, err := run(0, []string{"/a", "/quiet"}); a <- out{f, err} }()
	go func() { f, err := run(1, []string{"/b", "/quiet"}); b <- out{f, err} }()
	ra, rb := <-a, <-b
	if ra.err != nil || rb.err != nil {
		t.Fatal(ra.err, rb.err)
	}
	if !slices.Equal(ra.fired, []string{"/a"}) || !slices.Equal(rb.fired, []string{"/b"}) {
		t.Errorf("fired: task 0 %v, task 1 %v; want [/a] and [/b] (once each: the rule stays firing)", ra.fired, rb.fired)
	}
}
