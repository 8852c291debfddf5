package main

// Browser test of runbooks (docs/runbooks.md): `eddy runbook serve` on the
// real broker serves the demo's example runbook (its topic renamed for the
// test); headless Chromium opens it, and each block's display must show
// what the test computes itself from the records it produces. Then a block
// is edited into an error (the message must be eddy describe's, at the
// document's line), fixed and saved (the file on disk must differ only in
// that block), and another is promoted and the promoted file run with
// `eddy run`. The screenshots of docs/runbooks.md are taken here.

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eddy-streams/eddy/internal/kafkatest"
)

// rbEvent is one request the test produces, as the demo's generator writes
// them.
type rbEvent struct {
	TS        int64   `json:"ts"`
	Service   string  `json:"service"`
	Endpoint  string  `json:"endpoint"`
	Status    int     `json:"status"`
	LatencyMS float64 `json:"latency_ms"`
	RequestID string  `json:"request_id"`
}

// rbTraffic is three 5-second windows of requests to four endpoints of
// three services (some failing, six slow), then one request a minute
// later that closes them.
func rbTraffic(t0 int64) (events []rbEvent, flush rbEvent) {
	endpoints := []struct {
		svc, ep string
		svcN    int
	}{{"accounts", "/login", 0}, {"accounts", "/signup", 0}, {"checkout", "/pay", 1}, {"search", "/q", 2}}
	slow := 0
	for w := int64(0); w < 3; w++ {
		for e, x := range endpoints {
			n := 3 + int((w*7+int64(e)*3)%5)
			for i := 0; i < n; i++ {
				ev := rbEvent{TS: t0 + w*5000 + int64(i)*400 + int64(e)*10, Service: x.svc, Endpoint: x.ep, Status: 200,
					LatencyMS: float64(20 + (i*37)%300), RequestID: fmt.Sprintf("req-%d-%d-%d", w, e, i)}
				if i%3 == 1 {
					// Every failing request of a service in a window has the
					// same latency: its p99 is that latency whatever the
					// quantile's definition.
					ev.Status, ev.LatencyMS = 503, float64(100+25*x.svcN+int(w)*7)
				}
				if i == 2 && slow < 6 {
					ev.LatencyMS, slow = float64(600+slow*11), slow+1
				}
				events = append(events, ev)
			}
		}
	}
	flush = rbEvent{TS: t0 + 60_000, Service: "search", Endpoint: "/q", Status: 503, LatencyMS: 1, RequestID: "req-flush"}
	return events, flush
}

func TestKafkaRunbookBrowser(t *testing.T) {
	brokers := kafkatest.Real(t)
	t.Parallel()
	topic := kafkatest.Name(t, "http")
	kafkatest.CreateTopic(t, brokers, topic, 3)

	// The demo's runbook, reading the test's topic.
	dir := t.TempDir()
	src, err := demoRunbooks.ReadFile("runbooks/http-traffic.md")
	if err != nil {
		t.Fatal(err)
	}
	orig := strings.ReplaceAll(string(src), "http-requests", topic)
	docPath := filepath.Join(dir, "http-traffic.md")
	if err := os.WriteFile(docPath, []byte(orig), 0o644); err != nil {
		t.Fatal(err)
	}
	srv := startEddy(t, nil, "runbook", "serve", dir, "--brokers", strings.Join(brokers, ","), "--http-addr", "127.0.0.1:0", "--log-level", "info")
	var addr string
	re := regexp.MustCompile(`at http://(\S+)/console/runbook.html`)
	waitFor(t, 30*time.Second, "eddy runbook serve to print its address", func() (bool, string) {
		if m := re.FindStringSubmatch(srv.logs()); m != nil {
			addr = m[1]
			return true, ""
		}
		return false, srv.logs()
	})

	ctx := browser(t)
	open(t, ctx, "http://"+addr+"/console/runbook.html?doc=http-traffic.md")
	// Every preview reads from now: the records come once they read.
	waitFor(t, 60*time.Second, "the three previews to read their source", func() (bool, string) {
		n := evalJS[int](t, ctx, `document.querySelectorAll('.rb-block[data-reading="1"]').length`)
		return n == 3, fmt.Sprintf("%d of 3 reading", n)
	})

	// Event times from the next 5-second boundary on (ahead of the wall
	// clock by less than a minute: well within max_future).
	t0 := (time.Now().UnixMilli()/5000 + 1) * 5000
	events, flush := rbTraffic(t0)
	var recs []*kgo.Record
	for i, ev := range events {
		b, _ := json.Marshal(ev)
		recs = append(recs, &kgo.Record{Topic: topic, Partition: int32(i % 3), Value: b})
	}
	produceSync(t, brokers, recs)
	// The closing request comes later, as it would a minute later: once
	// every preview has read the others.
	waitFor(t, 60*time.Second, "the previews to read the requests", func() (bool, string) {
		n := evalJS[int](t, ctx, fmt.Sprintf(`document.querySelectorAll('.rb-block').length - [...document.querySelectorAll('.rb-block')].filter(b => +b.dataset.fed >= %d).length`, len(events)))
		return n == 0, fmt.Sprintf("%d previews behind", n)
	})
	fb, _ := json.Marshal(flush)
	produceSync(t, brokers, []*kgo.Record{{Topic: topic, Partition: 0, Value: fb}})

	// Block 1, the chart: requests per endpoint and window.
	type wk struct {
		key   string
		start int64
	}
	wantCount := map[wk]float64{}
	for _, ev := range events {
		wantCount[wk{ev.Endpoint, ev.TS / 5000 * 5000}]++
	}
	type series struct {
		Key    string      `json:"key"`
		Points [][]float64 `json:"points"`
	}
	var got []series
	waitFor(t, 90*time.Second, "the chart to draw every window of every endpoint", func() (bool, string) {
		s := evalJS[string](t, ctx, `(document.querySelector('[data-block="0"] .rb-display') || {dataset: {}}).dataset.points || "[]"`)
		got = nil
		_ = json.Unmarshal([]byte(s), &got)
		n := 0
		for _, x := range got {
			n += len(x.Points)
		}
		return n == len(wantCount), fmt.Sprintf("%d points, want %d: %s", n, len(wantCount), s)
	})
	for _, x := range got {
		for _, p := range x.Points {
			k := wk{x.Key, int64(p[0])}
			if want, ok := wantCount[k]; !ok || want != p[1] {
				t.Errorf("chart: %s window %d: %v requests, want %v", x.Key, k.start, p[1], want)
			}
		}
	}
	if axes := evalJS[string](t, ctx, `document.querySelector('[data-block="0"] .rb-display').dataset.axes || ""`); !strings.Contains(axes, "window start (UTC)") || !strings.Contains(axes, "requests (records)") {
		t.Errorf("chart axes %q: want both labelled", axes)
	}

	// Block 2, the table: failing requests per service and window, and
	// their p99 latency.
	type agg struct{ errors, latency float64 }
	wantErr := map[wk]agg{}
	for _, ev := range events {
		if ev.Status >= 500 {
			k := wk{ev.Service, ev.TS / 5000 * 5000}
			a := wantErr[k]
			a.errors++
			a.latency = math.Max(a.latency, ev.LatencyMS)
			wantErr[k] = a
		}
	}
	rows := waitRows(t, ctx, `[data-block="1"] .rb-display table`, "the table to list every window", func(rows [][]string) (bool, string) {
		return len(rows) == len(wantErr), fmt.Sprintf("%d rows, want %d: %q", len(rows), len(wantErr), rows)
	})
	for _, r := range rows { // key, window, errors, p99_latency_ms
		start, err := time.Parse("2006-01-02 15:04:05", strings.Split(r[1], " – ")[0])
		if err != nil {
			t.Fatalf("row %q: %v", r, err)
		}
		k := wk{r[0], start.UnixMilli()}
		want, ok := wantErr[k]
		gotErr, _ := strconv.ParseFloat(r[2], 64)
		gotLat, _ := strconv.ParseFloat(r[3], 64)
		if !ok || gotErr != want.errors || math.Abs(gotLat-want.latency) > 0.02*want.latency {
			t.Errorf("table row %q: want %v errors and p99 %v ms (within the sketch's 2%%)", r, want.errors, want.latency)
		}
	}

	// Block 3, the events: every request slower than 500 ms (six, fewer
	// than the ten listed).
	wantSlow := map[string]bool{}
	for _, ev := range events {
		if ev.LatencyMS > 500 {
			wantSlow[ev.RequestID] = true
		}
	}
	rows = waitRows(t, ctx, `[data-block="2"] .rb-display table`, "the events to list every slow request", func(rows [][]string) (bool, string) {
		return len(rows) == len(wantSlow), fmt.Sprintf("%d rows, want %d", len(rows), len(wantSlow))
	})
	for _, r := range rows {
		var v rbEvent
		if err := json.Unmarshal([]byte(r[3]), &v); err != nil || !wantSlow[v.RequestID] {
			t.Errorf("events row %q: not one of the slow requests", r)
		}
	}
	if info := textOf(t, ctx, `[data-block="0"] .rb-info`); !strings.Contains(info, "one read shared by 3 blocks") {
		t.Errorf("block 1 says %q: the three blocks of one topic must share one read", info)
	}
	screenshotTo(t, ctx, "runbooks", "runbook")

	// Describe, one click away: what eddy describe -f prints for the
	// block's pipeline (with the app and output a preview fills in).
	blocks := strings.Split(orig, "```eddy\n")
	table := strings.SplitN(blocks[2], "---\n", 2)[0]
	descFile := filepath.Join(t.TempDir(), "table.yaml")
	if err := os.WriteFile(descFile, []byte(table+"app: runbook-preview\noutput:\n  topic: runbook-preview-results\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	wantDesc, err := exec.Command(eddyBin, "describe", "-f", descFile).Output()
	if err != nil {
		t.Fatal(err)
	}
	evalJS[bool](t, ctx, `document.querySelector('[data-block="1"] .rb-describe-btn').click(); true`)
	if got := textOf(t, ctx, `[data-block="1"] .rb-describe`); got != string(wantDesc) {
		t.Errorf("describe on the page:\n%s\nwant eddy describe's:\n%s", got, wantDesc)
	}
	if hidden := evalJS[bool](t, ctx, `document.querySelector('[data-block="1"] .rb-describe-wrap').hidden`); hidden {
		t.Error("Describe did not show the description")
	}
	evalJS[bool](t, ctx, `document.querySelector('[data-block="1"] .rb-describe-btn').click(); true`)

	// Edit block 1 into an error: the page shows what eddy describe says
	// of the same lines, at the document's line numbers.
	blockText := strings.SplitN(strings.SplitN(orig, "```eddy\n", 2)[1], "```", 2)[0]
	blockLine := strings.Count(strings.SplitN(orig, "```eddy\n", 2)[0], "\n") + 2
	bad := strings.Replace(blockText, "size: 5s", "size: 5", 1)
	pipeFile := filepath.Join(t.TempDir(), "block.yaml")
	if err := os.WriteFile(pipeFile, []byte(strings.Split(bad, "---\n")[0]), 0o644); err != nil {
		t.Fatal(err)
	}
	out, _ := exec.Command(eddyBin, "describe", "-f", pipeFile).CombinedOutput()
	var wantMsgs []string
	for _, m := range regexp.MustCompile(`(?m)^line (\d+): (.*)$`).FindAllStringSubmatch(string(out), -1) {
		n, _ := strconv.Atoi(m[1])
		wantMsgs = append(wantMsgs, fmt.Sprintf("line %d: %s", n+blockLine-1, m[2]))
	}
	if len(wantMsgs) == 0 {
		t.Fatalf("eddy describe found no error with a line in the edited block:\n%s", out)
	}
	setBlock := func(i int, text string) {
		t.Helper()
		js, _ := json.Marshal(text)
		evalJS[bool](t, ctx, fmt.Sprintf(`(() => { const b = document.querySelector('[data-block="%d"]'); b.querySelector(".rb-editor").hidden = false; b.querySelector(".rb-text").value = %s; b.querySelector(".rb-run").click(); return true })()`, i, js))
	}
	setBlock(0, bad)
	var shown []string
	waitFor(t, 20*time.Second, "the inline error", func() (bool, string) {
		shown = evalJS[[]string](t, ctx, `[...document.querySelectorAll('[data-block="0"] .rb-problem')].map(e => e.textContent)`)
		return len(shown) > 0, fmt.Sprint(shown)
	})
	if strings.Join(shown, "\n") != strings.Join(wantMsgs, "\n") {
		t.Errorf("inline errors:\n%s\nwant (eddy describe's, at document lines):\n%s", strings.Join(shown, "\n"), strings.Join(wantMsgs, "\n"))
	}
	if lines := strings.Split(orig, "\n"); !strings.Contains(lines[blockLine-1+strings.Count(strings.Split(bad, "size: 5\n")[0], "\n")], "size: 5s") {
		t.Errorf("the error's line is not the size line of the document")
	}
	screenshotTo(t, ctx, "runbooks", "error")

	// Fix it (and change the chart to three keys), run, save: the file
	// differs from the original only in that block.
	fixed := strings.Replace(blockText, "top: 5", "top: 3", 1) + "# top 3: the busiest endpoints only\n"
	setBlock(0, fixed)
	waitFor(t, 20*time.Second, "the errors to go", func() (bool, string) {
		n := evalJS[int](t, ctx, `document.querySelectorAll('[data-block="0"] .rb-problem').length`)
		return n == 0, fmt.Sprint(n)
	})
	evalJS[bool](t, ctx, `document.querySelector('[data-block="0"] .rb-save').click(); true`)
	waitFor(t, 20*time.Second, "the save", func() (bool, string) {
		s := textOf(t, ctx, `[data-block="0"] .rb-saved`)
		return strings.HasPrefix(s, "Saved to"), s
	})
	disk, err := os.ReadFile(docPath)
	if err != nil {
		t.Fatal(err)
	}
	if want := strings.Replace(orig, blockText, fixed, 1); string(disk) != want {
		t.Errorf("saved file:\n%s\nwant the original with block 1 replaced:\n%s", disk, want)
	}

	// Promote block 2 and run the file with eddy run.
	app := kafkatest.Name(t, "promoted")
	evalJS[bool](t, ctx, fmt.Sprintf(`(() => { const f = document.querySelector('[data-block="1"] .rb-promote'); f.hidden = false;
		f.elements.app.value = %q; f.elements.processing.value = "exactly_once"; f.querySelector("button").click(); return true })()`, app))
	var command string
	waitFor(t, 20*time.Second, "the promoted file and its command", func() (bool, string) {
		command = evalJS[string](t, ctx, `document.querySelector('[data-block="1"] .rb-promote').dataset.command || ""`)
		return command != "", textOf(t, ctx, "#rb-status")
	})
	screenshotTo(t, ctx, "runbooks", "promote")
	args := strings.Fields(command)
	if len(args) < 4 || args[0] != "eddy" || args[1] != "run" || args[2] != "-f" || filepath.Dir(args[3]) != filepath.Join(dir, "pipelines") {
		t.Fatalf("command %q: want eddy run -f DIR/pipelines/FILE ...", command)
	}
	// (Its console serves the runbooks too: --runbooks.)
	w := startEddy(t, nil, append(args[1:], "--state-dir", t.TempDir(), "--http-addr", "127.0.0.1:0", "--session-timeout", "6s", "--runbooks", dir)...)
	r := httpGet(t, "http://"+w.httpAddr(t)+"/api/v1/runbooks/http-traffic.md")
	if r.code != 200 || !strings.Contains(r.body, `"blocks"`) || !strings.Contains(r.body, "top: 3") {
		t.Errorf("eddy run --runbooks: GET /api/v1/runbooks/http-traffic.md: %d %.300s", r.code, r.body)
	}
	// Its results: the errors per service and window the test expects.
	out2 := app + "-results"
	gotRes := map[wk]float64{}
	waitFor(t, 120*time.Second, "the promoted pipeline's results", func() (bool, string) {
		for _, r := range kafkatest.ReadAll(t, brokers, out2, true) {
			var v struct {
				Service string  `json:"service"`
				Start   string  `json:"window_start"`
				Errors  float64 `json:"errors"`
			}
			if json.Unmarshal(r.Value, &v) == nil {
				ts, _ := time.Parse(time.RFC3339Nano, v.Start)
				gotRes[wk{v.Service, ts.UnixMilli()}] = v.Errors
			}
		}
		return len(gotRes) >= len(wantErr), fmt.Sprintf("%d results, want %d; log:\n%s", len(gotRes), len(wantErr), w.logs())
	})
	for k, a := range wantErr {
		if gotRes[k] != a.errors {
			t.Errorf("promoted pipeline: %s window %d: %v errors, want %v", k.key, k.start, gotRes[k], a.errors)
		}
	}
	if err := w.stop(syscall.SIGTERM); err != nil {
		t.Errorf("eddy run of the promoted file exited with %v", err)
	}
	if err := srv.stop(syscall.SIGTERM); err != nil {
		t.Errorf("eddy runbook serve exited with %v", err)
	}
}

// screenshotTo saves the page as docs/DIR/NAME.png.
func screenshotTo(t *testing.T, ctx context.Context, dir, name string) {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	png, err := chromedp.Run(tctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	d := filepath.Join("..", "..", "docs", dir)
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d, name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestRunbookDemo: `eddy demo` installs its example runbook in its data
// directory and serves it; every block's display fills from the demo's
// traffic, and what it shows holds what the block asks (the events are
// slow requests, the table's windows have failures).
func TestRunbookDemo(t *testing.T) {
	t.Parallel()
	ctx := browser(t)
	dataDir := t.TempDir()
	cmd := exec.Command(eddyBin, "demo", "--duration", "150s", "--http-addr", "127.0.0.1:0", "--data-dir", dataDir)
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
	var u string
	re := regexp.MustCompile(`runbooks at (\S+) \(files in (\S+)\)`)
	waitFor(t, 30*time.Second, "the demo to print its runbooks' address", func() (bool, string) {
		m := re.FindStringSubmatch(errb.String())
		if m != nil {
			u = m[1]
			if m[2] != filepath.Join(dataDir, "runbooks") {
				t.Errorf("runbooks in %s, want %s", m[2], filepath.Join(dataDir, "runbooks"))
			}
		}
		return m != nil, errb.String()
	})
	want, _ := demoRunbooks.ReadFile("runbooks/http-traffic.md")
	if got, err := os.ReadFile(filepath.Join(dataDir, "runbooks", "http-traffic.md")); err != nil || string(got) != string(want) {
		t.Fatalf("the demo's runbook in its data directory: %v", err)
	}
	open(t, ctx, u)
	waitFor(t, 60*time.Second, "the chart's first windows", func() (bool, string) {
		s := evalJS[string](t, ctx, `(document.querySelector('[data-block="0"] .rb-display') || {dataset: {}}).dataset.points || "[]"`)
		var got []struct {
			Key    string      `json:"key"`
			Points [][]float64 `json:"points"`
		}
		_ = json.Unmarshal([]byte(s), &got)
		return len(got) > 0 && len(got[0].Points) > 0, s
	})
	rows := waitRows(t, ctx, `[data-block="1"] .rb-display table`, "the table's first windows", func(rows [][]string) (bool, string) {
		return len(rows) > 0, fmt.Sprint(rows)
	})
	for _, r := range rows {
		if n, err := strconv.Atoi(r[2]); err != nil || n < 1 {
			t.Errorf("table row %q: a window of failures with %q errors", r, r[2])
		}
	}
	rows = waitRows(t, ctx, `[data-block="2"] .rb-display table`, "slow requests in the events", func(rows [][]string) (bool, string) {
		return len(rows) > 0, fmt.Sprint(rows)
	})
	for _, r := range rows {
		var v rbEvent
		if err := json.Unmarshal([]byte(r[3]), &v); err != nil || v.LatencyMS <= 500 {
			t.Errorf("events row %q: not a request slower than 500 ms", r)
		}
	}
}

// TestKafkaRunbookRollups: a runbook block with a rollups list runs in
// the browser; its display shows the rollup its rollup key names (its
// aggregates only), with the counts the test computes itself.
func TestKafkaRunbookRollups(t *testing.T) {
	brokers := kafkatest.Real(t)
	t.Parallel()
	topic := kafkatest.Name(t, "http")
	kafkatest.CreateTopic(t, brokers, topic, 3)
	dir := t.TempDir()
	doc := fmt.Sprintf("# Two rollups\n\nErrors per service, beside requests per endpoint.\n\n```eddy\n"+`source: {topics: [%s]}
time: {field: ts}
rollups:
  - name: per_endpoint
    key: [endpoint]
    window: {type: tumbling, size: 5s}
    aggregates:
      - {name: requests, op: count}
    output: {topic: rb-per-endpoint}
  - name: per_service
    key: [service]
    window: {type: tumbling, size: 5s}
    aggregates:
      - {name: errors, op: count, where: 'status >= 500'}
      - {name: requests, op: count}
    output: {topic: rb-per-service}
---
display: table
rollup: per_service
rows: 100
`+"```\n", topic)
	if err := os.WriteFile(filepath.Join(dir, "rollups.md"), []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	srv := startEddy(t, nil, "runbook", "serve", dir, "--brokers", strings.Join(brokers, ","), "--http-addr", "127.0.0.1:0", "--log-level", "info")
	var addr string
	re := regexp.MustCompile(`at http://(\S+)/console/runbook.html`)
	waitFor(t, 30*time.Second, "eddy runbook serve to print its address", func() (bool, string) {
		if m := re.FindStringSubmatch(srv.logs()); m != nil {
			addr = m[1]
			return true, ""
		}
		return false, srv.logs()
	})
	ctx := browser(t)
	open(t, ctx, "http://"+addr+"/console/runbook.html?doc=rollups.md")
	waitFor(t, 60*time.Second, "the preview to read its source", func() (bool, string) {
		n := evalJS[int](t, ctx, `document.querySelectorAll('.rb-block[data-reading="1"]').length`)
		return n == 1, fmt.Sprintf("%d of 1 reading", n)
	})
	t0 := (time.Now().UnixMilli()/5000 + 1) * 5000
	events, flush := rbTraffic(t0)
	var recs []*kgo.Record
	for i, ev := range events {
		b, _ := json.Marshal(ev)
		recs = append(recs, &kgo.Record{Topic: topic, Partition: int32(i % 3), Value: b})
	}
	produceSync(t, brokers, recs)
	waitFor(t, 60*time.Second, "the preview to read the requests", func() (bool, string) {
		n := evalJS[int](t, ctx, `+(document.querySelector('.rb-block').dataset.fed || 0)`)
		return n >= len(events), fmt.Sprint(n)
	})
	fb, _ := json.Marshal(flush)
	produceSync(t, brokers, []*kgo.Record{{Topic: topic, Partition: 0, Value: fb}})

	// Errors and requests per service and 5 s window, counted here.
	want := map[string]bool{}
	type wk struct {
		svc   string
		start int64
	}
	errs, reqs := map[wk]int{}, map[wk]int{}
	for _, ev := range events {
		k := wk{ev.Service, ev.TS / 5000 * 5000}
		reqs[k]++
		if ev.Status >= 500 {
			errs[k]++
		}
	}
	for k, n := range reqs {
		want[fmt.Sprintf("%s@%d errors=%d requests=%d", k.svc, k.start, errs[k], n)] = true
	}
	var got []string
	waitFor(t, 60*time.Second, "per_service's windows", func() (bool, string) {
		got = evalJS[[]string](t, ctx, `[...document.querySelectorAll('.rb-display tr[data-key]')].map(tr => tr.dataset.key + "@" + tr.dataset.start + " " +
			[...tr.querySelectorAll("td[data-agg]")].map(td => td.dataset.agg + "=" + td.textContent).join(" "))`)
		// Every window counted here, and no other but the flush
		// record's own (which idle time may close too, under load in
		// the same step as the others).
		seen := 0
		ok := true
		for _, g := range got {
			switch {
			case want[g]:
				seen++
			case strings.HasPrefix(g, fmt.Sprintf("%s@%d ", flush.Service, flush.TS/5000*5000)):
			default:
				ok = false
			}
		}
		return ok && seen == len(want), fmt.Sprintf("%q, want %d windows %v", got, len(want), want)
	})
	info := textOf(t, ctx, ".rb-block")
	if !strings.Contains(info, "rollup per_service shown") {
		t.Errorf("the block does not say which rollup it shows: %q", info)
	}
	if err := srv.stop(syscall.SIGTERM); err != nil {
		t.Errorf("eddy runbook serve exited with %v after SIGTERM", err)
	}
}
