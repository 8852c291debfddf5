package main

// Alerts end to end on a real broker: a generated stream with injected
// incidents (an error burst on one endpoint, a pause of another) must
// produce exactly the alert transitions that a plain model of the rules
// computes from the same input, and, in exactly-once mode, the same
// transitions again when the worker is SIGKILLed mid-stream and restarted.
//
// The input is keyed by the grouping key and produced to chosen partitions
// (source.keyed_by_group_key), so which keys share a task, and therefore
// each task's stream time, is known to the model.

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	neturl "net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eddy-streams/eddy/internal/kafkatest"
)

const (
	alWindow = 2000 // ms
	alGrace  = 1000
	alFor    = 5000 // absence
	alPerSec = 20   // records per key per second of event time
	alSecs   = 120
)

// alertInput is one record of the alert scenario.
type alertInput struct {
	part     int32
	endpoint string
	ts       int64
	status   int
}

var alertKeys = [][]string{{"/login", "/search", "/cart"}, {"/pay", "/home", "/about"}}

// alertScenario: every key gets alPerSec records per second for alSecs
// seconds of event time from t0, in time order per partition; /login fails
// 60% of requests in [20s, 30s) and /search gets nothing in [60s, 75s).
func alertScenario(t0 int64) []alertInput {
	var out []alertInput
	step := int64(1000 / alPerSec)
	for off := int64(0); off < alSecs*1000; off += step {
		for p, keys := range alertKeys {
			for i, k := range keys {
				ts := t0 + off + int64(i) // distinct, increasing per partition
				if k == "/search" && off >= 60_000 && off < 75_000 {
					continue
				}
				status := 200
				if k == "/login" && off >= 20_000 && off < 30_000 && (off/step)%5 < 3 {
					status = 500
				}
				out = append(out, alertInput{part: int32(p), endpoint: k, ts: ts, status: status})
			}
		}
	}
	return out
}

// transition is one alert transition, as published or as the model says.
type transition struct {
	rule, endpoint, state string
	at                    int64
}

func (x transition) String() string {
	return fmt.Sprintf("%s %s %s %s", x.rule, x.endpoint, x.state, time.UnixMilli(x.at).UTC().Format("15:04:05.000"))
}

// expectedAlerts computes the transitions of the two rules of alertSpec
// from the input with plain loops: per key, its 2s windows (empty ones
// included) for the threshold rule; per partition, in offset order, the
// stream time and each key's last record for the absence rule. After the
// input, stream time moves on (idle timeout), closing every window and
// firing every absence.
func expectedAlerts(in []alertInput) []transition {
	var out []transition
	// errors-high: errors > requests * 0.3 && requests >= 10, for 2, resolve 2.
	type win struct{ n, errs int }
	wins := map[string]map[int64]*win{}
	first, last := map[string]int64{}, map[string]int64{}
	for _, r := range in {
		s := r.ts - r.ts%alWindow
		if wins[r.endpoint] == nil {
			wins[r.endpoint] = map[int64]*win{}
			first[r.endpoint] = s
		}
		w := wins[r.endpoint][s]
		if w == nil {
			w = &win{}
			wins[r.endpoint][s] = w
		}
		w.n++
		if r.status >= 500 {
			w.errs++
		}
		last[r.endpoint] = max(last[r.endpoint], s)
	}
	for k, ws := range wins {
		state, hits, misses := "inactive", 0, 0
		for s := first[k]; s <= last[k]+10*alWindow; s += alWindow {
			w := ws[s]
			holds := w != nil && w.n >= 10 && float64(w.errs) > float64(w.n)*0.3
			at := s + alWindow + alGrace
			if state == "firing" {
				if holds {
					misses = 0
				} else if misses++; misses == 2 {
					state, misses = "resolved", 0
					out = append(out, transition{"errors-high", k, "resolved", at})
				}
				continue
			}
			if !holds {
				hits = 0
				continue
			}
			if hits++; hits == 2 {
				state, hits = "firing", 0
				out = append(out, transition{"errors-high", k, "firing", at})
			}
		}
	}
	// traffic-stopped: absence for 5s.
	for p := range alertKeys {
		stream := int64(-1 << 62)
		seen := map[string]int64{}
		firing := map[string]int64{} // key -> when it fired
		check := func() {
			for _, k := range alertKeys[p] {
				ls, ok := seen[k]
				if _, f := firing[k]; ok && !f && ls+alFor <= stream {
					firing[k] = ls + alFor
					out = append(out, transition{"traffic-stopped", k, "firing", ls + alFor})
				}
			}
		}
		for _, r := range in {
			if r.part != int32(p) {
				continue
			}
			seen[r.endpoint] = max(seen[r.endpoint], r.ts)
			if since, f := firing[r.endpoint]; f && seen[r.endpoint]+alFor > stream {
				out = append(out, transition{"traffic-stopped", r.endpoint, "resolved", max(r.ts, since)})
				delete(firing, r.endpoint)
			}
			stream = max(stream, r.ts)
			check()
		}
		stream = 1 << 62 // idle: stream time follows the wall clock
		check()
	}
	sortTransitions(out)
	return out
}

func sortTransitions(ts []transition) {
	slices.SortFunc(ts, func(a, b transition) int {
		return strings.Compare(fmt.Sprintf("%020d %s", a.at, a), fmt.Sprintf("%020d %s", b.at, b))
	})
}

func alertSpec(app, in, out, alerts, processing string) string {
	return fmt.Sprintf(`app: %s
source:
  topics: [%s]
  keyed_by_group_key: true
time: {field: ts}
key: [endpoint]
window: {type: tumbling, size: 2s, grace: 1s}
aggregates:
  - {name: requests, op: count}
  - {name: errors, op: count, where: 'status >= 500'}
output: {topic: %s}
processing: %s
commit_interval: 100ms
idle_timeout: 3s
alerts:
  topic: %s
  rules:
    - name: errors-high
      kind: threshold
      condition: errors > requests * 0.3 && requests >= 10
      for_windows: 2
      resolve_windows: 2
    - name: traffic-stopped
      kind: absence
      for: 5s
      forget_after: 1h
`, app, in, out, processing, alerts)
}

func alertRecords(in []alertInput, topic string) []*kgo.Record {
	recs := make([]*kgo.Record, 0, len(in))
	for _, r := range in {
		key, _ := json.Marshal([]string{r.endpoint})
		v, _ := json.Marshal(map[string]any{"endpoint": r.endpoint, "ts": r.ts, "status": r.status})
		recs = append(recs, &kgo.Record{Topic: topic, Partition: r.part, Key: key, Value: v})
	}
	return recs
}

// readAlerts reads the committed transitions on the alerts topic.
func readAlerts(t *testing.T, brokers []string, topic string) []transition {
	t.Helper()
	var out []transition
	for _, r := range kafkatest.ReadAll(t, brokers, topic, true) {
		var a struct {
			Rule, State, At string
			Key             map[string]string
		}
		if err := json.Unmarshal(r.Value, &a); err != nil {
			t.Fatalf("alert record is not JSON: %v: %s", err, r.Value)
		}
		at, err := time.Parse(time.RFC3339, a.At)
		if err != nil {
			t.Fatalf("alert at %q: %v", a.At, err)
		}
		if string(r.Key) != fmt.Sprintf("[%q]", a.Key["endpoint"]) {
			t.Errorf("alert record key %s, want the grouping key of %s", r.Key, a.Key["endpoint"])
		}
		out = append(out, transition{a.Rule, a.Key["endpoint"], a.State, at.UnixMilli()})
	}
	return out
}

// waitAlerts waits until the alerts topic holds n transitions (or timeout).
func waitAlerts(t *testing.T, brokers []string, topic string, n int, timeout time.Duration) []transition {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got := readAlerts(t, brokers, topic)
		if len(got) >= n || time.Now().After(deadline) {
			return got
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func TestKafkaAlerts(t *testing.T) {
	brokers := kafkatest.Real(t)
	t0 := time.Now().Add(-30*time.Minute).UnixMilli() / 60_000 * 60_000
	in := alertScenario(t0)
	want := expectedAlerts(in)
	// The scenario's incidents, as the model sees them: errors-high fires
	// and resolves on /login; traffic-stopped fires and resolves on
	// /search; after the input every key goes silent and fires.
	if len(want) != 2+2+6 {
		t.Fatalf("model: %d transitions, want 10: %v", len(want), want)
	}

	run := func(t *testing.T, processing string, kill bool) {
		app := kafkatest.Name(t, "alerts")
		inTopic, outTopic, alTopic := app+"-in", app+"-out", app+"-alerts"
		kafkatest.CreateTopic(t, brokers, inTopic, 2)
		dir := t.TempDir()
		specPath := filepath.Join(dir, "pipeline.yaml")
		if err := os.WriteFile(specPath, []byte(alertSpec(app, inTopic, outTopic, alTopic, processing)), 0o644); err != nil {
			t.Fatal(err)
		}
		stateDir := filepath.Join(dir, "state")
		recs := alertRecords(in, inTopic)
		w := startWorker(t, specPath, strings.Join(brokers, ","), stateDir)
		// Produce at about 2,000 records/s in partition order, so the
		// kill below lands mid-stream, with windows open and an alert
		// transition committed.
		cl := kafkatest.Client(t, brokers, kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.MaxProduceRequestsInflightPerBroker(1))
		var wg sync.WaitGroup
		var perr error
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
			defer cancel()
			for i := 0; i < len(recs) && perr == nil; i += 200 {
				perr = cl.ProduceSync(ctx, recs[i:min(i+200, len(recs))]...).FirstErr()
				time.Sleep(100 * time.Millisecond)
			}
		}()
		if kill {
			got := waitAlerts(t, brokers, alTopic, 1, 90*time.Second)
			if len(got) == 0 {
				t.Fatal("no alert within 90s")
			}
			if err := w.stop(syscall.SIGKILL); err == nil {
				t.Fatal("SIGKILLed worker exited 0")
			}
			t.Logf("SIGKILLed the worker after %d committed transition(s): %v", len(got), got)
			w = startWorker(t, specPath, strings.Join(brokers, ","), stateDir)
		}
		wg.Wait()
		if perr != nil {
			t.Fatalf("produce: %v", perr)
		}
		waitAlerts(t, brokers, alTopic, len(want), 120*time.Second)
		// No more may come: wait a little and read again.
		time.Sleep(3 * time.Second)
		got := readAlerts(t, brokers, alTopic)
		sortTransitions(got)
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("alert transitions (%s, kill=%v):\n got  %v\n want %v", processing, kill, got, want)
		}
		if err := w.stop(syscall.SIGTERM); err != nil {
			t.Errorf("worker exit: %v", err)
		}
	}
	t.Run("exactly_once", func(t *testing.T) {
		t.Parallel()
		run(t, "exactly_once", false)
	})
	t.Run("exactly_once-sigkill", func(t *testing.T) {
		t.Parallel()
		run(t, "exactly_once", true)
	})
	t.Run("at_least_once", func(t *testing.T) {
		t.Parallel()
		run(t, "at_least_once", false)
	})
}

// startAlertmanager runs Debian's prometheus-alertmanager on a free
// loopback port (scripts/test.sh installs it) and returns its URL. It
// fails, not skips, when the binary is missing.
func startAlertmanager(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("prometheus-alertmanager")
	if err != nil {
		bin, err = exec.LookPath("alertmanager")
	}
	if err != nil {
		t.Fatal("prometheus-alertmanager is not installed: scripts/test.sh installs it (apt-get install prometheus-alertmanager)")
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "alertmanager.yml")
	if err := os.WriteFile(cfg, []byte("route:\n  receiver: blackhole\nreceivers:\n  - name: blackhole\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Ask the OS for a free port; Alertmanager cannot report the one it
	// picked, so there is a short window in which another process could
	// take it (the start is then retried).
	for attempt := 0; ; attempt++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		cmd := exec.Command(bin, "--config.file="+cfg, "--storage.path="+filepath.Join(dir, "data"),
			"--web.listen-address="+addr, "--cluster.listen-address=", "--log.level=warn")
		var logs strings.Builder
		cmd.Stdout, cmd.Stderr = &logs, &logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			<-done
		})
		url := "http://" + addr
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			select {
			case <-done:
				if attempt < 3 {
					t.Logf("alertmanager exited (port taken?), retrying:\n%s", logs.String())
					goto retry
				}
				t.Fatalf("alertmanager exited:\n%s", logs.String())
			default:
			}
			if resp, err := http.Get(url + "/-/ready"); err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					return url
				}
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Fatalf("alertmanager not ready within 30s:\n%s", logs.String())
	retry:
	}
}

// amAlerts returns Alertmanager's current alerts named alertname.
func amAlerts(t *testing.T, url, alertname string) []map[string]any {
	t.Helper()
	resp, err := http.Get(url + "/api/v2/alerts?filter=" + neturl.QueryEscape(`alertname="`+alertname+`"`))
	if err != nil {
		t.Fatalf("GET alerts: %v", err)
	}
	defer resp.Body.Close()
	var out []map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("alerts: %v", err)
	}
	return out
}

// TestKafkaAlertmanager: eddy posts a firing alert to a real Alertmanager,
// which shows it with our labels, and resolves it there after the resolve
// transition.
func TestKafkaAlertmanager(t *testing.T) {
	brokers := kafkatest.Real(t)
	am := startAlertmanager(t)
	app := kafkatest.Name(t, "am")
	inTopic := app + "-in"
	kafkatest.CreateTopic(t, brokers, inTopic, 2)
	dir := t.TempDir()
	spec := strings.Replace(alertSpec(app, inTopic, app+"-out", app+"-alerts", "at_least_once"),
		"idle_timeout: 3s", "idle_timeout: 1h", 1) // only records move stream time here
	spec = strings.Replace(spec, "      for_windows: 2\n", "      for_windows: 2\n      severity: critical\n      labels: {team: web}\n      runbook_url: https://runbooks.example/errors\n", 1)
	specPath := filepath.Join(dir, "pipeline.yaml")
	if err := os.WriteFile(specPath, []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	in := alertScenario(time.Now().Add(-10*time.Minute).UnixMilli() / 60_000 * 60_000)
	// Phase 1: up to 28s of event time, inside /login's error burst
	// ([20s, 30s)): errors-high fires and stays firing.
	var phase1, phase2 []alertInput
	for _, r := range in {
		if r.ts-in[0].ts < 28_000 {
			phase1 = append(phase1, r)
		} else if r.ts-in[0].ts < 45_000 {
			phase2 = append(phase2, r)
		}
	}
	w := startWorker(t, specPath, strings.Join(brokers, ","), filepath.Join(dir, "state"), "EDDY_ALERTMANAGER_URL="+am)
	produceSync(t, brokers, alertRecords(phase1, inTopic))
	var firing map[string]any
	deadline := time.Now().Add(60 * time.Second)
	for firing == nil && time.Now().Before(deadline) {
		for _, a := range amAlerts(t, am, "errors-high") {
			if l, _ := a["labels"].(map[string]any); l["endpoint"] == "/login" {
				firing = a
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	if firing == nil {
		t.Fatalf("errors-high for /login did not appear in Alertmanager within 60s\neddy log:\n%s", w.logs())
	}
	labels := firing["labels"].(map[string]any)
	for k, v := range map[string]string{"alertname": "errors-high", "endpoint": "/login", "severity": "critical", "team": "web", "eddy_app": app} {
		if labels[k] != v {
			t.Errorf("Alertmanager label %s = %v, want %q (labels %v)", k, labels[k], v, labels)
		}
	}
	t.Logf("in Alertmanager: %v", firing)
	ann, _ := firing["annotations"].(map[string]any)
	if s, _ := ann["summary"].(string); !strings.Contains(s, "errors-high firing") || ann["runbook_url"] != "https://runbooks.example/errors" {
		t.Errorf("annotations %v", ann)
	}
	if st, _ := firing["status"].(map[string]any); st["state"] != "active" {
		t.Errorf("status %v, want active", firing["status"])
	}
	// Phase 2: the burst ends; two good windows resolve the alert.
	produceSync(t, brokers, alertRecords(phase2, inTopic))
	deadline = time.Now().Add(60 * time.Second)
	for {
		resolved := true
		for _, a := range amAlerts(t, am, "errors-high") {
			l, _ := a["labels"].(map[string]any)
			ends, _ := time.Parse(time.RFC3339, fmt.Sprint(a["endsAt"]))
			if l["endpoint"] == "/login" && ends.After(time.Now()) {
				resolved = false
			}
		}
		if resolved {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("errors-high for /login still active in Alertmanager 60s after it resolved\neddy log:\n%s", w.logs())
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err := w.stop(syscall.SIGTERM); err != nil {
		t.Errorf("worker exit: %v", err)
	}
	for _, line := range strings.Split(w.logs(), "\n") {
		if strings.Contains(line, `msg=alert`) {
			t.Log(line)
		}
	}
}
