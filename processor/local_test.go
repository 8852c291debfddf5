package processor_test

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eddy-streams/eddy/internal/kafkatest"
	"github.com/eddy-streams/eddy/processor"
	"github.com/eddy-streams/eddy/processor/eddytest"
	"github.com/eddy-streams/eddy/topology"
)

// localSpec is a pipeline with a filter, a repartition (key field k), a
// count, a sum and a percentile, and a threshold alert.
func localSpec(t *testing.T, app, src string) *topology.Spec {
	t.Helper()
	spec, err := topology.Parse([]byte(fmt.Sprintf(`
app: %[1]s
source: {topics: [%[2]s], format: json}
time: {field: ts, max_future: 1h}
filter: 'k != "skip"'
key: [k]
window: {type: tumbling, size: 10s, grace: 5s}
aggregates:
  - {name: n, op: count}
  - {name: total, op: sum, field: v}
  - {name: p90_v, op: p90, field: v}
output: {topic: %[1]s-out}
late_topic: %[1]s-late
dead_letter_topic: %[1]s-dlq
idle_timeout: 1h
alerts:
  topic: %[1]s-alerts
  rules:
    - {name: busy, kind: threshold, severity: warning, condition: 'n >= 3', summary: '{{.k}}: {{.n}} records'}
`, app, src)))
	if err != nil {
		t.Fatal(err)
	}
	return spec
}

// genRecords makes n record values for localSpec, event times from base:
// most within grace of the highest event time so far (out of order), some
// clearly late (their window closed: older than grace plus a window size
// behind it), some bad (not JSON, no key, a sum over text, far in the
// future), some filtered. A last record far ahead closes every earlier
// window.
func genRecords(rng *rand.Rand, n int, base time.Time) [][]byte {
	const size, grace = 10_000, 5_000
	st := base.UnixMilli()
	keys := []string{"a", "b", "c"}
	var out [][]byte
	rec := func(k string, v any, ts int64) []byte {
		b, _ := json.Marshal(map[string]any{"k": k, "v": v, "ts": ts})
		return b
	}
	for range n {
		k := keys[rng.IntN(len(keys))]
		switch x := rng.IntN(100); {
		case x < 75:
			e := st - grace + rng.Int64N(grace+3_000)
			st = max(st, e)
			out = append(out, rec(k, rng.IntN(100), e))
		case x < 85 && st-grace-size-20_000 > base.UnixMilli():
			out = append(out, rec(k, 1, st-grace-size-rng.Int64N(20_000)))
		case x < 88:
			out = append(out, []byte("not json"))
		case x < 91:
			b, _ := json.Marshal(map[string]any{"v": 1, "ts": st})
			out = append(out, b)
		case x < 94:
			out = append(out, rec(k, "many", st))
		case x < 96:
			out = append(out, rec(k, 1, st+int64(2*time.Hour/time.Millisecond)))
		default:
			out = append(out, rec("skip", 1, st))
		}
	}
	return append(out, rec("a", 1, st+10*size))
}

// TestKafkaLocalMatchesApp: the same records through Local and through a
// real App on the real broker (one source partition, so the order is
// fixed) give the same records on every topic eddy writes: keys, values,
// headers and timestamps of results, late records, dead letters and
// alerts.
func TestKafkaLocalMatchesApp(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Real(t)
	src := kafkatest.Name(t, "src")
	spec := localSpec(t, kafkatest.Name(t, "app"), src)
	start := time.Now().UTC().Truncate(time.Second)
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("EDDY_TEST_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("EDDY_TEST_SEED=%q: %v", s, err)
		}
	}
	t.Logf("seed %d (EDDY_TEST_SEED reproduces a run)", seed)
	values := genRecords(rand.New(rand.NewPCG(seed, 1)), 300, start.Add(-30*time.Minute))

	// In process.
	l, err := processor.NewLocal(context.Background(), processor.LocalConfig{Spec: spec})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for i, v := range values {
		rec := &kgo.Record{Topic: src, Partition: 0, Offset: int64(i), Key: []byte(fmt.Sprint(i % 7)), Value: v, Timestamp: start}
		if err := l.Feed(context.Background(), rec, start); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Commit(start); err != nil {
		t.Fatal(err)
	}
	local := byTopic(l.Drain())

	// The App, on the broker, with the same wall clock.
	c := &eddytest.Case{Start: start.Format(time.RFC3339Nano)}
	step := eddytest.Step{}
	for i, v := range values {
		step.Records = append(step.Records, eddytest.InRecord{Key: fmt.Sprint(i % 7), Value: string(v)})
	}
	c.Steps = append(c.Steps, step)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out, err := c.RunKafka(ctx, spec, eddytest.KafkaConfig{Brokers: brokers, KeepNames: true})
	if err != nil {
		t.Fatal(err)
	}
	app := byTopic(out.Records)

	// Dead letters of the stateless steps are written when the App
	// forwards a source record, those of the aggregates when it processes
	// the repartition record, a poll later: the dead-letter topic holds
	// the same records in another order. Compared in source order.
	// The App's tasks run on several goroutines (parallel tasks), so the
	// outputs of different keys may interleave differently; each key's
	// records keep their order (one task). Results, late records and
	// alerts are compared per key, in order.
	for _, m := range []map[string][]*kgo.Record{local, app} {
		slices.SortStableFunc(m[spec.DeadLetterTopic], func(a, b *kgo.Record) int {
			return cmp.Compare(header(a, "eddy.source.offset"), header(b, "eddy.source.offset"))
		})
		for _, topic := range []string{spec.Output.Topic, spec.LateTopic, spec.AlertsTopic()} {
			slices.SortStableFunc(m[topic], func(a, b *kgo.Record) int { return bytes.Compare(a.Key, b.Key) })
		}
	}
	for _, topic := range []string{spec.Output.Topic, spec.LateTopic, spec.DeadLetterTopic, spec.AlertsTopic()} {
		lr, ar := local[topic], app[topic]
		if len(lr) == 0 {
			t.Errorf("%s: no records in process; the generated input should reach every topic", topic)
		}
		if len(lr) != len(ar) {
			t.Errorf("%s: %d records in process, %d from the App", topic, len(lr), len(ar))
			continue
		}
		for i := range lr {
			if d := recordDiff(lr[i], ar[i]); d != "" {
				t.Errorf("%s record %d: in process vs App: %s", topic, i, d)
			}
		}
	}
	t.Logf("compared %d results, %d late, %d dead letters, %d alerts", len(local[spec.Output.Topic]), len(local[spec.LateTopic]),
		len(local[spec.DeadLetterTopic]), len(local[spec.AlertsTopic()]))
}

func byTopic(recs []*kgo.Record) map[string][]*kgo.Record {
	m := map[string][]*kgo.Record{}
	for _, r := range recs {
		m[r.Topic] = append(m[r.Topic], r)
	}
	return m
}

func recordDiff(a, b *kgo.Record) string {
	var d []string
	if !bytes.Equal(a.Key, b.Key) {
		d = append(d, fmt.Sprintf("key %q vs %q", a.Key, b.Key))
	}
	if !bytes.Equal(a.Value, b.Value) {
		d = append(d, fmt.Sprintf("value %q vs %q", a.Value, b.Value))
	}
	// Topics whose timestamps the broker sets (LogAppendTime, so that
	// retention counts from the write) have none of eddy's to compare.
	if b.Attrs.TimestampType() == 0 && !a.Timestamp.Equal(b.Timestamp) {
		d = append(d, fmt.Sprintf("timestamp %s vs %s", a.Timestamp, b.Timestamp))
	}
	if ha, hb := headerText(a.Headers), headerText(b.Headers); ha != hb {
		d = append(d, fmt.Sprintf("headers %s vs %s", ha, hb))
	}
	return strings.Join(d, "; ")
}

func header(r *kgo.Record, key string) int64 {
	for _, h := range r.Headers {
		if h.Key == key {
			n, _ := strconv.ParseInt(string(h.Value), 10, 64)
			return n
		}
	}
	return -1
}

func headerText(hs []kgo.RecordHeader) string {
	var b strings.Builder
	for _, h := range hs {
		fmt.Fprintf(&b, "%s=%q ", h.Key, h.Value)
	}
	return b.String()
}

// TestLocalWindowsAndRouting: Local's results are the counts and sums of a
// plain loop over the records, and with four partitions each key's windows
// live in the task of its repartition partition.
func TestLocalWindowsAndRouting(t *testing.T) {
	t.Parallel()
	spec := localSpec(t, "local-unit", "events")
	l, err := processor.NewLocal(context.Background(), processor.LocalConfig{Spec: spec, Partitions: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	now := time.Date(2024, 1, 1, 0, 10, 0, 0, time.UTC)
	base := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	type win struct {
		key   string
		start int64
	}
	count, sum := map[win]float64{}, map[win]float64{}
	keys := []string{"a", "b", "c", "d", "e"}
	for i := range 200 {
		k, ts, v := keys[i%len(keys)], base+int64(i)*500, i%13 // in order: nothing late
		b, _ := json.Marshal(map[string]any{"k": k, "v": v, "ts": ts})
		// Spread over the four source partitions: stream time is the
		// lowest of their watermarks.
		rec := &kgo.Record{Topic: "events", Partition: int32(i % 4), Offset: int64(i / 4), Value: b, Timestamp: now}
		if err := l.Feed(context.Background(), rec, now); err != nil {
			t.Fatal(err)
		}
		w := win{k, ts - ts%10_000}
		count[w]++
		sum[w] += float64(v)
	}
	// Each key's last window is still open, in its partition's task only.
	for _, k := range keys {
		key := `["` + k + `"]`
		ws, err := l.OpenWindows(key)
		if err != nil {
			t.Fatal(err)
		}
		if len(ws) != 1 {
			t.Fatalf("key %s: %d open windows, want 1", k, len(ws))
		}
		w := win{k, ws[0].Window.Start}
		if ws[0].Values["n"] != count[w] || ws[0].Values["total"] != sum[w] {
			t.Errorf("open window %v: n=%v total=%v, want %v and %v", w, ws[0].Values["n"], ws[0].Values["total"], count[w], sum[w])
		}
		p := processor.KeyPartition(spec.RepartitionTopic(), key, 4)
		if st, ok := l.StreamTime(int(p)); !ok || st < ws[0].Window.Start {
			t.Errorf("key %s: partition %d has stream time %d (%v), want its records'", k, p, st, ok)
		}
		delete(count, w)
	}
	closed := 0
	for _, r := range l.Drain() {
		if r.Topic != spec.Output.Topic {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal(r.Value, &m); err != nil {
			t.Fatal(err)
		}
		ws, _ := time.Parse(time.RFC3339Nano, m["window_start"].(string))
		w := win{m["k"].(string), ws.UnixMilli()}
		if m["n"] != count[w] || m["total"] != sum[w] {
			t.Errorf("result %v: n=%v total=%v, want %v and %v", w, m["n"], m["total"], count[w], sum[w])
		}
		delete(count, w)
		closed++
	}
	if len(count) != 0 {
		t.Errorf("%d windows without a result: %v", len(count), count)
	}
	t.Logf("%d results", closed)
}

// TestLocalWindowLimit: past MaxOpenWindows, Feed refuses records and
// counts them.
func TestLocalWindowLimit(t *testing.T) {
	t.Parallel()
	spec := localSpec(t, "local-limit", "events")
	l, err := processor.NewLocal(context.Background(), processor.LocalConfig{Spec: spec, MaxOpenWindows: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	now := time.Date(2024, 1, 1, 0, 10, 0, 0, time.UTC)
	refused := 0
	for i := range 10 {
		b, _ := json.Marshal(map[string]any{"k": fmt.Sprint("key", i), "v": 1, "ts": now.UnixMilli()})
		err := l.Feed(context.Background(), &kgo.Record{Topic: "events", Offset: int64(i), Value: b, Timestamp: now}, now)
		switch {
		case errors.Is(err, processor.ErrWindowLimit):
			refused++
		case err != nil:
			t.Fatal(err)
		}
	}
	if l.OpenWindowCount() != 3 || refused != 7 || l.Refused() != 7 {
		t.Errorf("open %d, refused %d (Refused %d); want 3 open and 7 refused", l.OpenWindowCount(), refused, l.Refused())
	}
}
