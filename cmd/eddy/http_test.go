package main

// Tests of what an operator sees: the health, readiness and metrics
// endpoints of `eddy run`, `eddy describe` and `eddy settings`.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eddy-streams/eddy/internal/kafkatest"
)

var httpAddrRe = regexp.MustCompile(`msg="serving health and metrics" addr=(\S+)`)

// httpAddr waits for the worker's log line naming the address it serves
// HTTP on (it was started with --http-addr 127.0.0.1:0).
func (w *worker) httpAddr(t *testing.T) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if m := httpAddrRe.FindStringSubmatch(w.logs()); m != nil {
			return m[1]
		}
		if time.Now().After(deadline) {
			t.Fatalf("no log line %q with the address within 30s", "serving health and metrics")
		}
		w.checkRunning(t)
		time.Sleep(20 * time.Millisecond)
	}
}

func (w *worker) checkRunning(t *testing.T) {
	t.Helper()
	select {
	case err := <-w.done:
		w.exited = true
		t.Fatalf("eddy exited early: %v", err)
	default:
	}
}

type httpResp struct {
	code        int
	body        string
	contentType string
}

func httpGet(t *testing.T, url string) httpResp {
	t.Helper()
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return httpResp{code: resp.StatusCode, body: string(b), contentType: resp.Header.Get("Content-Type")}
}

// scrape reads /metrics and parses it with Prometheus' own text parser.
func scrape(t *testing.T, addr string) map[string]*dto.MetricFamily {
	t.Helper()
	r := httpGet(t, "http://"+addr+"/metrics")
	if r.code != http.StatusOK {
		t.Fatalf("/metrics: %d %s", r.code, r.body)
	}
	if !strings.HasPrefix(r.contentType, "text/plain") {
		t.Errorf("/metrics Content-Type %q, want the Prometheus text format (text/plain; version=0.0.4)", r.contentType)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(strings.NewReader(r.body))
	if err != nil {
		t.Fatalf("/metrics is not in the Prometheus text format: %v\n%s", err, r.body)
	}
	return mfs
}

// metricValue is the value of one sample (counter, gauge or untyped; the
// sample count of a histogram).
func metricValue(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Histogram != nil:
		return float64(m.Histogram.GetSampleCount())
	case m.Untyped != nil:
		return m.Untyped.GetValue()
	}
	return 0
}

// sumMetric sums the samples of name whose labels include match.
func sumMetric(mfs map[string]*dto.MetricFamily, name string, match map[string]string) (float64, int) {
	mf := mfs[name]
	if mf == nil {
		return 0, 0
	}
	var sum float64
	n := 0
next:
	for _, m := range mf.Metric {
		for k, v := range match {
			found := false
			for _, lp := range m.Label {
				if lp.GetName() == k && lp.GetValue() == v {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		sum += metricValue(m)
		n++
	}
	return sum, n
}

// eddyMetrics are the metrics an operator's dashboards and alerts use.
var eddyMetrics = map[string]dto.MetricType{
	"eddy_records_in_total":        dto.MetricType_COUNTER,
	"eddy_records_out_total":       dto.MetricType_COUNTER,
	"eddy_dead_letters_total":      dto.MetricType_COUNTER,
	"eddy_late_records_total":      dto.MetricType_COUNTER,
	"eddy_commit_duration_seconds": dto.MetricType_HISTOGRAM,
	"eddy_restore_records_total":   dto.MetricType_GAUGE,
	"eddy_consumer_lag_records":    dto.MetricType_GAUGE,
	"eddy_ready":                   dto.MetricType_GAUGE,
	"eddy_stream_time_seconds":     dto.MetricType_GAUGE,
	"eddy_open_windows":            dto.MetricType_GAUGE,
}

// checkMetricNames checks that each metric is served, with its type and at
// least one sample (except those named in skip).
func checkMetricNames(t *testing.T, mfs map[string]*dto.MetricFamily, skip ...string) {
	t.Helper()
	names := make([]string, 0, len(eddyMetrics))
	for n := range eddyMetrics {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if contains(skip, n) {
			continue
		}
		mf := mfs[n]
		switch {
		case mf == nil:
			t.Errorf("/metrics lacks %s", n)
		case mf.GetType() != eddyMetrics[n]:
			t.Errorf("/metrics: %s is a %v, want a %v", n, mf.GetType(), eddyMetrics[n])
		case len(mf.Metric) == 0:
			t.Errorf("/metrics: %s has no sample", n)
		case mf.GetHelp() == "":
			t.Errorf("/metrics: %s has no help text", n)
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// waitMetric polls /metrics until cond holds.
func waitMetric(t *testing.T, w *worker, addr, what string, cond func(map[string]*dto.MetricFamily) bool) map[string]*dto.MetricFamily {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		mfs := scrape(t, addr)
		if cond(mfs) {
			return mfs
		}
		if time.Now().After(deadline) {
			t.Fatalf("/metrics: no %s within 60s", what)
		}
		w.checkRunning(t)
		time.Sleep(100 * time.Millisecond)
	}
}

// waitReady polls /readyz until it answers 200, and returns how long that
// took. /healthz must answer 200 all along.
func waitReady(t *testing.T, w *worker, addr string) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		if h := httpGet(t, "http://"+addr+"/healthz"); h.code != http.StatusOK {
			t.Fatalf("/healthz: %d %q, want 200 while the process runs", h.code, h.body)
		}
		r := httpGet(t, "http://"+addr+"/readyz")
		switch r.code {
		case http.StatusOK:
			return time.Since(start)
		case http.StatusServiceUnavailable:
		default:
			t.Fatalf("/readyz: %d %q, want 200 or 503", r.code, r.body)
		}
		if time.Since(start) > 60*time.Second {
			t.Fatalf("/readyz still %d after 60s: %s", r.code, r.body)
		}
		w.checkRunning(t)
		time.Sleep(50 * time.Millisecond)
	}
}

// TestHTTPEndpoints runs `eddy run` on kfake and checks /healthz, /readyz
// and /metrics: a first worker processes known input (good, bad and late
// records); a second one, on an empty state directory, restores the
// changelog, so that every metric has samples.
func TestHTTPEndpoints(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Kfake(t)
	const parts = 2
	e := newE2EWith(t, brokers, "at_least_once", newScenario(11, parts, 40, 4))

	w := startWorker(t, e.spec, e.brokerList(), t.TempDir())
	addr := w.httpAddr(t)
	if h := httpGet(t, "http://"+addr+"/healthz"); h.code != http.StatusOK {
		t.Fatalf("/healthz: %d %q", h.code, h.body)
	}
	took := waitReady(t, w, addr)
	// Ready means in the group with its partitions (the only worker: all).
	waitMetric(t, w, addr, "eddy_tasks = 2 and eddy_ready = 1", func(m map[string]*dto.MetricFamily) bool {
		tasks, _ := sumMetric(m, "eddy_tasks", nil)
		ready, _ := sumMetric(m, "eddy_ready", nil)
		return tasks == parts && ready == 1
	})
	t.Logf("ready after %s", took.Round(time.Millisecond))
	if h := httpGet(t, "http://"+addr+"/nope"); h.code != http.StatusNotFound {
		t.Errorf("GET /nope: %d, want 404", h.code)
	}

	recs := append(e.sc.records(e.in), e.sc.badRecords(e.in)...)
	produceSync(t, brokers, recs)
	e.waitIdle(t, 60*time.Second, w)
	late := lateIDs(t, brokers, e.late)
	// Metrics are updated as records are processed, before the commit that
	// waitIdle sees; they are all there once the counters match.
	mfs := waitMetric(t, w, addr, "all input counted", func(m map[string]*dto.MetricFamily) bool {
		in, _ := sumMetric(m, "eddy_records_in_total", map[string]string{"topic": e.in})
		dl, _ := sumMetric(m, "eddy_dead_letters_total", nil)
		lt, _ := sumMetric(m, "eddy_late_records_total", nil)
		return in == float64(len(recs)) && dl == float64(len(e.sc.bad)) && lt == float64(len(late))
	})
	checkMetricNames(t, mfs, "eddy_restore_records_total") // nothing to restore yet: the changelog was empty
	checkWorkerMetrics(t, e, mfs, len(recs), len(late))
	if t.Failed() {
		t.FailNow()
	}
	if err := w.stop(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM: eddy exited with %v", err)
	}

	// A second worker on an empty state directory restores the changelog.
	w2 := startWorker(t, e.spec, e.brokerList(), t.TempDir())
	addr2 := w2.httpAddr(t)
	took = waitReady(t, w2, addr2)
	t.Logf("second worker: /readyz 200 after %s", took.Round(time.Millisecond))
	// The restore is over once both tasks exist and the worker is ready
	// (/readyz can answer 200 before the worker joined its group: see
	// TestHTTPReadyzWaitsForGroup).
	mfs = waitMetric(t, w2, addr2, "eddy_tasks = 2 and eddy_ready = 1 after the restore", func(m map[string]*dto.MetricFamily) bool {
		tasks, _ := sumMetric(m, "eddy_tasks", nil)
		ready, _ := sumMetric(m, "eddy_ready", nil)
		return tasks == parts && ready == 1
	})
	ends := changelogEnds(t, e)
	for p := int32(0); p < parts; p++ {
		lbl := map[string]string{"partition": fmt.Sprint(p)}
		total, n := sumMetric(mfs, "eddy_restore_records_total", lbl)
		done, _ := sumMetric(mfs, "eddy_restore_records_done", lbl)
		if n != 1 || total != float64(ends[p]) || done != total {
			t.Errorf("partition %d: eddy_restore_records_total = %v (%d samples), _done = %v; the changelog holds %d records to restore",
				p, total, n, done, ends[p])
		}
	}
	if restored, _ := sumMetric(mfs, "eddy_restored_records_total", nil); restored != float64(ends[0]+ends[1]) {
		t.Errorf("eddy_restored_records_total = %v, want %d", restored, ends[0]+ends[1])
	}
	// A few more records, one of each fate, so the second worker has
	// samples of every metric too.
	k := e.sc.keyOrder[0]
	svc, ep, _ := strings.Cut(k, "|")
	more := []*kgo.Record{
		{Topic: e.in, Partition: 0, Value: mustJSON(tevent{ID: "more-1", TS: e.sc.flushTS + 1000, Service: svc, Endpoint: ep, Status: 200, Latency: 3})},
		{Topic: e.in, Partition: 0, Value: mustJSON(tevent{ID: "more-late", TS: e.sc.t0, Service: svc, Endpoint: ep, Status: 200, Latency: 3})},
		{Topic: e.in, Partition: 1, Value: []byte(`{"ts": "not a time"`)},
	}
	produceSync(t, brokers, more)
	mfs = waitMetric(t, w2, addr2, "the new records counted", func(m map[string]*dto.MetricFamily) bool {
		in, _ := sumMetric(m, "eddy_records_in_total", map[string]string{"topic": e.in})
		dl, _ := sumMetric(m, "eddy_dead_letters_total", nil)
		lt, _ := sumMetric(m, "eddy_late_records_total", nil)
		return in == 3 && dl == 1 && lt == 1
	})
	checkMetricNames(t, mfs)
	if err := w2.stop(syscall.SIGTERM); err != nil {
		t.Errorf("SIGTERM: eddy exited with %v", err)
	}
}

// changelogEnds returns the end offset of each partition of the app's
// changelog topic.
func changelogEnds(t *testing.T, e *e2e) map[int32]int64 {
	t.Helper()
	adm := kadm.NewClient(kafkatest.Client(t, e.brokers))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	topics, err := adm.ListTopics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var changelog string
	for _, name := range topics.Names() {
		if strings.HasPrefix(name, e.app+"-") && strings.HasSuffix(name, "-changelog") {
			changelog = name
		}
	}
	if changelog == "" {
		t.Fatalf("no changelog topic of %s among %v", e.app, topics.Names())
	}
	ends, err := adm.ListEndOffsets(ctx, changelog)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) { out[o.Partition] = o.Offset })
	return out
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// checkWorkerMetrics checks the values after the known input was processed.
func checkWorkerMetrics(t *testing.T, e *e2e, mfs map[string]*dto.MetricFamily, nIn, nLate int) {
	t.Helper()
	get := func(name string, labels map[string]string) (float64, int) { return sumMetric(mfs, name, labels) }
	// Everything that went through the repartition topic came back in
	// (eddy's watermark records there are counted apart).
	repart := e.app + "-repartition"
	outRepart, _ := get("eddy_records_out_total", map[string]string{"topic": repart})
	inRepart, _ := get("eddy_records_in_total", map[string]string{"topic": repart})
	if wantRepart := float64(nIn - len(e.sc.bad)); outRepart != wantRepart || inRepart != wantRepart {
		t.Errorf("repartition topic: %v records out, %v in; want %v both", outRepart, inRepart, wantRepart)
	}
	if wm, _ := get("eddy_watermark_records_total", map[string]string{"direction": "out"}); wm == 0 {
		t.Errorf("eddy_watermark_records_total{direction=out} = 0: no watermark record was written")
	}
	for _, c := range []struct {
		topic string
		want  float64
	}{{e.dlq, float64(len(e.sc.bad))}, {e.late, float64(nLate)}} {
		if got, _ := get("eddy_records_out_total", map[string]string{"topic": c.topic}); got != c.want {
			t.Errorf("eddy_records_out_total{topic=%q} = %v, want %v", c.topic, got, c.want)
		}
	}
	outs := len(kafkatest.ReadAll(t, e.brokers, e.out, true))
	if got, _ := get("eddy_records_out_total", map[string]string{"topic": e.out}); got != float64(outs) {
		t.Errorf("eddy_records_out_total{topic=%q} = %v, the topic holds %d", e.out, got, outs)
	}
	changelog := false
	for _, m := range mfs["eddy_records_out_total"].GetMetric() {
		for _, l := range m.Label {
			if l.GetName() == "topic" && strings.HasPrefix(l.GetValue(), e.app+"-") && strings.HasSuffix(l.GetValue(), "-changelog") && metricValue(m) > 0 {
				changelog = true
			}
		}
	}
	if !changelog {
		t.Errorf("eddy_records_out_total counts no record written to the changelog")
	}
	if _, n := get("eddy_dead_letters_total", nil); n == 0 {
		t.Errorf("eddy_dead_letters_total has no sample by error class")
	}
	if c, _ := get("eddy_commit_duration_seconds", nil); c == 0 {
		t.Errorf("eddy_commit_duration_seconds observed no commit")
	}
	// Every input partition is caught up; stream time per task is the
	// flush records' time.
	for p := 0; p < int(e.sc.parts); p++ {
		lbl := fmt.Sprint(p)
		if lag, n := get("eddy_consumer_lag_records", map[string]string{"topic": e.in, "partition": lbl}); n != 1 || lag != 0 {
			t.Errorf("eddy_consumer_lag_records{topic=%q,partition=%q} = %v (%d samples), want 0", e.in, lbl, lag, n)
		}
		if lag, _ := get("eddy_consumer_lag_records", map[string]string{"topic": repart, "partition": lbl}); lag != 0 {
			t.Errorf("eddy_consumer_lag_records{topic=%q,partition=%q} = %v, want 0", repart, lbl, lag)
		}
		if st, n := get("eddy_stream_time_seconds", map[string]string{"partition": lbl}); n != 1 || st*1000 > float64(e.sc.flushTS+1000) {
			t.Errorf("eddy_stream_time_seconds{partition=%q} = %v (%d samples), want at most the flush time %v", lbl, st, n, float64(e.sc.flushTS)/1000)
		}
		if ow, n := get("eddy_open_windows", map[string]string{"partition": lbl}); n != 1 || ow < 0 {
			t.Errorf("eddy_open_windows{partition=%q} = %v (%d samples)", lbl, ow, n)
		}
	}
	// The flush records close every window: stream time reached them.
	if st := mfs["eddy_stream_time_seconds"]; st != nil {
		maxST := 0.0
		for _, m := range st.Metric {
			maxST = max(maxST, metricValue(m))
		}
		if maxST*1000 < float64(e.sc.flushTS) {
			t.Errorf("eddy_stream_time_seconds: highest %v, want the flush time %v", maxST, float64(e.sc.flushTS)/1000)
		}
	}
	if r, _ := get("eddy_ready", nil); r != 1 {
		t.Errorf("eddy_ready = %v, want 1", r)
	}
}

// TestHTTPReadyzWaitsForGroup: /readyz must not answer 200 before the
// worker is in its consumer group with its partitions' state restored. A
// member that holds up the rebalance keeps the worker out of the group.
func TestHTTPReadyzWaitsForGroup(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Kfake(t)
	e := newE2EWith(t, brokers, "at_least_once", newScenario(5, 2, 10, 2))
	assigned := make(chan struct{}, 1)
	// A member of the same group that polls and then blocks rebalances: a
	// new member's join waits for it (up to its rebalance timeout).
	holder, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumerGroup(e.app), kgo.ConsumeTopics(e.in),
		kgo.BlockRebalanceOnPoll(), kgo.RebalanceTimeout(30*time.Second),
		kgo.OnPartitionsAssigned(func(context.Context, *kgo.Client, map[string][]int32) {
			select {
			case assigned <- struct{}{}:
			default:
			}
		}))
	if err != nil {
		t.Fatal(err)
	}
	released := false
	release := func() {
		if !released {
			released = true
			holder.AllowRebalance()
			holder.Close()
		}
	}
	defer release()
	deadline := time.Now().Add(30 * time.Second)
	for len(assigned) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the holding member got no partitions in 30s")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		holder.PollFetches(ctx)
		cancel()
		if len(assigned) == 0 {
			holder.AllowRebalance()
		}
	}

	w := startWorker(t, e.spec, e.brokerList(), t.TempDir())
	addr := w.httpAddr(t)
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); {
		if h := httpGet(t, "http://"+addr+"/healthz"); h.code != http.StatusOK {
			t.Fatalf("/healthz: %d %q while joining, want 200 (alive)", h.code, h.body)
		}
		mfs := scrape(t, addr)
		tasks, _ := sumMetric(mfs, "eddy_tasks", nil)
		if r := httpGet(t, "http://"+addr+"/readyz"); r.code == http.StatusOK {
			t.Fatalf("/readyz answered 200 (eddy_tasks %v) while the worker cannot join its group", tasks)
		}
		time.Sleep(50 * time.Millisecond)
	}
	release()
	took := waitReady(t, w, addr)
	t.Logf("ready %s after the holding member left", took.Round(time.Millisecond))
	mfs := scrape(t, addr)
	if tasks, _ := sumMetric(mfs, "eddy_tasks", nil); tasks != 2 {
		t.Errorf("ready with eddy_tasks = %v, want 2", tasks)
	}
	if err := w.stop(syscall.SIGTERM); err != nil {
		t.Errorf("SIGTERM: eddy exited with %v", err)
	}
}

// TestDescribe: `eddy describe` on the bundled pipeline explains it, and a
// bad pipeline file fails with an error that names the field.
func TestDescribe(t *testing.T) {
	t.Parallel()
	example, err := filepath.Abs("../../deploy/pipelines/http-requests.yaml")
	if err != nil {
		t.Fatal(err)
	}
	r := runEddy(t, 30*time.Second, "describe", "-f", example)
	if r.code != 0 {
		t.Fatalf("eddy describe exited %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	for _, want := range []string{"http-stats-10s", "http-stats-requests-by-endpoint-changelog", "http-stats-repartition",
		"http-stats-late", "http-stats-dlq", "http-requests"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("describe does not name topic %s:\n%s", want, r.stdout)
		}
	}
	// The worked example: a record for a time, its window, when the window
	// closes, and when such a record is late.
	flat := strings.Join(strings.Fields(r.stdout), " ")
	late := regexp.MustCompile(`[^.;]* is late[^.;]*`).FindString(flat)
	if late == "" {
		t.Errorf("describe has no sentence saying when a record is late:\n%s", r.stdout)
	} else if !strings.Contains(late, "http-stats-late") {
		t.Errorf("the late example does not say where late records go: %q", late)
	}
	if !regexp.MustCompile(`window \[\d\d:\d\d:\d\d, \d\d:\d\d:\d\d\)`).MatchString(flat) ||
		!strings.Contains(flat, "grace") {
		t.Errorf("describe has no worked example of a window and its grace:\n%s", r.stdout)
	}

	dir := t.TempDir()
	good := `app: x
source:
  topics: [in]
time:
  field: ts
key: [k]
window:
  type: tumbling
  size: 10s
  grace: 5s
aggregates:
  - {name: n, op: count}
output:
  topic: out
`
	for _, c := range []struct {
		name, yaml string
		want       []string // in the error
	}{
		{"unknown-key", good + "bogus_key: 1\n", []string{"bogus_key", "unknown"}},
		{"typo-nested", strings.Replace(good, "  grace: 5s", "  grase: 5s", 1), []string{"grase"}},
		{"no-window-size", strings.Replace(good, "  size: 10s\n", "", 1), []string{"window.size"}},
		{"both", strings.Replace(good, "  size: 10s\n", "", 1) + "bogus_key: 1\n", []string{"bogus_key"}},
		// eddy run refuses it too (topology validation is shared).
		{"keyed-two-topics", strings.Replace(good, "  topics: [in]\n", "  topics: [in, in2]\n  keyed_by_group_key: true\n", 1),
			[]string{"source.keyed_by_group_key", "one source topic only"}},
	} {
		p := filepath.Join(dir, c.name+".yaml")
		if err := os.WriteFile(p, []byte(c.yaml), 0o644); err != nil {
			t.Fatal(err)
		}
		r := runEddy(t, 30*time.Second, "describe", "-f", p)
		if r.code == 0 {
			t.Errorf("%s: eddy describe accepted a bad pipeline:\n%s", c.name, r.stdout)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(r.stderr, w) {
				t.Errorf("%s: the error does not name %q:\n%s", c.name, w, r.stderr)
			}
		}
		if !strings.Contains(r.stderr, p) {
			t.Errorf("%s: the error does not name the file:\n%s", c.name, r.stderr)
		}
	}
	if r := runEddy(t, 30*time.Second, "describe", "-f", filepath.Join(dir, "missing.yaml")); r.code == 0 {
		t.Errorf("describe of a missing file exited 0")
	}
}

// TestSettings: `eddy settings` prints a Markdown table with every flag of
// `eddy run`, its environment variable and default as `eddy run --help`
// shows them.
func TestSettings(t *testing.T) {
	t.Parallel()
	r := runEddy(t, 30*time.Second, "settings")
	if r.code != 0 {
		t.Fatalf("eddy settings exited %d: %s", r.code, r.stderr)
	}
	lines := r.lines()
	if len(lines) < 3 {
		t.Fatalf("eddy settings: no table:\n%s", r.stdout)
	}
	header := splitRow(lines[0])
	if len(header) != 4 || !strings.Contains(strings.ToLower(lines[0]), "flag") {
		t.Errorf("table header %q: want 4 columns starting with the flag", lines[0])
	}
	if !regexp.MustCompile(`^\|( *:?-{3,}:? *\|)+$`).MatchString(lines[1]) || len(splitRow(lines[1])) != len(header) {
		t.Errorf("second line %q is not a Markdown table delimiter row for %d columns", lines[1], len(header))
	}
	rows := map[string][]string{}
	for _, l := range lines[2:] {
		cells := splitRow(l)
		if len(cells) != len(header) {
			t.Errorf("row %q has %d cells, want %d", l, len(cells), len(header))
			continue
		}
		flag := strings.Trim(cells[0], "` ")
		rows[flag] = cells
	}

	help := runEddy(t, 30*time.Second, "run", "--help")
	if help.code != 0 {
		t.Fatalf("eddy run --help exited %d: %s", help.code, help.stderr)
	}
	flagRe := regexp.MustCompile(`^\s+(?:-\w, )?(--[a-z0-9-]+)(?: \w+)?\s+(.*)$`)
	envRe := regexp.MustCompile(`\(env (EDDY_[A-Z0-9_]+)\)`)
	defRe := regexp.MustCompile(`\(default "?([^")]*)"?\)`)
	n := 0
	for _, l := range strings.Split(help.stdout, "\n") {
		m := flagRe.FindStringSubmatch(l)
		if m == nil || m[1] == "--help" {
			continue
		}
		n++
		row, ok := rows[m[1]]
		if !ok {
			t.Errorf("eddy run flag %s is not in the settings table", m[1])
			continue
		}
		if env := envRe.FindStringSubmatch(m[2]); env == nil || !strings.Contains(row[1], env[1]) {
			t.Errorf("%s: environment variable in --help %v, table %q", m[1], env, row[1])
		}
		if def := defRe.FindStringSubmatch(m[2]); def != nil && !strings.Contains(row[2], def[1]) {
			t.Errorf("%s: default in --help %q, table %q", m[1], def[1], row[2])
		}
		if strings.TrimSpace(row[3]) == "" {
			t.Errorf("%s: no meaning in the table", m[1])
		}
	}
	if n < 7 {
		t.Errorf("found %d flags in eddy run --help, want at least 7:\n%s", n, help.stdout)
	}
}

// splitRow splits a Markdown table row into its cells ("\|" is not a
// separator).
func splitRow(l string) []string {
	l = strings.TrimSpace(l)
	if !strings.HasPrefix(l, "|") || !strings.HasSuffix(l, "|") {
		return nil
	}
	l = strings.ReplaceAll(l[1:len(l)-1], `\|`, "\x00")
	var cells []string
	for _, c := range strings.Split(l, "|") {
		cells = append(cells, strings.TrimSpace(strings.ReplaceAll(c, "\x00", "|")))
	}
	return cells
}
