package console

// The API of a pipeline with several rollups (topology.Spec.Rollups):
// records the test writes itself in the shapes eddy writes, on the real
// broker, read back per rollup.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eddy-streams/eddy/internal/kafkatest"
	"github.com/eddy-streams/eddy/topology"
)

// rollupsYAML is a pipeline of three rollups: ep_10s by endpoint (with a
// top_k), ep_1m chained from it (with an alert rule), cust_5m by customer
// (its own repartition topic).
const rollupsYAML = `app: %s
source: {topics: [%s]}
time: {field: ts}
rollups:
  - name: ep_10s
    key: [endpoint]
    window: {type: tumbling, size: 10s, grace: 5s}
    aggregates:
      - {name: requests, op: count}
      - {name: top_agents, op: top_k, k: 2, field: agent}
    output: {topic: %s}
  - name: ep_1m
    from: ep_10s
    window: {type: tumbling, size: 1m}
    output: {topic: %s}
    alerts:
      rules:
        - {name: busy, kind: threshold, condition: requests > 100, value: requests}
  - name: cust_5m
    key: [customer]
    window: {type: tumbling, size: 5m}
    aggregates:
      - {name: requests, op: count}
    emit: update
    output: {topic: %s}
`

// openWindowsCall is one call of Config.OpenWindowsIn.
type openWindowsCall struct{ rollup, key string }

func newRollupsEnv(t *testing.T, cfg Config) *env {
	t.Helper()
	brokers := kafkatest.Real(t)
	app := kafkatest.Name(t, "app")
	y := fmt.Sprintf(rollupsYAML, app, kafkatest.Name(t, "in"), kafkatest.Name(t, "out10s"), kafkatest.Name(t, "out1m"), kafkatest.Name(t, "out5m"))
	spec, err := topology.Parse([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	topics := []string{spec.Source.Topics[0], spec.DeadLetterTopic, spec.LateTopic}
	for _, r := range spec.Rollups {
		topics = append(topics, r.Output.Topic)
	}
	topics = append(topics, app+"-ep_1m-alerts") // the documented default of a rollup's alerts topic
	for _, topic := range topics {
		kafkatest.CreateTopic(t, brokers, topic, 2)
	}
	cfg.Spec, cfg.Brokers = spec, brokers
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	con, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(con.Handler())
	t.Cleanup(func() {
		con.Close()
		srv.Close()
	})
	return &env{brokers: brokers, spec: spec, srv: srv, con: con}
}

// TestKafkaAPIRollups: the pipeline lists every rollup (its key, window,
// store, repartition, output and alerts topic); every output and alerts
// topic is a step; results, open windows and alerts read the rollup named
// by the rollup parameter (default the first), with top_k lists as
// lists; a late record names its rollup.
func TestKafkaAPIRollups(t *testing.T) {
	var mu sync.Mutex
	var calls []openWindowsCall
	e := newRollupsEnv(t, Config{OpenWindowsIn: func(rollup, key string) ([]json.RawMessage, error) {
		mu.Lock()
		defer mu.Unlock()
		calls = append(calls, openWindowsCall{rollup, key})
		return []json.RawMessage{json.RawMessage(`{"rollup":` + jsonText(rollup) + `}`)}, nil
	}})
	t.Parallel()
	app := e.spec.App
	out10s, out1m, out5m := e.spec.Rollups[0].Output.Topic, e.spec.Rollups[1].Output.Topic, e.spec.Rollups[2].Output.Topic
	alerts := app + "-ep_1m-alerts"

	// The pipeline.
	var p pipelineJSON
	e.getJSON(t, "/api/v1/pipeline", http.StatusOK, &p)
	type row struct{ name, from, key, repart, output, alerts, store string }
	var got []row
	for _, r := range p.Rollups {
		got = append(got, row{r.Name, r.From, strings.Join(r.Key, ","), r.Repartition, r.Output, r.Alerts, r.Store})
	}
	want := []row{
		{"ep_10s", "", "endpoint", app + "-repartition", out10s, "", "ep_10s"},
		{"ep_1m", "ep_10s", "endpoint", app + "-repartition", out1m, alerts, "ep_1m"},
		{"cust_5m", "", "customer", app + "-cust_5m-repartition", out5m, "", "cust_5m"},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("rollups\n got %v\nwant %v", got, want)
	}
	if p.Rollups[2].Window.SizeMs != 300_000 || p.Rollups[2].Window.Emit != "update" || p.Rollups[1].Window.SizeMs != 60_000 ||
		len(p.Rollups[1].Aggregates) != 2 || p.Rollups[0].Aggregates[1].Op != "top_k" {
		t.Errorf("rollup windows and aggregates %+v", p.Rollups)
	}
	// The first rollup's key, window and aggregates at the top, as in a
	// pipeline of one.
	if strings.Join(p.Key, ",") != "endpoint" || p.Window.SizeMs != 10_000 || len(p.Aggregates) != 2 {
		t.Errorf("pipeline's first rollup %+v %+v %+v", p.Key, p.Window, p.Aggregates)
	}
	var steps []string
	for _, s := range p.Steps {
		steps = append(steps, s.Step+"="+s.Topic)
	}
	wantSteps := []string{"input=" + e.spec.Source.Topics[0], "output:ep_10s=" + out10s, "output:ep_1m=" + out1m, "output:cust_5m=" + out5m,
		"late=" + e.spec.LateTopic, "dead-letter=" + e.spec.DeadLetterTopic, "alerts:ep_1m=" + alerts}
	if !slices.Equal(steps, wantSteps) {
		t.Errorf("steps\n got %v\nwant %v", steps, wantSteps)
	}

	// Results of each rollup, written by the test.
	base := time.Now().Add(-time.Hour).Truncate(5 * time.Minute).UTC()
	at := func(d time.Duration) string { return base.Add(d).Format(time.RFC3339Nano) }
	type agent struct {
		v string
		n int
	}
	ep10 := func(endpoint string, w int, top []agent) *kgo.Record {
		n := 0
		var list []string
		for _, a := range top {
			n += a.n
			list = append(list, fmt.Sprintf(`{"count":%d,"value":%q}`, a.n, a.v))
		}
		start := time.Duration(w) * 10 * time.Second
		v := fmt.Sprintf(`{"endpoint":%q,"key":{"endpoint":%q},"requests":%d,"top_agents":[%s],"window_start":%q,"window_end":%q}`,
			endpoint, endpoint, n, strings.Join(list, ","), at(start), at(start+10*time.Second))
		return &kgo.Record{Topic: out10s, Key: []byte(`[` + jsonText(endpoint) + `]`), Value: []byte(v)}
	}
	cust := func(c string, w, n int) *kgo.Record {
		start := time.Duration(w) * 5 * time.Minute
		v := fmt.Sprintf(`{"customer":%q,"key":{"customer":%q},"requests":%d,"window_start":%q,"window_end":%q}`, c, c, n, at(start), at(start+5*time.Minute))
		return &kgo.Record{Topic: out5m, Key: []byte(`[` + jsonText(c) + `]`), Value: []byte(v)}
	}
	tops := map[int][]agent{0: {{"curl", 3}, {"go", 1}}, 1: {{"wget", 2}}, 2: {}}
	recs := []*kgo.Record{ep10("/pay", 0, tops[0]), ep10("/pay", 1, tops[1]), ep10("/pay", 2, tops[2]), ep10("/cart", 0, []agent{{"go", 5}})}
	recs = append(recs, cust("acme", 0, 7), cust("acme", 1, 9), cust("globex", 1, 4))
	e.produce(t, recs...)

	since := fmt.Sprintf("from=%d", time.Now().Add(-time.Minute).UnixMilli())
	var res ResultsJSON
	for _, q := range []string{"", "&rollup=ep_10s"} { // the default is the first rollup
		e.getJSON(t, "/api/v1/results?"+since+"&key="+url.QueryEscape(`["/pay"]`)+q, http.StatusOK, &res)
		if res.Topic != out10s || res.Rollup != "ep_10s" || len(res.Windows) != 3 || len(res.Keys) != 2 {
			t.Fatalf("results of ep_10s (%q): %+v", q, res)
		}
		for i, w := range res.Windows {
			n := 0
			var wantTop []string
			for _, a := range tops[i] {
				n += a.n
				wantTop = append(wantTop, fmt.Sprintf("%s=%d", a.v, a.n))
			}
			var gotTop []string
			for _, x := range w.Top["top_agents"] {
				gotTop = append(gotTop, fmt.Sprintf("%s=%d", x.Value, x.Count))
			}
			if w.Values["requests"] == nil || *w.Values["requests"] != float64(n) || w.Top["top_agents"] == nil ||
				!slices.Equal(gotTop, wantTop) || w.Values["top_agents"] != nil {
				t.Errorf("ep_10s window %d: values %v top %v, want requests %d top %v", i, w.Values, w.Top, n, wantTop)
			}
		}
	}
	res = ResultsJSON{}
	e.getJSON(t, "/api/v1/results?"+since+"&rollup=cust_5m", http.StatusOK, &res)
	var custGot []string
	for _, w := range res.Windows {
		custGot = append(custGot, fmt.Sprintf("%s@%d=%v final %v", w.Key[0], (w.WindowStartMs-base.UnixMilli())/300_000, *w.Values["requests"], w.Final))
	}
	// emit update: a window is final once a result of a window starting
	// at or after its end (plus grace 0) has been written.
	wantCust := []string{"acme@0=7 final true", "acme@1=9 final false", "globex@1=4 final false"}
	if res.Topic != out5m || res.Rollup != "cust_5m" || !slices.Equal(custGot, wantCust) || res.Windows[0].Top != nil {
		t.Errorf("results of cust_5m %v (topic %s), want %v", custGot, res.Topic, wantCust)
	}
	var ae apiError
	e.getJSON(t, "/api/v1/results?rollup=nope", http.StatusBadRequest, &ae)
	if !strings.Contains(ae.Error, "ep_10s, ep_1m, cust_5m") {
		t.Errorf("unknown rollup answered %q", ae.Error)
	}

	// Tail of another rollup's output step.
	tr := records(t, e.tail(t, "/api/v1/tail?step=output:cust_5m&last=5"), 3)
	for _, r := range tr {
		if r.Topic != out5m || r.Value["customer"] == nil {
			t.Errorf("tail of output:cust_5m: %+v", r)
		}
	}

	// Open windows: the rollup reaches OpenWindowsIn; the key is the
	// rollup's key.
	var wj WindowsJSON
	e.getJSON(t, "/api/v1/windows?rollup=cust_5m&key="+url.QueryEscape(`["acme"]`), http.StatusOK, &wj)
	e.getJSON(t, "/api/v1/windows?key="+url.QueryEscape(`["/pay"]`), http.StatusOK, &wj)
	e.getJSON(t, "/api/v1/windows?rollup=ep_1m&key="+url.QueryEscape(`["a","b"]`), http.StatusBadRequest, &ae)
	e.getJSON(t, "/api/v1/windows?rollup=nope&key="+url.QueryEscape(`["/pay"]`), http.StatusBadRequest, &ae)
	mu.Lock()
	if fmt.Sprint(calls) != `[{cust_5m ["acme"]} {ep_10s ["/pay"]}]` {
		t.Errorf("OpenWindowsIn calls %v", calls)
	}
	mu.Unlock()
	if wj.Rollup != "ep_10s" || len(wj.Windows) != 1 || strings.Join(strings.Fields(string(wj.Windows[0])), "") != `{"rollup":"ep_10s"}` {
		t.Errorf("windows answer %+v", wj)
	}

	// Alerts of the chained rollup, from its own topic.
	tr0 := base.Add(2 * time.Minute)
	alert := func(state string, at time.Time) *kgo.Record {
		v := fmt.Sprintf(`{"rule":"busy","rule_kind":"threshold","severity":"warning","key":{"endpoint":"/pay"},"state":%q,"at":%q,"started_at":%q,"value":120,"threshold":100,"summary":"busy"}`,
			state, at.Format(time.RFC3339Nano), tr0.Format(time.RFC3339Nano))
		return &kgo.Record{Topic: alerts, Value: []byte(v)}
	}
	e.produce(t, alert("firing", tr0), alert("resolved", tr0.Add(3*time.Minute)))
	var aj AlertsJSON
	e.getJSON(t, "/api/v1/alerts?rollup=ep_1m&"+since, http.StatusOK, &aj)
	if aj.Topic != alerts || aj.Rollup != "ep_1m" || len(aj.History) != 1 || len(aj.Firing) != 0 ||
		strings.Join(aj.History[0].Key, ",") != "/pay" || aj.History[0].Aggregate != "requests" || aj.History[0].DurationMs != 180_000 {
		t.Errorf("alerts of ep_1m %+v", aj)
	}
	e.getJSON(t, "/api/v1/alerts", http.StatusOK, &aj) // the first rollup has no rules
	if aj.Topic != "" || aj.Rollup != "ep_10s" || len(aj.History) != 0 {
		t.Errorf("alerts of ep_10s %+v", aj)
	}

	// A late record names its rollup.
	e.produce(t, &kgo.Record{Topic: e.spec.LateTopic, Value: []byte(`{"endpoint":"/pay"}`), Headers: []kgo.RecordHeader{
		{Key: "eddy.late.window", Value: []byte("[0,10000)")}, {Key: "eddy.late.event-time", Value: []byte("5")},
		{Key: "eddy.late.stream-time", Value: []byte("99999")}, {Key: "eddy.rollup", Value: []byte("ep_10s")},
	}})
	late := records(t, e.tail(t, "/api/v1/tail?step=late"), 1)[0]
	if late.Reason != "Late for rollup ep_10s: its window had closed when it arrived." {
		t.Errorf("late record's reason %q", late.Reason)
	}
}

// TestRollupsStatusEdges: the picture of several rollups, from this
// worker's counters: source to each repartition topic, each repartition
// topic to its rollups, a chained rollup from the rollup it reads (that
// rollup's results written), each rollup to its output and alerts topic
// (its rules' transitions), and the shared late and dead-letter topics.
func TestRollupsStatusEdges(t *testing.T) {
	reg := prometheus.NewRegistry()
	in := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "eddy_records_in_total"}, []string{"topic"})
	out := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "eddy_records_out_total"}, []string{"topic"})
	al := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "eddy_alert_transitions_total"}, []string{"rule", "state"})
	late := prometheus.NewCounter(prometheus.CounterOpts{Name: "eddy_late_records_total"})
	dlq := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "eddy_dead_letters_total"}, []string{"class"})
	reg.MustRegister(in, out, al, late, dlq)
	spec, err := topology.Parse([]byte(fmt.Sprintf(rollupsYAML, "edges", "src", "o10s", "o1m", "o5m")))
	if err != nil {
		t.Fatal(err)
	}
	// A broker nobody listens on: the group part fails, the edges are this
	// worker's metrics only.
	ln, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	con, err := New(Config{Spec: spec, Brokers: []string{addr}, Gatherer: reg, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer con.Close()
	in.WithLabelValues("src").Add(1000)
	in.WithLabelValues("edges-repartition").Add(990)
	in.WithLabelValues("edges-cust_5m-repartition").Add(980)
	out.WithLabelValues("o10s").Add(40)
	out.WithLabelValues("o1m").Add(7)
	out.WithLabelValues("o5m").Add(12)
	al.WithLabelValues("busy", "firing").Add(2)
	al.WithLabelValues("busy", "resolved").Add(1)
	late.Add(5)
	dlq.WithLabelValues("decode").Add(3)

	openW := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "eddy_open_windows"}, []string{"partition"})
	reg.MustRegister(openW)
	openW.WithLabelValues("ep_10s/0").Set(4)
	openW.WithLabelValues("ep_10s/1").Set(3)
	openW.WithLabelValues("cust_5m/1").Set(2)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st := con.status(ctx, nil, time.Time{}, nil)
	if fmt.Sprint(st.RollupOpenWindows) != "map[cust_5m:2 ep_10s:7]" {
		t.Errorf("open windows by rollup %v, want ep_10s 7 and cust_5m 2", st.RollupOpenWindows)
	}
	var got []string
	for _, e := range st.Edges {
		got = append(got, fmt.Sprintf("%s>%s=%v", e.From, e.To, e.Total))
	}
	want := []string{
		"src>edges-repartition=1000", "src>edges-cust_5m-repartition=1000",
		"edges-repartition>rollup:ep_10s=990", "rollup:ep_10s>rollup:ep_1m=40", "edges-cust_5m-repartition>rollup:cust_5m=980",
		"rollup:ep_10s>o10s=40", "rollup:ep_1m>o1m=7", "rollup:ep_1m>edges-ep_1m-alerts=3", "rollup:cust_5m>o5m=12",
		"rollups>" + spec.LateTopic + "=5", "rollups>" + spec.DeadLetterTopic + "=3",
	}
	if !slices.Equal(got, want) {
		t.Errorf("edges\n got %v\nwant %v", got, want)
	}
}

// TestForwardWindowsCarriesRollup: a windows query forwarded to the key's
// owner names the rollup, so the owner answers from that rollup's state.
func TestForwardWindowsCarriesRollup(t *testing.T) {
	var gotQuery url.Values
	owner := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotQuery = r.URL.Query()
		writeJSON(w, http.StatusOK, WindowsJSON{Rollup: r.URL.Query().Get("rollup"), Key: []string{"acme"}, Windows: []json.RawMessage{}, Partition: -1, AnsweredBy: "owner"})
	}))
	defer owner.Close()
	spec, err := topology.Parse([]byte(fmt.Sprintf(rollupsYAML, "fwd", "src", "o10s", "o1m", "o5m")))
	if err != nil {
		t.Fatal(err)
	}
	con, err := New(Config{Spec: spec, Brokers: []string{"127.0.0.1:1"}, SelfURL: "http://self", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer con.Close()
	rs, _ := con.rollupSpec("cust_5m")
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, "/api/v1/windows?rollup=cust_5m&key="+url.QueryEscape(`["acme"]`), nil)
	con.forwardWindows(context.Background(), rec, req, rs, owner.URL, 1)
	var ans WindowsJSON
	if err := json.Unmarshal(rec.Body.Bytes(), &ans); err != nil || rec.Code != http.StatusOK {
		t.Fatalf("forwarded: %d %s", rec.Code, rec.Body)
	}
	if gotQuery.Get("rollup") != "cust_5m" || gotQuery.Get("local") != "1" || gotQuery.Get("key") != `["acme"]` {
		t.Errorf("the owner was asked %v", gotQuery)
	}
	if ans.Rollup != "cust_5m" || ans.ForwardedBy != "http://self" || ans.Partition != 1 {
		t.Errorf("answer %+v", ans)
	}
}
