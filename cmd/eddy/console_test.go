package main

// Browser tests of the console (processor/console): a real headless
// Chromium (Debian's chromium, driven with chromedp) opens the console of
// an `eddy run` worker on the real broker, and each view must show what
// the test computed itself from the records it produced. They save the
// screenshots of docs/console.md (docs/console/*.png).

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eddy-streams/eddy/internal/kafkatest"
)

// browser starts a headless Chromium for the test. Without one the test
// fails under the test command (EDDY_REQUIRE_KAFKA or CI set: it installs
// chromium) and is skipped otherwise.
func browser(t *testing.T) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("EDDY_REQUIRE_KAFKA") != "" || os.Getenv("CI") != "" {
			t.Fatalf("chromium is not installed (scripts/test.sh installs Debian's chromium): %v", err)
		}
		t.Skipf("chromium is not installed: %v", err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox, // tests may run as root
		chromedp.DisableGPU,
		chromedp.WindowSize(1280, 900),
		chromedp.UserDataDir(t.TempDir()),
	)
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancel()
		acancel()
	})
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// do runs browser actions with a deadline.
func do(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := chromedp.Do(tctx, steps...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// evalJS evaluates a JavaScript expression in the page.
func evalJS[T any](t *testing.T, ctx context.Context, js string) T {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(tctx, chromedp.Evaluate[T](js))
	if err != nil {
		t.Fatalf("evaluate %s: %v", js, err)
	}
	return v
}

// open loads a console URL in a fresh page load (a change of the hash
// alone would not reload).
func open(t *testing.T, ctx context.Context, u string) {
	t.Helper()
	do(t, ctx, "open "+u, chromedp.Navigate("about:blank"), chromedp.Navigate(u))
}

// screenshot saves the page as docs/console/NAME.png (the repository's
// docs, referenced from docs/console.md).
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	png, err := chromedp.Run(tctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	dir := filepath.Join("..", "..", "docs", "console")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// rowsText returns the text of each cell of the table's body rows.
func rowsText(t *testing.T, ctx context.Context, table string) [][]string {
	t.Helper()
	return evalJS[[][]string](t, ctx, fmt.Sprintf(
		`[...document.querySelectorAll(%q)].map(tr => [...tr.cells].map(c => c.textContent))`, table+" tbody tr"))
}

// waitRows waits until cond holds for the table's rows.
func waitRows(t *testing.T, ctx context.Context, table, what string, cond func([][]string) (bool, string)) [][]string {
	t.Helper()
	var rows [][]string
	waitFor(t, 60*time.Second, what, func() (bool, string) {
		rows = rowsText(t, ctx, table)
		return cond(rows)
	})
	return rows
}

// canonJSON is s re-encoded when it is JSON (the page shows values decoded
// and encoded again, keys sorted), else s.
func canonJSON(s string) string {
	var v any
	if json.Unmarshal([]byte(s), &v) != nil {
		return s
	}
	b, _ := json.Marshal(v)
	return string(b)
}

func textOf(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	return evalJS[string](t, ctx, fmt.Sprintf(`document.querySelector(%q).textContent`, sel))
}

// TestKafkaConsoleTail: the tail of the input with a filter shows exactly
// the records that match it, and the dead-letter tail shows every bad
// record with its reason in words.
func TestKafkaConsoleTail(t *testing.T) {
	brokers := kafkatest.Real(t)
	t.Parallel()
	e := newE2EWith(t, brokers, "at_least_once", newScenario(18, 2, 100, 3))
	produceSync(t, brokers, append(e.sc.records(e.in), e.sc.badRecords(e.in)...))
	w := startWorker(t, e.spec, e.brokerList(), t.TempDir())
	addr := w.httpAddr(t)
	e.waitIdle(t, 120*time.Second, w)
	ctx := browser(t)

	// Expected, from what the test produced: the request ids of status >= 500.
	want := map[string]bool{}
	for _, ev := range e.sc.events {
		if ev.Status >= 500 {
			want[ev.ID] = true
		}
	}
	if len(want) == 0 {
		t.Fatal("the scenario has no status >= 500 records: the filter would prove nothing")
	}
	filter := "status >= 500"
	u := fmt.Sprintf("http://%s/console/#tail?step=input&last=500&filter=%s", addr, url.QueryEscape(filter))
	open(t, ctx, u)
	ids := func(rows [][]string) map[string]bool {
		got := map[string]bool{}
		for _, r := range rows {
			var v struct {
				ID     string `json:"request_id"`
				Status int    `json:"status"`
			}
			if len(r) < 4 || json.Unmarshal([]byte(r[3]), &v) != nil {
				got["unparsable row: "+strings.Join(r, " | ")] = true
				continue
			}
			got[v.ID] = true
		}
		return got
	}
	rows := waitRows(t, ctx, "#tail-table", "the filtered tail to show every matching record", func(rows [][]string) (bool, string) {
		return len(rows) >= len(want), fmt.Sprintf("%d rows, want %d", len(rows), len(want))
	})
	got := ids(rows)
	for id := range got {
		if !want[id] {
			t.Errorf("the tail filtered by %q shows %s, which does not match", filter, id)
		}
	}
	for id := range want {
		if !got[id] {
			t.Errorf("the tail filtered by %q lacks %s", filter, id)
		}
	}
	status := textOf(t, ctx, "#tail-status")
	if !strings.Contains(status, "Showing every record") {
		t.Errorf("status line %q: at this rate the server must not sample", status)
	}
	screenshot(t, ctx, "tail-filter")

	// A filter that does not compile is explained, not run.
	evalJS[bool](t, ctx, `document.getElementById("tail-filter").value = "status >= "; document.querySelector("#tail-form button").click(); true`)
	waitFor(t, 20*time.Second, "the page to explain the bad filter", func() (bool, string) {
		status = textOf(t, ctx, "#tail-status")
		return strings.Contains(status, "Filter does not compile"), status
	})

	// Dead letters: every bad record, each with its reason in words and the
	// error message eddy put in its headers (read here from the topic).
	dl := kafkatest.ReadAll(t, brokers, e.dlq, true)
	msgs := map[string]string{}
	for _, r := range dl {
		for _, h := range r.Headers {
			if h.Key == "eddy.error.message" {
				msgs[canonJSON(string(r.Value))] = string(h.Value)
			}
		}
	}
	open(t, ctx, fmt.Sprintf("http://%s/console/#tail?step=dead-letter", addr))
	rows = waitRows(t, ctx, "#tail-table", "the dead-letter tail to show every bad record", func(rows [][]string) (bool, string) {
		return len(rows) >= len(e.sc.bad), fmt.Sprintf("%d rows, want %d", len(rows), len(e.sc.bad))
	})
	seen := map[string]bool{}
	for _, r := range rows {
		value, reason := canonJSON(r[3]), r[4]
		seen[value] = true
		if !strings.HasPrefix(reason, "Dead letter: ") || !strings.Contains(reason, msgs[value]) || msgs[value] == "" {
			t.Errorf("dead letter %s: reason %q, want plain words and the error %q", value, reason, msgs[value])
		}
		if value == "{not json" && !strings.Contains(reason, "not what the source format says") {
			t.Errorf("dead letter %s: reason %q does not say it is not JSON", value, reason)
		}
	}
	for _, b := range e.sc.bad {
		if !seen[canonJSON(string(b.value))] {
			t.Errorf("bad record %s is not in the dead-letter tail (rows: %q)", b.value, rows)
		}
	}
	screenshot(t, ctx, "tail-dead-letter")
	if err := w.stop(syscall.SIGTERM); err != nil {
		t.Errorf("eddy exited with %v after SIGTERM", err)
	}
}

// TestKafkaConsoleResults: the chart and table of one key show one point
// per final window, with the counts the test computed from its input.
func TestKafkaConsoleResults(t *testing.T) {
	brokers := kafkatest.Real(t)
	t.Parallel()
	e := newE2EWith(t, brokers, "at_least_once", newScenario(19, 2, 200, 3))
	// A gap: the key's events of one window are left out, so the chart
	// must leave a hole there.
	key := e.sc.keyOrder[0]
	var gapStart int64 = -1
	var kept []tevent
	for _, ev := range e.sc.events {
		if ev.key() == key && !ev.flush && !ev.designedLate {
			ws := ev.TS / testWindow * testWindow
			if gapStart < 0 && ws >= e.sc.t0+3*testWindow {
				gapStart = ws
			}
			if ws == gapStart {
				continue
			}
		}
		kept = append(kept, ev)
	}
	// The flush events (one per key, closing every window) come 20s after
	// the last event, so the key's open window (its flush event's) is near
	// its final ones on the chart.
	var maxTS int64
	for _, ev := range kept {
		if !ev.flush && ev.TS > maxTS {
			maxTS = ev.TS
		}
	}
	e.sc.flushTS = (maxTS+20_000)/testWindow*testWindow + 1
	for i := range kept {
		if kept[i].flush {
			kept[i].TS = e.sc.flushTS
		}
	}
	openStart := e.sc.flushTS / testWindow * testWindow
	e.sc.events = kept
	produceSync(t, brokers, e.sc.records(e.in))
	w := startWorker(t, e.spec, e.brokerList(), t.TempDir())
	addr := w.httpAddr(t)
	_, late := e.finalResults(t, w)
	exp := e.sc.expected(late)
	type point struct {
		start int64
		count float64
	}
	var want []point
	for k, a := range exp {
		if k.key == key {
			want = append(want, point{k.start, a.count})
		}
	}
	sort.Slice(want, func(i, j int) bool { return want[i].start < want[j].start })
	if len(want) < 4 {
		t.Fatalf("expected only %d windows of %s", len(want), key)
	}
	for _, p := range want {
		if p.start == gapStart {
			t.Fatalf("window %d should be a gap", gapStart)
		}
	}

	ctx := browser(t)
	svc, ep, _ := strings.Cut(key, "|")
	kj, _ := json.Marshal([]string{svc, ep})
	u := fmt.Sprintf("http://%s/console/#results?agg=count&key=%s", addr, url.QueryEscape(string(kj)))
	open(t, ctx, u)
	// Every final window, and the open one (from the owner's state): its
	// flush event alone, count 1.
	want = append(want, point{openStart, 1})
	final := func(i int) bool { return i < len(want)-1 }
	rows := waitRows(t, ctx, "#results-table", "the results table to show every window of "+key, func(rows [][]string) (bool, string) {
		return len(rows) == len(want), fmt.Sprintf("%d rows, want %d", len(rows), len(want))
	})
	// Rows are newest first: window start, end, state, count, ...
	for i, r := range rows {
		j := len(want) - 1 - i
		p := want[j]
		ws := time.UnixMilli(p.start).UTC().Format("2006-01-02 15:04:05")
		state := "final"
		if !final(j) {
			state = "open"
		}
		if r[0] != ws || r[2] != state || r[3] != fmt.Sprint(p.count) {
			t.Errorf("row %d: %q, want window %s %s count %v", i, r, ws, state, p.count)
		}
	}
	pointsJSON := evalJS[string](t, ctx, `document.querySelector("#results-chart").dataset.points`)
	var points [][3]any
	if err := json.Unmarshal([]byte(pointsJSON), &points); err != nil {
		t.Fatalf("chart points %q: %v", pointsJSON, err)
	}
	if len(points) != len(want) {
		t.Fatalf("chart draws %d points, want %d (one per window): %s", len(points), len(want), pointsJSON)
	}
	for i, p := range points {
		if int64(p[0].(float64)) != want[i].start || p[1].(float64) != want[i].count || p[2] != final(i) {
			t.Errorf("point %d = %v, want window %d count %v final %v", i, p, want[i].start, want[i].count, final(i))
		}
	}
	// Gaps are gaps: the chart has a slot holding no value (uPlot draws no
	// line across a null) at each window without a result: gapStart, and
	// those between the last final window and the open one.
	var wantGaps []int64
	have := map[int64]bool{}
	for _, p := range want {
		have[p.start] = true
	}
	for s := want[0].start; s <= openStart; s += testWindow {
		if !have[s] {
			wantGaps = append(wantGaps, s)
		}
	}
	gaps := evalJS[[]int64](t, ctx, `JSON.parse(document.querySelector("#results-chart").dataset.gaps)`)
	axes := evalJS[[]string](t, ctx, `JSON.parse(document.querySelector("#results-chart").dataset.axes)`)
	if fmt.Sprint(gaps) != fmt.Sprint(wantGaps) || !slices.Contains(gaps, gapStart) {
		t.Errorf("chart gaps at %v, want %v (with %d)", gaps, wantGaps, gapStart)
	}
	if len(axes) != 2 || axes[0] != "window start (UTC)" || axes[1] != "count (records)" {
		t.Errorf("axis labels %q, want the window start and the count with its unit", axes)
	}
	screenshot(t, ctx, "results")

	// The top keys by count: every key (there are 3), by the sum of its
	// final windows' counts, computed here.
	totals := map[string]float64{}
	for k, a := range exp {
		totals[k.key] += a.count
	}
	type kt struct {
		Key   []string `json:"key"`
		Total float64  `json:"total"`
	}
	var wantTop []kt
	for k, n := range totals {
		s, ep, _ := strings.Cut(k, "|")
		wantTop = append(wantTop, kt{[]string{s, ep}, n})
	}
	sort.Slice(wantTop, func(i, j int) bool {
		if wantTop[i].Total != wantTop[j].Total {
			return wantTop[i].Total > wantTop[j].Total
		}
		return strings.Join(wantTop[i].Key, "|") < strings.Join(wantTop[j].Key, "|")
	})
	open(t, ctx, fmt.Sprintf("http://%s/console/#results?agg=count&key=top", addr))
	var gotTop []kt
	waitFor(t, 30*time.Second, "the top keys chart", func() (bool, string) {
		s := evalJS[string](t, ctx, `document.querySelector("#results-chart").dataset.series || ""`)
		gotTop = nil
		_ = json.Unmarshal([]byte(s), &gotTop)
		return fmt.Sprint(gotTop) == fmt.Sprint(wantTop), fmt.Sprintf("got %v, want %v", gotTop, wantTop)
	})
	screenshot(t, ctx, "results-top")
	if err := w.stop(syscall.SIGTERM); err != nil {
		t.Errorf("eddy exited with %v after SIGTERM", err)
	}
}

// TestKafkaConsolePipeline: the picture shows the pipeline's topics with
// the counts the test produced, and every partition with its owner, lag
// and stream time.
func TestKafkaConsolePipeline(t *testing.T) {
	brokers := kafkatest.Real(t)
	t.Parallel()
	e := newE2EWith(t, brokers, "at_least_once", newScenario(20, 2, 60, 3))
	recs := append(e.sc.records(e.in), e.sc.badRecords(e.in)...)
	produceSync(t, brokers, recs)
	w := startWorker(t, e.spec, e.brokerList(), t.TempDir())
	addr := w.httpAddr(t)
	e.waitIdle(t, 120*time.Second, w)
	ctx := browser(t)
	open(t, ctx, fmt.Sprintf("http://%s/console/#pipeline", addr))

	// Every input record was read once from the source topic; all but the
	// bad ones went through the repartition topic.
	wantIn := fmt.Sprint(len(recs)) + " total"
	wantRep := fmt.Sprint(len(e.sc.events)) + " total"
	repart := e.app + "-repartition"
	arrowTotal := func(from, to string) string {
		return evalJS[string](t, ctx, fmt.Sprintf(`(() => { const a = document.querySelector('.arrow[data-from=%q][data-to=%q] .total'); return a ? a.textContent : ""; })()`, from, to))
	}
	waitFor(t, 30*time.Second, "the picture's counts", func() (bool, string) {
		in, rep := arrowTotal(e.in, repart), arrowTotal(repart, "windows")
		// The rates are known from the second snapshot on.
		rate := evalJS[string](t, ctx, fmt.Sprintf(`(() => { const a = document.querySelector('.arrow[data-from=%q] .rate'); return a ? a.textContent : ""; })()`, e.in))
		return in == wantIn && rep == wantRep && rate == "0.0/s", fmt.Sprintf("source %q repartition %q rate %q, want %q %q 0.0/s", in, rep, rate, wantIn, wantRep)
	})
	names := evalJS[[]string](t, ctx, `[...document.querySelectorAll("#pipeline-flow .node")].map(n => n.dataset.name)`)
	for _, want := range []string{e.in, repart, e.out, e.late, e.dlq} {
		if !contains(names, want) {
			t.Errorf("picture nodes %q lack %s", names, want)
		}
	}
	// Partitions: both topics' partitions, owned by the one worker, no lag;
	// the aggregation partitions' stream time is the flush events' time
	// (every partition ends with one).
	rows := waitRows(t, ctx, "#pipeline-table", "every partition with an owner and no lag", func(rows [][]string) (bool, string) {
		ok := len(rows) == 4
		for _, r := range rows {
			ok = ok && strings.HasPrefix(r[2], "eddy-"+e.app) && r[5] == "0"
		}
		return ok, fmt.Sprintf("%q", rows)
	})
	flush := time.UnixMilli(e.sc.flushTS).UTC().Format("2006-01-02 15:04:05")
	for _, r := range rows {
		if r[0] == repart && r[6] != flush {
			t.Errorf("partition %s/%s: stream time %q, want %s", r[0], r[1], r[6], flush)
		}
		if r[3] != r[4] {
			t.Errorf("partition %s/%s: committed %s, end %s after the group is idle", r[0], r[1], r[3], r[4])
		}
	}
	// Open windows from the owner's state: after the input, each key has
	// one window open, its flush event's (stream time is that event's), with
	// the aggregates computed here from that event alone.
	for _, key := range e.sc.keyOrder {
		svc, ep, _ := strings.Cut(key, "|")
		var flush tevent
		for _, ev := range e.sc.events {
			if ev.flush && ev.key() == key {
				flush = ev
			}
		}
		kj, _ := json.Marshal([]string{svc, ep})
		r := httpGet(t, fmt.Sprintf("http://%s/api/v1/windows?key=%s", addr, url.QueryEscape(string(kj))))
		var got struct {
			Windows []map[string]any `json:"windows"`
		}
		if err := json.Unmarshal([]byte(r.body), &got); err != nil || r.code != 200 {
			t.Fatalf("open windows of %s: %d %s", key, r.code, r.body)
		}
		start := time.UnixMilli(flush.TS / testWindow * testWindow).UTC()
		var gotStart time.Time
		if len(got.Windows) == 1 {
			gotStart, _ = time.Parse(time.RFC3339Nano, fmt.Sprint(got.Windows[0]["window_start"]))
		}
		if len(got.Windows) != 1 || !gotStart.Equal(start) || got.Windows[0]["count"] != 1.0 ||
			got.Windows[0]["sum_latency"] != float64(flush.Latency) || got.Windows[0]["service"] != svc {
			t.Errorf("open windows of %s: %s, want one from %s with count 1 and sum_latency %d", key, r.body, start, flush.Latency)
		}
	}
	members := rowsText(t, ctx, "#pipeline-members")
	if len(members) != 1 || members[0][4] != "4" {
		t.Errorf("workers %q, want one owning 4 partitions", members)
	}
	screenshot(t, ctx, "pipeline")
	if err := w.stop(syscall.SIGTERM); err != nil {
		t.Errorf("eddy exited with %v after SIGTERM", err)
	}
}

// TestKafkaConsoleAlerts: the alerts view shows the episodes the alert
// model of alerts_test.go computes (firing now, and the history with
// resolutions), and each links to its key's chart.
func TestKafkaConsoleAlerts(t *testing.T) {
	brokers := kafkatest.Real(t)
	t.Parallel()
	t0 := time.Now().Add(-30*time.Minute).UnixMilli() / 60_000 * 60_000
	in := alertScenario(t0)
	want := expectedAlerts(in)
	// Episodes from the model's transitions: each firing opens one, its
	// resolution closes it (a key may fire again later: a new episode).
	type episode struct {
		id              string
		fired, resolved int64
	}
	var eps []*episode
	openEp := map[string]*episode{}
	for _, x := range want {
		id := x.rule + "|" + x.endpoint
		if x.state == "firing" {
			openEp[id] = &episode{id: id, fired: x.at, resolved: -1}
			eps = append(eps, openEp[id])
		} else {
			openEp[id].resolved = x.at
			delete(openEp, id)
		}
	}
	firing := openEp
	app := kafkatest.Name(t, "alerts")
	inTopic, outTopic, alTopic := app+"-in", app+"-out", app+"-alerts"
	kafkatest.CreateTopic(t, brokers, inTopic, 2)
	specPath := filepath.Join(t.TempDir(), "pipeline.yaml")
	if err := os.WriteFile(specPath, []byte(alertSpec(app, inTopic, outTopic, alTopic, "at_least_once")), 0o644); err != nil {
		t.Fatal(err)
	}
	produceSync(t, brokers, alertRecords(in, inTopic))
	w := startWorker(t, specPath, strings.Join(brokers, ","), t.TempDir())
	addr := w.httpAddr(t)
	if got := waitAlerts(t, brokers, alTopic, len(want), 120*time.Second); len(got) < len(want) {
		t.Fatalf("%d alert transitions, want %d", len(got), len(want))
	}
	ctx := browser(t)
	open(t, ctx, fmt.Sprintf("http://%s/console/#alerts", addr))
	rows := waitRows(t, ctx, "#alerts-history", "every alert episode in the history", func(rows [][]string) (bool, string) {
		return len(rows) == len(eps), fmt.Sprintf("%d rows, want %d", len(rows), len(eps))
	})
	fmtAt := func(ms int64) string { return time.UnixMilli(ms).UTC().Format("2006-01-02 15:04:05") }
	// Each row is one of the model's episodes of its rule and key, with the
	// model's resolution time (or still firing).
	used := map[*episode]bool{}
	for _, r := range rows {
		id := r[0] + "|" + r[2]
		var ep *episode
		for _, e := range eps {
			resolved := "still firing"
			if e.resolved >= 0 {
				resolved = fmtAt(e.resolved)
			}
			if e.id == id && !used[e] && resolved == r[5] {
				ep = e
				break
			}
		}
		if ep == nil {
			t.Errorf("history row %q: no such episode in the model %v", r, want)
			continue
		}
		used[ep] = true
	}
	now := rowsText(t, ctx, "#alerts-firing")
	if len(now) != len(firing) {
		t.Errorf("firing now: %d rows, want %d (%v)", len(now), len(firing), firing)
	}
	for _, r := range now {
		if firing[r[0]+"|"+r[2]] == nil {
			t.Errorf("firing now shows %q, which the model says is not firing", r)
		}
	}
	screenshot(t, ctx, "alerts")

	// The link of /login's errors-high episode opens /login's chart.
	evalJS[bool](t, ctx, `(() => { const tr = [...document.querySelectorAll("#alerts-history tbody tr")].find(tr => tr.cells[0].textContent === "errors-high"); tr.querySelector("a").click(); return true; })()`)
	waitRows(t, ctx, "#results-table", "the chart of /login", func(rows [][]string) (bool, string) {
		key := textOf(t, ctx, "#results-status")
		return len(rows) > 0 && strings.Contains(key, "/login"), key
	})
	if err := w.stop(syscall.SIGTERM); err != nil {
		t.Errorf("eddy exited with %v after SIGTERM", err)
	}
}

var demoConsoleRe = regexp.MustCompile(`^eddy demo: console at (http://\S+/console/)`)

// TestConsoleDemo: the demo's first line is its console's address, and
// within a minute of starting it the browser shows its results (and the
// pipeline picture with its topics); its alerts show as they fire.
func TestConsoleDemo(t *testing.T) {
	t.Parallel()
	ctx := browser(t)
	start := time.Now()
	cmd := exec.Command(eddyBin, "demo", "--duration", "150s", "--http-addr", "127.0.0.1:0", "--data-dir", t.TempDir())
	var out, errb syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("demo stderr:\n%s", errb.String())
		}
	})
	var base string
	waitFor(t, 30*time.Second, "the demo's first line to name its console", func() (bool, string) {
		first, _, _ := strings.Cut(errb.String(), "\n")
		m := demoConsoleRe.FindStringSubmatch(first)
		if m != nil {
			base = m[1]
		}
		return m != nil, errb.String()
	})
	open(t, ctx, base+"#results")
	// The demo's pipeline closes 10 s windows with 5 s of grace.
	waitFor(t, time.Minute-time.Since(start), "results in the browser within a minute of starting the demo", func() (bool, string) {
		rows := rowsText(t, ctx, "#results-table")
		return len(rows) > 0, evalJS[string](t, ctx, `location.href + " | " + document.querySelector("main").innerText.slice(0, 300)`)
	})
	t.Logf("results in the browser %s after the demo started", time.Since(start).Round(time.Second))
	screenshot(t, ctx, "demo-results")
	open(t, ctx, base+"#pipeline")
	// Every topic of the demo's pipeline (whether it is written as one
	// rollup or several) is in the picture: its input, each output and
	// alerts topic.
	var p struct {
		Steps []struct{ Step, Topic string }
	}
	if r := httpGet(t, strings.TrimSuffix(base, "/console/")+"/api/v1/pipeline"); r.code != 200 || json.Unmarshal([]byte(r.body), &p) != nil {
		t.Fatalf("the demo's pipeline: %d %s", r.code, r.body)
	}
	var topics []string
	for _, s := range p.Steps {
		if s.Step == "input" || strings.HasPrefix(s.Step, "output") || strings.HasPrefix(s.Step, "alerts") {
			topics = append(topics, s.Topic)
		}
	}
	if !contains(topics, "http-requests") || len(topics) < 3 {
		t.Fatalf("the demo's steps %+v", p.Steps)
	}
	waitFor(t, 20*time.Second, "the demo's picture", func() (bool, string) {
		names := evalJS[[]string](t, ctx, `[...document.querySelectorAll("#pipeline-flow .node")].map(n => n.dataset.name)`)
		for _, topic := range topics {
			if !contains(names, topic) {
				return false, fmt.Sprintf("%s not in %v", topic, names)
			}
		}
		return true, ""
	})
	waitFor(t, 20*time.Second, "the picture's rates", func() (bool, string) {
		r := evalJS[string](t, ctx, `document.querySelector(".arrow .rate").textContent`)
		return strings.HasSuffix(r, "/s") && r != "…/s", r
	})
	screenshot(t, ctx, "demo-pipeline")
	open(t, ctx, base+"#alerts")
	waitFor(t, 100*time.Second, "a demo alert in the browser", func() (bool, string) {
		rows := rowsText(t, ctx, "#alerts-history")
		return len(rows) > 0, textOf(t, ctx, "#alerts-status")
	})
	t.Logf("an alert in the browser %s after the demo started", time.Since(start).Round(time.Second))
}

// TestKafkaConsoleGroupOfTwo: with two workers, each one's console shows
// the whole group: both members, and every partition owned by one of them,
// the same owners from either console.
func TestKafkaConsoleGroupOfTwo(t *testing.T) {
	brokers := kafkatest.Real(t)
	t.Parallel()
	e := newE2EWith(t, brokers, "at_least_once", newScenario(21, 4, 30, 4))
	produceSync(t, brokers, e.sc.records(e.in))
	w1 := startWorker(t, e.spec, e.brokerList(), t.TempDir())
	w2 := startWorker(t, e.spec, e.brokerList(), t.TempDir())
	addrs := []string{w1.httpAddr(t), w2.httpAddr(t)}
	type status struct {
		Group struct {
			Members []struct {
				Host       string `json:"host"`
				Partitions int    `json:"partitions"`
			} `json:"members"`
		} `json:"group"`
		Partitions []struct {
			Topic     string `json:"topic"`
			Partition int32  `json:"partition"`
			Owner     string `json:"owner"`
		} `json:"partitions"`
	}
	owners := make([]map[string]string, 2)
	for i, addr := range addrs {
		waitFor(t, 60*time.Second, "console "+addr+" to show both workers and every partition owned", func() (bool, string) {
			r := httpGet(t, "http://"+addr+"/api/v1/status")
			var st status
			if err := json.Unmarshal([]byte(r.body), &st); err != nil {
				return false, r.body
			}
			// 4 partitions of the input and 4 of the repartition topic.
			sum := 0
			for _, m := range st.Group.Members {
				sum += m.Partitions
			}
			own := map[string]string{}
			hosts := map[string]bool{}
			for _, p := range st.Partitions {
				if p.Owner != "" {
					own[fmt.Sprint(p.Topic, "/", p.Partition)] = p.Owner
					hosts[p.Owner] = true
				}
			}
			owners[i] = own
			return len(st.Group.Members) == 2 && sum == 8 && len(own) == 8 && len(hosts) == 2, r.body
		})
	}
	if fmt.Sprint(owners[0]) != fmt.Sprint(owners[1]) {
		t.Errorf("the two consoles name different owners:\n%v\n%v", owners[0], owners[1])
	}

	// Open windows from either worker (issue 18's interactive queries):
	// after the input, each key has one window open, its flush event's,
	// whose aggregates are computed here from that event alone. Both
	// workers answer every key with them; the owner of the key's
	// repartition partition answered (as the group names it), and the other
	// worker forwarded the query to it.
	e.waitIdle(t, 120*time.Second, nil)
	forwarded := 0
	for _, key := range e.sc.keyOrder {
		svc, ep, _ := strings.Cut(key, "|")
		var flush tevent
		for _, ev := range e.sc.events {
			if ev.flush && ev.key() == key {
				flush = ev
			}
		}
		start := time.UnixMilli(flush.TS / testWindow * testWindow).UTC()
		kj, _ := json.Marshal([]string{svc, ep})
		var by []string
		for _, addr := range addrs {
			r := httpGet(t, fmt.Sprintf("http://%s/api/v1/windows?key=%s", addr, url.QueryEscape(string(kj))))
			var got struct {
				Windows     []map[string]any `json:"windows"`
				Partition   int32            `json:"partition"`
				AnsweredBy  string           `json:"answered_by"`
				ForwardedBy string           `json:"forwarded_by"`
			}
			if err := json.Unmarshal([]byte(r.body), &got); err != nil || r.code != 200 {
				t.Fatalf("open windows of %s from %s: %d %s", key, addr, r.code, r.body)
			}
			var gotStart time.Time
			if len(got.Windows) == 1 {
				gotStart, _ = time.Parse(time.RFC3339Nano, fmt.Sprint(got.Windows[0]["window_start"]))
			}
			if len(got.Windows) != 1 || !gotStart.Equal(start) || got.Windows[0]["count"] != 1.0 ||
				got.Windows[0]["sum_latency"] != float64(flush.Latency) || got.Windows[0]["service"] != svc || got.Windows[0]["endpoint"] != ep {
				t.Errorf("open windows of %s from %s: %s, want one from %s with count 1 and sum_latency %d", key, addr, r.body, start, flush.Latency)
			}
			owner := owners[0][fmt.Sprint(e.app+"-repartition/", got.Partition)]
			if got.AnsweredBy == "" || !strings.Contains(owner, "@"+got.AnsweredBy) {
				t.Errorf("windows of %s from %s answered by %q; the group names %q the owner of partition %d", key, addr, got.AnsweredBy, owner, got.Partition)
			}
			switch got.ForwardedBy {
			case "":
				if got.AnsweredBy != "http://"+addr {
					t.Errorf("windows of %s from %s answered by %q and not forwarded", key, addr, got.AnsweredBy)
				}
			case "http://" + addr:
				forwarded++
			default:
				t.Errorf("windows of %s from %s: forwarded_by %q", key, addr, got.ForwardedBy)
			}
			by = append(by, got.AnsweredBy)
		}
		if by[0] != by[1] {
			t.Errorf("windows of %s answered by %q from one worker and %q from the other", key, by[0], by[1])
		}
	}
	// Every key: one worker owns it, the other forwards.
	if forwarded != len(e.sc.keyOrder) {
		t.Errorf("%d of %d keys' queries forwarded to the other worker, want all", forwarded, len(e.sc.keyOrder))
	}
	for _, w := range []*worker{w1, w2} {
		if err := w.stop(syscall.SIGTERM); err != nil {
			t.Errorf("eddy exited with %v after SIGTERM", err)
		}
	}
}

// TestKafkaConsoleWindowsRoutedWithToken: two workers that share an HTTP
// token route open-window queries to each other: the forwarded query
// carries the caller's Authorization header, so both answer every key with
// the same windows, one of them forwarding; without the token the query is
// refused before any routing.
func TestKafkaConsoleWindowsRoutedWithToken(t *testing.T) {
	brokers := kafkatest.Real(t)
	t.Parallel()
	e := newE2EWith(t, brokers, "at_least_once", newScenario(22, 4, 30, 4))
	produceSync(t, brokers, e.sc.records(e.in))
	const tok = "routing-token-1"
	env := "EDDY_HTTP_TOKEN_FILE=" + writeSecret(t, t.TempDir(), "token", tok)
	w1 := startWorker(t, e.spec, e.brokerList(), t.TempDir(), env)
	w2 := startWorker(t, e.spec, e.brokerList(), t.TempDir(), env)
	addrs := []string{w1.httpAddr(t), w2.httpAddr(t)}
	e.waitIdle(t, 120*time.Second, nil)
	c := &http.Client{Timeout: 10 * time.Second}
	get := func(addr, key, tok string) (int, string) {
		req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("http://%s/api/v1/windows?key=%s", addr, url.QueryEscape(key)), nil)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := c.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	waitFor(t, 60*time.Second, "both workers answer every key alike, one forwarding", func() (bool, string) {
		forwarded := 0
		for _, key := range e.sc.keyOrder {
			svc, ep, _ := strings.Cut(key, "|")
			kj, _ := json.Marshal([]string{svc, ep})
			var wins []string
			for _, addr := range addrs {
				code, body := get(addr, string(kj), tok)
				var got struct {
					Windows     []json.RawMessage `json:"windows"`
					ForwardedBy string            `json:"forwarded_by"`
				}
				// Each key has one window open (its flush event's).
				if code != 200 || json.Unmarshal([]byte(body), &got) != nil || len(got.Windows) != 1 {
					return false, fmt.Sprintf("%s from %s: %d %s", kj, addr, code, body)
				}
				if got.ForwardedBy != "" {
					forwarded++
				}
				wins = append(wins, string(got.Windows[0]))
			}
			if wins[0] != wins[1] {
				return false, fmt.Sprintf("%s: %s from one worker, %s from the other", kj, wins[0], wins[1])
			}
		}
		return forwarded == len(e.sc.keyOrder), fmt.Sprintf("%d of %d keys forwarded", forwarded, len(e.sc.keyOrder))
	})
	for _, addr := range addrs {
		if code, body := get(addr, `["checkout","/a"]`, ""); code != http.StatusUnauthorized {
			t.Errorf("windows from %s without the token: %d %s, want 401", addr, code, body)
		}
	}
	for _, w := range []*worker{w1, w2} {
		if err := w.stop(syscall.SIGTERM); err != nil {
			t.Errorf("eddy exited with %v after SIGTERM", err)
		}
	}
}

// TestKafkaConsoleRollups: the console of a pipeline with several rollups
// (issue 20). The picture draws each rollup (the chained one from the
// rollup it reads, the one with another key through its own repartition
// topic) with the counts the test produced; the results view's rollup
// selector shows each rollup's windows (a top_k as value=count), with the
// counts computed here; the tail lists every rollup's topics and the late
// records name their rollup; the alerts view reads the rollup with rules.
func TestKafkaConsoleRollups(t *testing.T) {
	brokers := kafkatest.Real(t)
	t.Parallel()
	app := kafkatest.Name(t, "app")
	src := kafkatest.Name(t, "src")
	out10s, out1m, outCust := kafkatest.Name(t, "o10s"), kafkatest.Name(t, "o1m"), kafkatest.Name(t, "ocust")
	kafkatest.CreateTopic(t, brokers, src, 2)
	spec := filepath.Join(t.TempDir(), "rollups.yaml")
	y := fmt.Sprintf(`app: %s
source: {topics: [%s]}
time: {field: ts}
commit_interval: 300ms
rollups:
  - name: ep_10s
    key: [endpoint]
    window: {type: tumbling, size: 10s}
    aggregates:
      - {name: requests, op: count}
      - {name: agents, op: top_k, k: 2, field: agent}
    output: {topic: %s}
  - name: ep_1m
    from: ep_10s
    window: {type: tumbling, size: 1m}
    output: {topic: %s}
    alerts:
      rules:
        - {name: busy, kind: threshold, condition: requests > 1000, value: requests}
  - name: cust_1m
    key: [customer]
    window: {type: tumbling, size: 1m}
    aggregates:
      - {name: requests, op: count}
    output: {topic: %s}
`, app, src, out10s, out1m, outCust)
	if err := os.WriteFile(spec, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}

	// 120 requests over a minute, then one request per partition three
	// minutes later (endpoint /flush, customer flush) closing every window
	// of the others. Counted here: per endpoint and 10 s window (requests,
	// and the two most frequent agents), per customer and minute.
	t0 := time.Now().Add(-20*time.Minute).UnixMilli() / 60_000 * 60_000
	eps, custs, agents := []string{"/a", "/b", "/c"}, []string{"c1", "c2", "c3"}, []string{"curl", "go", "wget", "ua"}
	type wk struct {
		key   string
		start int64
	}
	reqs10, reqsCust, reqs1m := map[wk]int{}, map[wk]int{}, map[wk]int{}
	agentsOf, agents1m := map[wk]map[string]int{}, map[wk]map[string]int{}
	var recs []*kgo.Record
	rec := func(part int32, ts int64, ep, cust, agent string) *kgo.Record {
		v, _ := json.Marshal(map[string]any{"ts": ts, "endpoint": ep, "customer": cust, "agent": agent})
		return &kgo.Record{Topic: src, Partition: part, Value: v}
	}
	for i := 0; i < 120; i++ {
		ts := t0 + int64(i)*500
		ep, cust, agent := eps[i%3], custs[(i/2)%3], agents[(i*7/3)%4]
		recs = append(recs, rec(int32(i%2), ts, ep, cust, agent))
		k := wk{ep, ts / 10_000 * 10_000}
		reqs10[k]++
		if agentsOf[k] == nil {
			agentsOf[k] = map[string]int{}
		}
		agentsOf[k][agent]++
		reqsCust[wk{cust, ts / 60_000 * 60_000}]++
		k1m := wk{ep, ts / 60_000 * 60_000}
		reqs1m[k1m]++
		if agents1m[k1m] == nil {
			agents1m[k1m] = map[string]int{}
		}
		agents1m[k1m][agent]++
	}
	flushTS := t0 + 180_000
	recs = append(recs, rec(0, flushTS, "/flush", "flush", "curl"), rec(1, flushTS, "/flush", "flush", "curl"))
	produceSync(t, brokers, recs)
	w := startWorker(t, spec, strings.Join(brokers, ","), t.TempDir())
	addr := w.httpAddr(t)
	waitFor(t, 120*time.Second, "every closed window's result", func() (bool, string) {
		n10, nc := len(kafkatest.ReadAll(t, brokers, out10s, true)), len(kafkatest.ReadAll(t, brokers, outCust, true))
		n1m := len(kafkatest.ReadAll(t, brokers, out1m, true))
		return n10 == len(reqs10) && nc == len(reqsCust) && n1m == len(reqs1m), fmt.Sprintf("%d of %d, %d of %d, %d of %d", n10, len(reqs10), nc, len(reqsCust), n1m, len(reqs1m))
	})
	// Stream time is past every window of the first minute: a request back
	// in it is late for both rollups that read the source.
	produceSync(t, brokers, []*kgo.Record{rec(0, t0+1000, "/a", "c1", "go")})
	waitFor(t, 60*time.Second, "the late records", func() (bool, string) {
		n := len(kafkatest.ReadAll(t, brokers, app+"-late", false))
		return n == 2, fmt.Sprint(n)
	})

	// Open windows, from the worker's state, routed by each rollup's own
	// aggregation input: the flush requests' windows (two requests, agent
	// curl) are open in ep_10s and in cust_1m.
	for _, c := range []struct{ rollup, key, want string }{
		{"ep_10s", `["/flush"]`, `requests 2 agents [{"count":2,"value":"curl"}]`},
		{"cust_1m", `["flush"]`, `requests 2 agents null`},
	} {
		r := httpGet(t, fmt.Sprintf("http://%s/api/v1/windows?rollup=%s&key=%s", addr, c.rollup, url.QueryEscape(c.key)))
		var got struct {
			Rollup    string           `json:"rollup"`
			Partition int32            `json:"partition"`
			Windows   []map[string]any `json:"windows"`
		}
		if err := json.Unmarshal([]byte(r.body), &got); err != nil || r.code != 200 || len(got.Windows) != 1 || got.Rollup != c.rollup || got.Partition < 0 {
			t.Fatalf("open windows of %s in %s: %d %s", c.key, c.rollup, r.code, r.body)
		}
		agents, _ := json.Marshal(got.Windows[0]["agents"])
		if s := fmt.Sprintf("requests %v agents %s", got.Windows[0]["requests"], agents); s != c.want {
			t.Errorf("open window of %s in %s: %s, want %s", c.key, c.rollup, s, c.want)
		}
	}

	ctx := browser(t)
	// The picture.
	open(t, ctx, fmt.Sprintf("http://%s/console/#pipeline", addr))
	arrowTotal := func(from, to string) string {
		return evalJS[string](t, ctx, fmt.Sprintf(`(() => { const a = document.querySelector('.arrow[data-from=%q][data-to=%q] .total'); return a ? a.textContent : ""; })()`, from, to))
	}
	repart, repartCust := app+"-repartition", app+"-cust_1m-repartition"
	all := len(recs) + 1 // and the late one
	want := map[[2]string]string{
		{src, repart}:                     fmt.Sprint(all, " total"),
		{src, repartCust}:                 fmt.Sprint(all, " total"),
		{repart, "rollup:ep_10s"}:         fmt.Sprint(all, " total"),
		{repartCust, "rollup:cust_1m"}:    fmt.Sprint(all, " total"),
		{"rollup:ep_10s", out10s}:         fmt.Sprint(len(reqs10), " total"),
		{"rollup:cust_1m", outCust}:       fmt.Sprint(len(reqsCust), " total"),
		{"rollup:ep_10s", "rollup:ep_1m"}: fmt.Sprint(len(reqs10), " total"), // the results it merges
		{"rollup:ep_1m", out1m}:           fmt.Sprint(len(reqs1m), " total"),
		{"rollups", app + "-late"}:        "2 total",
		{"rollups", app + "-dlq"}:         "0 total",
	}
	waitFor(t, 30*time.Second, "the picture's counts", func() (bool, string) {
		var bad []string
		for e, n := range want {
			if got := arrowTotal(e[0], e[1]); got != n {
				bad = append(bad, fmt.Sprintf("%s → %s: %q, want %q", e[0], e[1], got, n))
			}
		}
		sort.Strings(bad)
		return len(bad) == 0, strings.Join(bad, "; ")
	})
	names := evalJS[[]string](t, ctx, `[...document.querySelectorAll("#pipeline-flow .node")].map(n => n.dataset.name)`)
	for _, n := range []string{src, repart, repartCust, "ep_10s", "ep_1m", "cust_1m", out10s, out1m, outCust, app + "-ep_1m-alerts", app + "-late", app + "-dlq"} {
		if !contains(names, n) && !strings.Contains(textOf(t, ctx, "#view-pipeline"), n) {
			t.Errorf("picture lacks %s (nodes %q)", n, names)
		}
	}
	if got := textOf(t, ctx, `.rollups .row[data-rollup="ep_1m"] .node`); !strings.Contains(got, "chained rollup") || !strings.Contains(got, "merges ep_10s") {
		t.Errorf("the chained rollup is drawn as %q", got)
	}
	// Each rollup's open windows here: the flush requests' window.
	waitFor(t, 30*time.Second, "each rollup's open windows", func() (bool, string) {
		a, c := textOf(t, ctx, `.rollups .row[data-rollup="ep_10s"] .node`), textOf(t, ctx, `.rollups .row[data-rollup="cust_1m"] .node`)
		return strings.Contains(a, "· 1 open here") && strings.Contains(c, "· 1 open here"), a + " | " + c
	})
	// Partitions: the stream time of both repartition topics' partitions
	// is the flush requests' (every partition ends with one), from the
	// tasks of the rollups reading them.
	flush := time.UnixMilli(flushTS).UTC().Format("2006-01-02 15:04:05")
	waitRows(t, ctx, "#pipeline-table", "every aggregation partition's stream time", func(rows [][]string) (bool, string) {
		n := 0
		for _, r := range rows {
			if r[0] == repart || r[0] == repartCust {
				n++
				if r[6] != flush || r[8] == "—" {
					return false, fmt.Sprintf("%q", rows)
				}
			}
		}
		return n == 4, fmt.Sprintf("%q", rows)
	})
	screenshot(t, ctx, "rollups")

	// Results of cust_1m, chosen in the URL: its windows of c1, counted here.
	open(t, ctx, fmt.Sprintf("http://%s/console/#results?rollup=cust_1m&agg=requests&key=%s", addr, url.QueryEscape(`["c1"]`)))
	var wantCust []string
	for k, n := range reqsCust {
		if k.key == "c1" {
			wantCust = append(wantCust, fmt.Sprintf("%s final %d", time.UnixMilli(k.start).UTC().Format("2006-01-02 15:04:05"), n))
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(wantCust))) // newest first
	waitRows(t, ctx, "#results-table", "cust_1m's windows of c1", func(rows [][]string) (bool, string) {
		var got []string
		for _, r := range rows {
			got = append(got, fmt.Sprintf("%s %s %s", r[0], r[2], r[3]))
		}
		return slices.Equal(got, wantCust), fmt.Sprintf("%q, want %q", got, wantCust)
	})
	opts := evalJS[[]string](t, ctx, `[...document.querySelectorAll("#results-rollup option")].map(o => o.value + "=" + o.textContent)`)
	if fmt.Sprint(opts) != "[ep_10s=ep_10s ep_1m=ep_1m (from ep_10s) cust_1m=cust_1m]" || evalJS[bool](t, ctx, `document.querySelector("#results-rollup").closest("label").hidden`) ||
		evalJS[string](t, ctx, `document.querySelector("#results-rollup").value`) != "cust_1m" {
		t.Errorf("rollup selector %q", opts)
	}
	// The selector switches to ep_10s: its windows of /a, with the top
	// agents (most frequent first, ties by value) as value=count.
	evalJS[bool](t, ctx, `(() => { const s = document.querySelector("#results-rollup"); s.value = "ep_10s"; s.dispatchEvent(new Event("change")); return true; })()`)
	waitFor(t, 30*time.Second, "ep_10s selected", func() (bool, string) {
		h := evalJS[string](t, ctx, "location.hash")
		return strings.Contains(h, "rollup=ep_10s") && strings.Contains(h, "key="), h
	})
	open(t, ctx, fmt.Sprintf("http://%s/console/#results?rollup=ep_10s&agg=requests&key=%s", addr, url.QueryEscape(`["/a"]`)))
	// rowsOf is the table rows (window start, requests, top agents:
	// most frequent first, ties by value) of key in reqs, newest first.
	rowsOf := func(reqs map[wk]int, agents map[wk]map[string]int, key string) []string {
		var rows []string
		for k, n := range reqs {
			if k.key != key {
				continue
			}
			type ac struct {
				v string
				n int
			}
			var as []ac
			for v, c := range agents[k] {
				as = append(as, ac{v, c})
			}
			sort.Slice(as, func(i, j int) bool { return as[i].n > as[j].n || as[i].n == as[j].n && as[i].v < as[j].v })
			var top []string
			for _, a := range as[:min(2, len(as))] {
				top = append(top, fmt.Sprintf("%s=%d", a.v, a.n))
			}
			rows = append(rows, fmt.Sprintf("%s %d %s", time.UnixMilli(k.start).UTC().Format("2006-01-02 15:04:05"), n, strings.Join(top, ", ")))
		}
		sort.Sort(sort.Reverse(sort.StringSlice(rows)))
		return rows
	}
	wantA := rowsOf(reqs10, agentsOf, "/a")
	waitRows(t, ctx, "#results-table", "ep_10s's windows of /a with top agents", func(rows [][]string) (bool, string) {
		var got []string
		for _, r := range rows {
			if len(r) >= 5 {
				got = append(got, fmt.Sprintf("%s %s %s", r[0], r[3], r[4]))
			}
		}
		return slices.Equal(got, wantA), fmt.Sprintf("%q, want %q", got, wantA)
	})
	head := evalJS[[]string](t, ctx, `[...document.querySelectorAll("#results-table thead th")].map(th => th.textContent)`)
	if len(head) < 5 || !strings.HasPrefix(head[4], "agents") {
		t.Errorf("results columns %q", head)
	}
	screenshot(t, ctx, "rollups-results")
	// The chained rollup: /a's minute, merged from its 10 s windows.
	open(t, ctx, fmt.Sprintf("http://%s/console/#results?rollup=ep_1m&agg=requests&key=%s", addr, url.QueryEscape(`["/a"]`)))
	want1m := rowsOf(reqs1m, agents1m, "/a")
	waitRows(t, ctx, "#results-table", "ep_1m's windows of /a", func(rows [][]string) (bool, string) {
		var got []string
		for _, r := range rows {
			if len(r) >= 5 {
				got = append(got, fmt.Sprintf("%s %s %s", r[0], r[3], r[4]))
			}
		}
		return slices.Equal(got, want1m), fmt.Sprintf("%q, want %q", got, want1m)
	})
	// An open window's top_k, from the owner's state.
	open(t, ctx, fmt.Sprintf("http://%s/console/#results?rollup=ep_10s&agg=requests&key=%s", addr, url.QueryEscape(`["/flush"]`)))
	waitRows(t, ctx, "#results-table", "the open window of /flush with its top agents", func(rows [][]string) (bool, string) {
		return len(rows) == 1 && len(rows[0]) >= 5 && rows[0][2] == "open" && rows[0][3] == "2" && rows[0][4] == "curl=2", fmt.Sprintf("%q", rows)
	})

	// Tail: every rollup's topics are steps; the late records name their rollup.
	open(t, ctx, fmt.Sprintf("http://%s/console/#tail?step=late&last=10", addr))
	wantSteps := []string{"input", "output:ep_10s", "output:ep_1m", "output:cust_1m", "late", "dead-letter", "alerts:ep_1m"}
	waitFor(t, 30*time.Second, "every rollup's steps", func() (bool, string) {
		steps := evalJS[[]string](t, ctx, `[...document.querySelectorAll("#tail-step option")].map(o => o.value)`)
		return slices.Equal(steps, wantSteps), fmt.Sprintf("%q, want %q", steps, wantSteps)
	})
	waitRows(t, ctx, "#tail-table", "the late records with their rollup", func(rows [][]string) (bool, string) {
		var why []string
		for _, r := range rows {
			why = append(why, strings.SplitN(r[4], ".", 2)[0])
		}
		sort.Strings(why)
		return fmt.Sprint(why) == "[Late for rollup cust_1m: its window had closed when it arrived Late for rollup ep_10s: its window had closed when it arrived]", fmt.Sprintf("%q", why)
	})

	// Alerts: the rollup with rules is selected, its own topic read.
	open(t, ctx, fmt.Sprintf("http://%s/console/#alerts", addr))
	waitFor(t, 30*time.Second, "the alerts of ep_1m", func() (bool, string) {
		s := textOf(t, ctx, "#alerts-status")
		sel := evalJS[string](t, ctx, `document.querySelector("#alerts-rollup").value`)
		return sel == "ep_1m" && strings.Contains(s, "from "+app+"-ep_1m-alerts"), sel + ": " + s
	})
	if err := w.stop(syscall.SIGTERM); err != nil {
		t.Errorf("eddy exited with %v after SIGTERM", err)
	}
}
