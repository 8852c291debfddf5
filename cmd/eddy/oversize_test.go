package main

// An oversized record never stops a pipeline (issue 14): a valid 2 MB
// event on an input topic that allows 4 MB cannot be forwarded through
// the repartition topic (1 MB, Kafka's default); it goes to the
// dead-letter topic with class too_large, or a reference to it when the
// dead-letter topic does not take it either, and every other record is
// processed.

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eddy-streams/eddy/internal/kafkatest"
)

func TestKafkaOversizedRecord(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Real(t)
	// A dead-letter topic with Kafka's default limit (about 1 MB): the
	// 2 MB record does not fit, a reference does.
	t.Run("reference", func(t *testing.T) {
		t.Parallel()
		testOversized(t, brokers, defaultMaxMessageBytes, "at_least_once")
	})
	t.Run("reference_exactly_once", func(t *testing.T) {
		t.Parallel()
		testOversized(t, brokers, defaultMaxMessageBytes, "exactly_once")
	})
	// The topics as eddy creates them: those that carry input records take
	// what the largest source topic takes, so the record is counted.
	t.Run("flows_through", func(t *testing.T) {
		t.Parallel()
		testOversizedFlows(t, brokers)
	})
	// A dead-letter topic that allows 8 MB holds the record itself.
	t.Run("dead_letter", func(t *testing.T) {
		t.Parallel()
		testOversized(t, brokers, 8<<20, "at_least_once")
	})
}

// createTopicWithLimit creates topic with max.message.bytes = limit.
func createTopicWithLimit(t *testing.T, adm *kadm.Client, topic string, parts int32, limit int, extra map[string]*string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg := map[string]*string{"max.message.bytes": kadm.StringPtr(strconv.Itoa(limit))}
	for k, v := range extra {
		cfg[k] = v
	}
	resp, err := adm.CreateTopic(ctx, parts, 1, cfg, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatalf("create topic %s: %v", topic, err)
	}
}

// defaultMaxMessageBytes is Kafka's default max.message.bytes.
const defaultMaxMessageBytes = 1048588

func testOversized(t *testing.T, brokers []string, dlqLimit int, processing string) {
	const repartLimit = defaultMaxMessageBytes
	sc := newScenario(11, 2, 80, 4)
	e := &e2e{brokers: brokers, sc: sc}
	e.in = kafkatest.Name(t, "in")
	e.out = kafkatest.Name(t, "out")
	e.app = kafkatest.Name(t, "app")
	e.late, e.dlq = e.app+"-late", e.app+"-dlq"
	adm := kadm.NewClient(kafkatest.Client(t, brokers))
	createTopicWithLimit(t, adm, e.in, sc.parts, 4<<20, nil)
	// The repartition topic with Kafka's default limit, whatever limit
	// eddy would create it with: the record must not fit it.
	createTopicWithLimit(t, adm, e.app+"-repartition", sc.parts, repartLimit,
		map[string]*string{"retention.ms": kadm.StringPtr("-1")})
	createTopicWithLimit(t, adm, e.dlq, sc.parts, dlqLimit, nil)
	whole := dlqLimit > 4<<20 // the dead-letter topic takes the record itself
	e.spec = sc.spec(t, e.app, e.in, e.out, processing)

	// Every input record is stamped with its event time (30 minutes ago
	// and earlier): dead letters and late records must carry the time
	// eddy wrote them as their timestamp, and this one in a header.
	recs := sc.records(e.in)
	for i, r := range recs {
		var ev tevent
		_ = json.Unmarshal(r.Value, &ev)
		recs[i].Timestamp = time.UnixMilli(ev.TS)
	}
	bigTS := sc.t0 + 1234
	big := map[string]any{"request_id": "big", "ts": bigTS, "service": "checkout", "endpoint": "/a",
		"status": 200, "latency_ms": 99999, "pad": strings.Repeat("x", 2<<20)}
	bigValue, _ := json.Marshal(big)
	bigRec := &kgo.Record{Topic: e.in, Partition: 0, Value: bigValue, Timestamp: time.UnixMilli(bigTS),
		Headers: []kgo.RecordHeader{{Key: "trace", Value: []byte("t-big")}}}
	mid := len(recs) / 2
	all := append(append(append([]*kgo.Record{}, recs[:mid]...), bigRec), recs[mid:]...)
	all = append(all, sc.badRecords(e.in)...)
	start := time.Now()
	// produceSync's client has the default 1 MB batch limit: this one
	// allows the 2 MB record.
	cl := kafkatest.Client(t, brokers, kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.MaxProduceRequestsInflightPerBroker(1), kgo.ProducerBatchMaxBytes(5<<20))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	if err := cl.ProduceSync(ctx, all...).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
	cancel()
	bigOffset := bigRec.Offset

	w := startWorker(t, e.spec, e.brokerList(), t.TempDir())
	got, late := e.finalResults(t, w) // fails if eddy exits
	sc.verify(t, got, late)
	if late["big"] {
		t.Errorf("the oversized record reached the late topic")
	}

	dl := kafkatest.ReadAll(t, brokers, e.dlq, true)
	if len(dl) != len(sc.bad)+1 {
		t.Fatalf("dead-letter topic has %d records, want %d bad ones and the oversized one", len(dl), len(sc.bad)+1)
	}
	var tl *kgo.Record
	for _, r := range dl {
		if recHeader(r, "eddy.error.class") == "too_large" {
			if tl != nil {
				t.Fatalf("two too_large dead letters")
			}
			tl = r
		}
		if r.Timestamp.Before(start.Add(-time.Second)) {
			t.Errorf("dead letter %s has timestamp %v, before the test started (%v): want the time eddy wrote it",
				recHeader(r, "eddy.error.class"), r.Timestamp, start)
		}
		if recHeader(r, "eddy.source.timestamp") == "" {
			t.Errorf("dead letter %s lacks eddy.source.timestamp: %v", recHeader(r, "eddy.error.class"), r.Headers)
		}
	}
	if tl == nil {
		t.Fatalf("no too_large dead letter among %d", len(dl))
	}
	want := map[string]string{
		"eddy.source.topic":     e.in,
		"eddy.source.partition": "0",
		"eddy.source.offset":    strconv.FormatInt(bigOffset, 10),
		"eddy.source.timestamp": time.UnixMilli(bigTS).UTC().Format("2006-01-02T15:04:05.000Z07:00"),
		"eddy.too-large.topic":  e.app + "-repartition",
		"eddy.too-large.limit":  strconv.Itoa(repartLimit),
	}
	for k, v := range want {
		if got := recHeader(tl, k); got != v {
			t.Errorf("too_large dead letter: header %s = %q, want %q", k, got, v)
		}
	}
	size, _ := strconv.Atoi(recHeader(tl, "eddy.too-large.size"))
	if size < len(bigValue) || size > len(bigValue)+1000 {
		t.Errorf("too_large dead letter: size %d, want the record's size (value %d bytes, plus key, headers and overhead)", size, len(bigValue))
	}
	if whole {
		if string(tl.Value) != string(bigValue) || recHeader(tl, "trace") != "t-big" || recHeader(tl, "eddy.reference") != "" {
			t.Errorf("dead letter in an 8 MB topic: want the original value (%d bytes) and headers, got %d bytes, headers %v",
				len(bigValue), len(tl.Value), headerKeys(tl))
		}
	} else if len(tl.Value) != 0 || len(tl.Key) != 0 || recHeader(tl, "eddy.reference") == "" || recHeader(tl, "trace") != "" {
		t.Errorf("dead letter too large for the dead-letter topic: want a reference (no key, no value, eddy.reference), got %d bytes, headers %v",
			len(tl.Value), headerKeys(tl))
	}

	// Late records: written now, their source timestamp in a header.
	for _, r := range kafkatest.ReadAll(t, brokers, e.late, true) {
		var ev tevent
		_ = json.Unmarshal(r.Value, &ev)
		if r.Timestamp.Before(start.Add(-time.Second)) {
			t.Errorf("late record %s has timestamp %v: want the time eddy wrote it", ev.ID, r.Timestamp)
		}
		if got, want := recHeader(r, "eddy.source.timestamp"), time.UnixMilli(ev.TS).UTC().Format("2006-01-02T15:04:05.000Z07:00"); got != want {
			t.Errorf("late record %s: eddy.source.timestamp = %q, want %q", ev.ID, got, want)
		}
	}

	addr := w.metricsAddr(t)
	if n := metric(t, addr, "eddy_too_large_records_total", `topic="`+e.app+`-repartition"`); n != 1 {
		t.Errorf("eddy_too_large_records_total{topic=repartition} = %v, want 1", n)
	}
	if n := metric(t, addr, "eddy_dead_letters_total", `class="too_large"`); n != 1 {
		t.Errorf("eddy_dead_letters_total{class=too_large} = %v, want 1", n)
	}
	wantRefs := 1.0
	if whole {
		wantRefs = 0
	}
	if n := metric(t, addr, "eddy_dead_letter_references_total"); n != wantRefs {
		t.Errorf("eddy_dead_letter_references_total = %v, want %v", n, wantRefs)
	}
	if err := w.stop(syscall.SIGTERM); err != nil {
		t.Errorf("eddy exited with %v after SIGTERM", err)
	}
}

// testOversizedFlows: on topics eddy creates itself, a 2 MB record from a
// source topic that allows 4 MB goes through the repartition topic into its
// window like any other; nothing is dead-lettered for its size.
func testOversizedFlows(t *testing.T, brokers []string) {
	sc := newScenario(12, 2, 60, 4)
	e := &e2e{brokers: brokers, sc: sc}
	e.in = kafkatest.Name(t, "in")
	e.out = kafkatest.Name(t, "out")
	e.app = kafkatest.Name(t, "app")
	e.late, e.dlq = e.app+"-late", e.app+"-dlq"
	adm := kadm.NewClient(kafkatest.Client(t, brokers))
	createTopicWithLimit(t, adm, e.in, sc.parts, 4<<20, nil)
	e.spec = sc.spec(t, e.app, e.in, e.out, "at_least_once")

	recs := sc.records(e.in)
	// First in partition 0, so that stream time cannot have passed it.
	big := tevent{ID: "big", TS: sc.t0 + 1234, Service: "checkout", Endpoint: "/a", Status: 503, Latency: 99999}
	v := map[string]any{"request_id": big.ID, "ts": big.TS, "service": big.Service, "endpoint": big.Endpoint,
		"status": big.Status, "latency_ms": big.Latency, "pad": strings.Repeat("x", 2<<20)}
	bigValue, _ := json.Marshal(v)
	sc.events = append(sc.events, big) // the independent computation counts it
	all := append([]*kgo.Record{{Topic: e.in, Partition: 0, Value: bigValue, Timestamp: time.UnixMilli(big.TS)}}, recs...)
	all = append(all, sc.badRecords(e.in)...)
	cl := kafkatest.Client(t, brokers, kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.MaxProduceRequestsInflightPerBroker(1), kgo.ProducerBatchMaxBytes(5<<20))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, all...).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}

	w := startWorker(t, e.spec, e.brokerList(), t.TempDir())
	got, late := e.finalResults(t, w)
	if late["big"] {
		t.Fatalf("the 2 MB record went to the late topic; it was first in its partition")
	}
	sc.verify(t, got, late)
	for _, r := range kafkatest.ReadAll(t, brokers, e.dlq, true) {
		if c := recHeader(r, "eddy.error.class"); c == "too_large" {
			t.Errorf("a too_large dead letter although every topic eddy created takes the record: %v", headerKeys(r))
		}
	}
	cfgs, err := adm.DescribeTopicConfigs(ctx, e.app+"-repartition", e.dlq, e.late)
	if err != nil {
		t.Fatal(err)
	}
	for _, rc := range cfgs {
		got := "unset"
		for _, c := range rc.Configs {
			if c.Key == "max.message.bytes" && c.Value != nil {
				got = *c.Value
			}
		}
		if got != strconv.Itoa(4<<20+64<<10) {
			t.Errorf("%s: max.message.bytes %s, want the source's 4 MiB plus 64 KiB for eddy's headers", rc.Name, got)
		}
	}
	if err := w.stop(syscall.SIGTERM); err != nil {
		t.Errorf("eddy exited with %v after SIGTERM", err)
	}
}

func recHeader(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

func headerKeys(r *kgo.Record) []string {
	var ks []string
	for _, h := range r.Headers {
		ks = append(ks, h.Key)
	}
	return ks
}
