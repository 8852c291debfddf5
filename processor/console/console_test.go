package console

// The JSON API on its own: records the test writes itself (in the shapes
// eddy writes: dead letters with their headers, JSON window results) on
// the real broker, read back through /api/v1/, with no worker running.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"

	"github.com/eddy-streams/eddy/internal/kafkatest"
	"github.com/eddy-streams/eddy/topology"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// env is a console over fresh topics of a test pipeline.
type env struct {
	brokers []string
	spec    *topology.Spec
	srv     *httptest.Server
	con     *Console
}

func newEnv(t *testing.T, cfg Config) *env {
	t.Helper()
	brokers := kafkatest.Real(t)
	app := kafkatest.Name(t, "app")
	y := fmt.Sprintf(`app: %s
source: {topics: [%s]}
key: [service, endpoint]
window: {type: tumbling, size: 10s, grace: 5s}
aggregates:
  - {name: requests, op: count}
  - {name: p99_latency_ms, op: p99, field: latency_ms}
output: {topic: %s}
`, app, kafkatest.Name(t, "in"), kafkatest.Name(t, "out"))
	spec, err := topology.Parse([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	for _, topic := range []string{spec.Source.Topics[0], spec.Output.Topic, spec.DeadLetterTopic, spec.LateTopic} {
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

func (e *env) produce(t *testing.T, recs ...*kgo.Record) {
	t.Helper()
	cl := kafkatest.Client(t, e.brokers, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

func (e *env) getJSON(t *testing.T, path string, code int, v any) {
	t.Helper()
	resp, err := http.Get(e.srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != code {
		t.Fatalf("GET %s: %d %s, want %d", path, resp.StatusCode, b, code)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("GET %s: %v in %s", path, err, b)
	}
}

// sseEvent is one server-sent event.
type sseEvent struct {
	kind string
	data string
}

// tail opens GET path as an event stream; events arrive on the channel
// until the test ends.
func (e *env) tail(t *testing.T, path string) <-chan sseEvent {
	t.Helper()
	ch, _ := e.tailClosable(t, path)
	return ch
}

// tailClosable is tail with a function that closes the stream (and waits
// for its reading to end) before the test does.
func (e *env) tailClosable(t *testing.T, path string) (<-chan sseEvent, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.srv.URL+path, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		cancel()
		t.Fatalf("GET %s: %s %s", path, resp.Status, resp.Header.Get("Content-Type"))
	}
	out := make(chan sseEvent, 1000)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(out)
		sc := bufio.NewScanner(resp.Body)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "event: "):
				ev.kind = line[len("event: "):]
			case strings.HasPrefix(line, "data: "):
				ev.data = line[len("data: "):]
			case line == "" && ev.kind != "":
				out <- ev
				ev = sseEvent{}
			}
		}
	}()
	var once sync.Once
	closeFn := func() {
		once.Do(func() {
			cancel()
			resp.Body.Close()
			for range out { // let the reader end if the buffer was full
			}
			<-done
		})
	}
	t.Cleanup(closeFn)
	return out, closeFn
}

// records collects n record events (failing after 30s).
func records(t *testing.T, ch <-chan sseEvent, n int) []Record {
	t.Helper()
	var got []Record
	deadline := time.After(30 * time.Second)
	for len(got) < n {
		select {
		case ev, ok := <-ch:
			if !ok {
				t.Fatalf("stream ended after %d of %d records", len(got), n)
			}
			if ev.kind != evRecord {
				continue
			}
			var r Record
			if err := json.Unmarshal([]byte(ev.data), &r); err != nil {
				t.Fatal(err)
			}
			got = append(got, r)
		case <-deadline:
			t.Fatalf("%d of %d records after 30s", len(got), n)
		}
	}
	return got
}

// TestKafkaAPITail: a filtered tail sends exactly the matching records,
// the last N first and then new ones live; dead letters carry their reason
// in words; bad requests are explained.
func TestKafkaAPITail(t *testing.T) {
	e := newEnv(t, Config{})
	t.Parallel()
	in := e.spec.Source.Topics[0]
	var recs []*kgo.Record
	for i := 0; i < 40; i++ {
		v := fmt.Sprintf(`{"i":%d,"status":%d,"endpoint":"/e%d"}`, i, 200+100*(i%4), i%3)
		recs = append(recs, &kgo.Record{Topic: in, Partition: int32(i % 2), Value: []byte(v)})
	}
	e.produce(t, recs...)
	// Matching: status >= 400, i.e. i%4 in {2,3}: computed here.
	want := map[int]bool{}
	for i := 0; i < 40; i++ {
		if 200+100*(i%4) >= 400 {
			want[i] = true
		}
	}
	filter := url.QueryEscape("status >= 400")
	ch := e.tail(t, "/api/v1/tail?step=input&last=100&filter="+filter)
	got := records(t, ch, len(want))
	for _, r := range got {
		i := int(r.Value["i"].(float64))
		if !want[i] {
			t.Errorf("record %d does not match the filter: %v", i, r.Value)
		}
		delete(want, i)
		if r.Topic != in || r.Format != "json" {
			t.Errorf("record %d: topic %s format %s", i, r.Topic, r.Format)
		}
	}
	if len(want) != 0 {
		t.Errorf("missing matching records %v", want)
	}
	// Live: a new matching record arrives, a non-matching one does not.
	e.produce(t, &kgo.Record{Topic: in, Partition: 0, Value: []byte(`{"i":100,"status":200}`)},
		&kgo.Record{Topic: in, Partition: 1, Value: []byte(`{"i":101,"status":503}`)})
	if r := records(t, ch, 1)[0]; r.Value["i"].(float64) != 101 {
		t.Errorf("live record %v, want i 101", r.Value)
	}

	// last=2 per partition, no filter: the newest two of each partition.
	ch2 := e.tail(t, "/api/v1/tail?step=input&last=2")
	seen := map[string]bool{}
	for _, r := range records(t, ch2, 4) {
		seen[fmt.Sprint(r.Partition, r.Value["i"])] = true
	}
	for _, k := range []string{"0 38", "0 100", "1 39", "1 101"} {
		if !seen[k] {
			t.Errorf("last=2: want partition/record %s, got %v", k, seen)
		}
	}

	// A dead letter as eddy writes it: the reason in words and its details.
	e.produce(t, &kgo.Record{Topic: e.spec.DeadLetterTopic, Value: []byte("{not json"), Headers: []kgo.RecordHeader{
		{Key: "eddy.error.class", Value: []byte("decode")},
		{Key: "eddy.error.message", Value: []byte("in/0@7: decode: invalid character 'n'")},
		{Key: "eddy.source.topic", Value: []byte("in")}, {Key: "eddy.source.partition", Value: []byte("0")},
		{Key: "eddy.source.offset", Value: []byte("7")},
	}})
	dl := records(t, e.tail(t, "/api/v1/tail?step=dead-letter"), 1)[0]
	if dl.Format != "bytes" || dl.Text != "{not json" ||
		dl.Reason != "Dead letter: the value is not what the source format says (not a JSON object, or not decodable)." ||
		!strings.Contains(dl.Detail, "invalid character 'n'") || !strings.Contains(dl.Detail, "from in partition 0 offset 7") {
		t.Errorf("dead letter shown as %+v", dl)
	}

	var ae apiError
	e.getJSON(t, "/api/v1/tail?step=input&filter="+url.QueryEscape("status >= "), http.StatusBadRequest, &ae)
	if ae.Detail == nil || ae.Detail.Column == 0 || !strings.Contains(ae.Error, "filter") {
		t.Errorf("bad filter answered %+v", ae)
	}
	e.getJSON(t, "/api/v1/tail?step=nope", http.StatusNotFound, &ae)
	var ex exprJSON
	e.getJSON(t, "/api/v1/expr?filter="+url.QueryEscape(`endpoint == "/e1" && status >= 500`), http.StatusOK, &ex)
	if !ex.OK {
		t.Errorf("a good filter reported %+v", ex)
	}
}

// TestKafkaAPIViewsBounded: views beyond MaxViews are refused, and a
// closed view frees its slot.
func TestKafkaAPIViewsBounded(t *testing.T) {
	e := newEnv(t, Config{MaxViews: 1})
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.srv.URL+"/api/v1/tail?step=output", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var ae apiError
	e.getJSON(t, "/api/v1/tail?step=output", http.StatusServiceUnavailable, &ae)
	cancel()
	resp.Body.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r, err := http.Get(e.srv.URL + "/api/v1/tail?step=output")
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		if r.StatusCode == http.StatusOK {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the slot of a closed view was not freed: %s", r.Status)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestKafkaAPIResults: window results of a key, from an offset found by
// timestamp, with the gap left by a window without a result.
func TestKafkaAPIResults(t *testing.T) {
	e := newEnv(t, Config{})
	t.Parallel()
	out := e.spec.Output.Topic
	base := time.Now().Add(-time.Hour).Truncate(10 * time.Second)
	result := func(svc string, w int, n int, written time.Time) *kgo.Record {
		start := base.Add(time.Duration(w) * 10 * time.Second).UTC()
		v := fmt.Sprintf(`{"endpoint":"/pay","key":{"endpoint":"/pay","service":%q},"p99_latency_ms":%d.5,"requests":%d,"service":%q,"window_end":%q,"window_start":%q}`,
			svc, n, n, svc, start.Add(10*time.Second).Format(time.RFC3339Nano), start.Format(time.RFC3339Nano))
		return &kgo.Record{Topic: out, Partition: 0, Key: []byte(fmt.Sprintf(`[%q,"/pay"]`, svc)), Value: []byte(v), Timestamp: written}
	}
	// checkout: windows 0..5 without 3, written a minute apart; search: 0..1.
	var recs []*kgo.Record
	for w := 0; w < 6; w++ {
		if w == 3 {
			continue
		}
		recs = append(recs, result("checkout", w, 10+w, base.Add(time.Duration(w)*time.Minute)))
	}
	recs = append(recs, result("search", 0, 1, base), result("search", 1, 2, base.Add(time.Minute)))
	e.produce(t, recs...)

	var res ResultsJSON
	key := url.QueryEscape(`["checkout","/pay"]`)
	e.getJSON(t, fmt.Sprintf("/api/v1/results?key=%s&from=%d&to=%d", key, base.UnixMilli(), time.Now().UnixMilli()), http.StatusOK, &res)
	var starts []int64
	for _, w := range res.Windows {
		starts = append(starts, (w.WindowStartMs-base.UnixMilli())/10_000)
		n := float64(10 + (w.WindowStartMs-base.UnixMilli())/10_000)
		if !w.Final || w.Values["requests"] == nil || *w.Values["requests"] != n || *w.Values["p99_latency_ms"] != n+0.5 ||
			strings.Join(w.Key, "|") != "checkout|/pay" || w.WindowEndMs-w.WindowStartMs != 10_000 {
			t.Errorf("window %+v", w)
		}
	}
	if fmt.Sprint(starts) != "[0 1 2 4 5]" {
		t.Errorf("windows %v, want [0 1 2 4 5] (3 is a gap)", starts)
	}
	if len(res.Keys) != 2 || res.Keys[0].Results != 5 || res.Keys[1].Results != 2 {
		t.Errorf("keys %+v", res.Keys)
	}
	// From the time window 2 was written: the offset found by timestamp
	// leaves windows 0 and 1 out.
	e.getJSON(t, fmt.Sprintf("/api/v1/results?key=%s&from=%s", key, url.QueryEscape(base.Add(2*time.Minute).Format(time.RFC3339))), http.StatusOK, &res)
	starts = starts[:0]
	for _, w := range res.Windows {
		starts = append(starts, (w.WindowStartMs-base.UnixMilli())/10_000)
	}
	if fmt.Sprint(starts) != "[2 4 5]" {
		t.Errorf("from window 2's write time: windows %v, want [2 4 5]", starts)
	}
	var ae apiError
	e.getJSON(t, "/api/v1/results?from=yesterday", http.StatusBadRequest, &ae)
	e.getJSON(t, "/api/v1/results?key=checkout", http.StatusBadRequest, &ae)

	var p pipelineJSON
	e.getJSON(t, "/api/v1/pipeline", http.StatusOK, &p)
	if p.App != e.spec.App || len(p.Steps) != 4 || p.Steps[0].Topic != e.spec.Source.Topics[0] ||
		p.Aggregates[0].Unit != "records" || p.Aggregates[1].Unit != "latency_ms" || p.Window.SizeMs != 10_000 {
		t.Errorf("pipeline %+v", p)
	}
}

// TestSampler: up to max records a second all go through; above, 1 in N
// from the previous second's rate, and never more than max a second.
func TestSampler(t *testing.T) {
	s := &sampler{max: 10, every: 1}
	t0 := time.Unix(1000, 0)
	sent := 0
	for i := 0; i < 8; i++ {
		if ok, _ := s.admit(t0); ok {
			sent++
		}
	}
	if sent != 8 {
		t.Fatalf("8 records under the limit: %d sent", sent)
	}
	// Second 1: 45 records, but at most 10 go (every is still 1).
	sent = 0
	for i := 0; i < 45; i++ {
		if ok, _ := s.admit(t0.Add(time.Second)); ok {
			sent++
		}
	}
	if sent != 10 {
		t.Fatalf("45 records in a second: %d sent, want the limit 10", sent)
	}
	// Second 2: every = ceil(45/10) = 5.
	sent = 0
	var changed bool
	for i := 0; i < 45; i++ {
		ok, c := s.admit(t0.Add(2 * time.Second))
		changed = changed || c
		if ok {
			sent++
		}
	}
	if !changed || s.every != 5 || s.lastRate != 45 || sent != 9 {
		t.Fatalf("after 45/s: every %d rate %d sent %d changed %v, want 1 in 5, 9 sent", s.every, s.lastRate, sent, changed)
	}
	// A quiet gap resets to every record.
	if ok, c := s.admit(t0.Add(10 * time.Second)); !ok || !c || s.every != 1 {
		t.Fatalf("after a quiet gap: sent %v changed %v every %d", ok, c, s.every)
	}
}

// TestKafkaAPITailKeepsUp: a tail of a topic busier than MaxReadRate jumps
// to the newest records (and says how many it skipped) instead of reading
// everything in between.
func TestKafkaAPITailKeepsUp(t *testing.T) {
	e := newEnv(t, Config{MaxReadRate: 100})
	t.Parallel()
	in := e.spec.Source.Topics[0]
	ch := e.tail(t, "/api/v1/tail?step=input&last=0")
	var recs []*kgo.Record
	for i := 0; i < 5000; i++ {
		recs = append(recs, &kgo.Record{Topic: in, Partition: 0, Value: []byte(fmt.Sprintf(`{"i":%d}`, i))})
	}
	e.produce(t, recs...)
	var skipped int64
	var lastI float64 = -1
	var n int
	deadline := time.After(30 * time.Second)
	for lastI != 4999 {
		select {
		case ev := <-ch:
			switch ev.kind {
			case evSample:
				var s Sample
				_ = json.Unmarshal([]byte(ev.data), &s)
				skipped = max(skipped, s.Skipped)
			case evRecord:
				var r Record
				_ = json.Unmarshal([]byte(ev.data), &r)
				lastI = r.Value["i"].(float64)
				n++
			}
		case <-deadline:
			t.Fatalf("the newest record never came: last %v after %d records, %d skipped", lastI, n, skipped)
		}
	}
	if skipped == 0 || int64(n)+skipped > 5000 || n >= 5000 {
		t.Errorf("read %d records and skipped %d of 5000: want a jump to the newest", n, skipped)
	}
}

// TestKafkaAPISlowClientDropped: a client that stops reading is dropped
// (its view's slot freed) while it still holds its connection open, rather
// than buffered without bound.
func TestKafkaAPISlowClientDropped(t *testing.T) {
	e := newEnv(t, Config{WriteTimeout: 300 * time.Millisecond})
	t.Parallel()
	in := e.spec.Source.Topics[0]
	big := strings.Repeat("x", 60<<10)
	var recs []*kgo.Record
	for i := 0; i < 400; i++ { // 24 MB: more than the sockets' buffers
		recs = append(recs, &kgo.Record{Topic: in, Partition: int32(i % 2), Value: []byte(fmt.Sprintf(`{"i":%d,"pad":%q}`, i, big))})
	}
	e.produce(t, recs...)
	conn, err := net.Dial("tcp", strings.TrimPrefix(e.srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := fmt.Fprintf(conn, "GET /api/v1/tail?step=input&last=200 HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	// The view holds its slot while it streams...
	deadline := time.Now().Add(10 * time.Second)
	for len(e.con.views) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the view never opened")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// ...and gives it back once it has dropped the client that reads nothing.
	deadline = time.Now().Add(20 * time.Second)
	for len(e.con.views) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("a client that reads nothing still holds its view after 20s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestKafkaAPITailsShareOneReader: three tails of one topic, each with its
// own filter, are served by one reader of the topic; each gets exactly its
// matching records, live; one that joins later starts from the newest
// `last` of each partition; the reader ends with the last tail.
func TestKafkaAPITailsShareOneReader(t *testing.T) {
	e := newEnv(t, Config{})
	t.Parallel()
	in := e.spec.Source.Topics[0]
	ok, closeOK := e.tailClosable(t, "/api/v1/tail?step=input&last=0&filter="+url.QueryEscape("status < 400"))
	bad, closeBad := e.tailClosable(t, "/api/v1/tail?step=input&last=0&filter="+url.QueryEscape("status >= 500"))
	all, closeAll := e.tailClosable(t, "/api/v1/tail?step=input&last=0")
	if n := e.con.tailReaders(); n != 1 {
		t.Fatalf("three tails of one topic: %d readers, want 1", n)
	}
	var recs []*kgo.Record
	wantOK, wantBad := map[int]bool{}, map[int]bool{}
	for i := 0; i < 30; i++ {
		status := []int{200, 404, 503}[i%3]
		recs = append(recs, &kgo.Record{Topic: in, Partition: int32(i % 2), Value: []byte(fmt.Sprintf(`{"i":%d,"status":%d}`, i, status))})
		if status < 400 {
			wantOK[i] = true
		}
		if status >= 500 {
			wantBad[i] = true
		}
	}
	e.produce(t, recs...)
	check := func(name string, ch <-chan sseEvent, want map[int]bool) {
		t.Helper()
		for _, r := range records(t, ch, len(want)) {
			i := int(r.Value["i"].(float64))
			if !want[i] {
				t.Errorf("%s tail: record %d (%v) does not match its filter, or came twice", name, i, r.Value)
			}
			delete(want, i)
		}
		if len(want) != 0 {
			t.Errorf("%s tail: missing %v", name, want)
		}
	}
	every := map[int]bool{}
	for i := range 30 {
		every[i] = true
	}
	check("status < 400", ok, wantOK)
	check("status >= 500", bad, wantBad)
	check("unfiltered", all, every)

	// A tail that joins the running reader: the newest 3 of each partition.
	late, closeLate := e.tailClosable(t, "/api/v1/tail?step=input&last=3")
	if n := e.con.tailReaders(); n != 1 {
		t.Fatalf("a fourth tail of the topic: %d readers, want 1", n)
	}
	check("joining, last=3", late, map[int]bool{24: true, 26: true, 28: true, 25: true, 27: true, 29: true})

	for _, c := range []func(){closeOK, closeBad, closeAll} {
		c()
	}
	if n := e.con.tailReaders(); n != 1 {
		t.Fatalf("one tail still open: %d readers, want 1", n)
	}
	closeLate()
	deadline := time.Now().Add(10 * time.Second)
	for e.con.tailReaders() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("every tail closed, but the topic's reader still runs")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
