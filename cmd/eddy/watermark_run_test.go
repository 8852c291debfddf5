package main

// Helpers of the watermark acceptance tests (watermark_test.go, issue 15):
// a scenario whose events are made while the test runs (bursts, steady
// input in real time, a registry outage), eddy's own registry as a
// separate `eddy registry` process, and a wait for the group to be idle
// that knows the watermark records eddy writes to its repartition topic.

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eddy-streams/eddy/internal/kafkatest"
)

// wmGrace is the grace period of every watermark scenario: short, as a
// user would pick it for producers that send in order, and much shorter
// than a producer burst or a failover.
const wmGrace = 4_000

// wmOpts describes one watermark scenario.
type wmOpts struct {
	parts      int32
	keys       int     // at most 12
	keyParts   []int32 // the input partition of each key; default key k on k % parts
	processing string
	// settings replace the e2e spec's "idle_timeout: 1h" line (top-level
	// keys such as idle_timeout and max_wait).
	settings string
	keyed    bool // source.keyed_by_group_key: true (no repartition topic)
	registry string
	// txnInput: the input is written in transactions (as by a Kafka
	// Streams or Flink job, or another eddy), one per produce call: every
	// partition written ends with a transaction marker.
	txnInput bool
}

// wmRun is one watermark scenario: topics, spec and the events produced
// so far (in e.sc.events, which the e2e verifier reads).
type wmRun struct {
	*e2e
	opts wmOpts
	rng  *rand.Rand
	id   int
	keys []string // "service|endpoint", index = key number
	part []int32  // input partition of each key
	// encode turns an event into the record value (JSON when nil).
	encode func(t testing.TB, e tevent) []byte
	avro   *avroE2E
	speed  int64       // how much faster than the wall clock event time runs in steady (1 when 0)
	txn    *kgo.Client // the transactional producer of opts.txnInput
}

func newWMRun(t testing.TB, brokers []string, o wmOpts) *wmRun {
	t.Helper()
	if o.processing == "" {
		o.processing = "at_least_once"
	}
	// Records late by design are produced only once every partition is
	// far past them: they must all be on the late topic.
	sc := &scenario{size: testWindow, grace: wmGrace, parts: o.parts, strictLate: true}
	now := time.Now().UnixMilli()
	sc.t0 = (now - 20*60_000) / testWindow * testWindow
	sc.flushTS = now + 30*60_000 // set again when the test flushes
	e := newE2EWith(t, brokers, o.processing, sc)
	r := &wmRun{e2e: e, opts: o, rng: rand.New(rand.NewPCG(uint64(now), 15))}
	var pairs [][2]string
	for _, ep := range []string{"/a", "/b", "/c"} {
		for _, svc := range []string{"checkout", "search", "accounts", "billing"} {
			pairs = append(pairs, [2]string{svc, ep})
		}
	}
	for k := 0; k < o.keys; k++ {
		r.keys = append(r.keys, pairs[k][0]+"|"+pairs[k][1])
		p := int32(k) % o.parts
		if o.keyParts != nil {
			p = o.keyParts[k]
		}
		r.part = append(r.part, p)
	}
	sc.keyOrder = r.keys
	y, err := os.ReadFile(e.spec)
	if err != nil {
		t.Fatal(err)
	}
	spec := strings.Replace(string(y), "idle_timeout: 1h\n", o.settings, 1)
	if o.keyed {
		spec = strings.Replace(spec, "  topics: ["+e.in+"]\n", "  topics: ["+e.in+"]\n  keyed_by_group_key: true\n", 1)
	}
	if err := os.WriteFile(e.spec, []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	if o.registry != "" {
		r.avro = newAvroE2EAt(t, e, o.registry, "")
	}
	return r
}

func (r *wmRun) start(t testing.TB, stateDir string) *worker {
	t.Helper()
	var env []string
	if r.avro != nil {
		env = append(env, "EDDY_REGISTRY_URL="+r.avro.registry)
	}
	return startWorker(t, r.spec, r.brokerList(), stateDir, env...)
}

// ready waits until every worker has partitions assigned and reports
// ready (state restored, processing).
func ready(t *testing.T, ws ...*worker) {
	t.Helper()
	for i, w := range ws {
		addr := w.metricsAddr(t)
		waitFor(t, 90*time.Second, fmt.Sprintf("worker %d assigned and ready", i), func() (bool, string) {
			alive(t, w)
			ok := strings.Contains(w.logs(), `msg="partitions assigned"`) && metric(t, addr, "eddy_ready") == 1
			return ok, w.logs()
		})
	}
}

// alive fails the test when the worker has exited.
func alive(t *testing.T, w *worker) {
	t.Helper()
	select {
	case err := <-w.done:
		w.exited = true
		t.Fatalf("eddy exited early: %v", err)
	default:
	}
}

// gen makes the events of key k with event times in [from, to): one about
// every `every` ms, and one in ten up to 1.5s out of order (well within
// the 4s grace). arrival is the time before that jitter: the order in
// which a producer sends them.
func (r *wmRun) gen(k int, from, to, every int64) []tevent {
	svc, ep, _ := strings.Cut(r.keys[k], "|")
	var out []tevent
	for ts := from + r.rng.Int64N(every); ts < to; ts += 1 + r.rng.Int64N(2*every) {
		e := tevent{TS: ts, Service: svc, Endpoint: ep, Status: 200, Latency: 5 + r.rng.IntN(400), part: r.part[k], arrival: ts}
		if r.rng.IntN(10) == 0 {
			e.TS -= r.rng.Int64N(1500)
		}
		if r.rng.IntN(20) == 0 {
			e.Status = 503
		}
		r.id++
		e.ID = fmt.Sprintf("wm-%07d", r.id)
		out = append(out, e)
	}
	return out
}

// produce sends events in arrival order and adds them to the scenario.
func (r *wmRun) produce(t testing.TB, evs []tevent) {
	t.Helper()
	if len(evs) == 0 {
		return
	}
	sort.SliceStable(evs, func(i, j int) bool { return evs[i].arrival < evs[j].arrival })
	recs := make([]*kgo.Record, 0, len(evs))
	for _, e := range evs {
		var v []byte
		if r.encode != nil {
			v = r.encode(t, e)
		} else {
			v, _ = json.Marshal(e)
		}
		recs = append(recs, &kgo.Record{Topic: r.in, Partition: e.part, Value: v})
	}
	if r.opts.txnInput {
		r.produceTxn(t, recs)
	} else {
		produceSync(t, r.brokers, recs)
	}
	r.sc.events = append(r.sc.events, evs...)
}

// produceTxn produces recs in one committed transaction.
func (r *wmRun) produceTxn(t testing.TB, recs []*kgo.Record) {
	t.Helper()
	if r.txn == nil {
		r.txn = kafkatest.Client(t, r.brokers, kgo.RecordPartitioner(kgo.ManualPartitioner()),
			kgo.TransactionalID(r.app+"-test-producer"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := r.txn.BeginTransaction(); err != nil {
		t.Fatalf("begin transaction: %v", err)
	}
	if err := r.txn.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
	if err := r.txn.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatalf("commit transaction: %v", err)
	}
}

// steady produces every key's events in real time for d, sent every
// 200ms: event time is the wall clock, running r.speed times faster from
// the start of the call (1 when unset). keep selects the keys; tick, when
// not nil, runs after each send with the time elapsed.
func (r *wmRun) steady(t testing.TB, d time.Duration, every int64, keep func(k int) bool, tick func(elapsed time.Duration)) {
	t.Helper()
	speed := max(r.speed, 1)
	start := time.Now()
	eventTime := func() int64 { return start.UnixMilli() + speed*time.Since(start).Milliseconds() }
	last := eventTime()
	for time.Since(start) < d {
		time.Sleep(200 * time.Millisecond) // the producers' own pace
		now := eventTime()
		var evs []tevent
		for k := range r.keys {
			if keep == nil || keep(k) {
				evs = append(evs, r.gen(k, last, now, every)...)
			}
		}
		last = now
		r.produce(t, evs)
		if tick != nil {
			tick(time.Since(start))
		}
	}
}

// produceLate produces n records per key at event time ts, far behind every
// partition's watermark: they are late by any definition.
func (r *wmRun) produceLate(t testing.TB, n int, ts int64) {
	t.Helper()
	var evs []tevent
	for k := range r.keys {
		svc, ep, _ := strings.Cut(r.keys[k], "|")
		for i := 0; i < n; i++ {
			r.id++
			evs = append(evs, tevent{ID: fmt.Sprintf("wm-%07d", r.id), TS: ts + int64(i)*1000, Service: svc, Endpoint: ep,
				Status: 200, Latency: 1, part: r.part[k], arrival: int64(r.id), designedLate: true})
		}
	}
	r.produce(t, evs)
}

// flush produces, on every key's partition, one record far ahead (but
// within time.max_future of the wall clock) so that every window of
// interest closes.
func (r *wmRun) flush(t testing.TB) {
	t.Helper()
	r.sc.flushTS = (time.Now().UnixMilli() + 10*60_000) / testWindow * testWindow
	var evs []tevent
	for k := range r.keys {
		svc, ep, _ := strings.Cut(r.keys[k], "|")
		r.id++
		evs = append(evs, tevent{ID: fmt.Sprintf("wm-%07d", r.id), TS: r.sc.flushTS, Service: svc, Endpoint: ep,
			Status: 200, Latency: 1, part: r.part[k], arrival: int64(r.id), flush: true})
	}
	r.produce(t, evs)
}

// idle waits until the group has processed everything produced so far: on
// every partition of the input (and repartition) topic, the committed
// offset is at the end, or only watermark records (header eddy.wm, no
// key) follow it, and no transaction is open. The workers must keep
// running.
func (r *wmRun) idle(t *testing.T, timeout time.Duration, ws ...*worker) {
	t.Helper()
	adm := kadm.NewClient(kafkatest.Client(t, r.brokers))
	topics := []string{r.in}
	if !r.opts.keyed {
		topics = append(topics, r.app+"-repartition")
	}
	waitFor(t, timeout, "group "+r.app+" idle", func() (bool, string) {
		for _, w := range ws {
			alive(t, w)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		ends, err1 := adm.ListEndOffsets(ctx, topics...)
		stable, err2 := adm.ListCommittedOffsets(ctx, topics...)
		offs, err3 := adm.FetchOffsets(ctx, r.app)
		if err1 != nil || err2 != nil || err3 != nil {
			return false, fmt.Sprint(err1, err2, err3)
		}
		var behind []string
		n := 0
		ends.Each(func(o kadm.ListedOffset) {
			n++
			c, ok := offs.Lookup(o.Topic, o.Partition)
			lso, lok := stable.Lookup(o.Topic, o.Partition)
			at := int64(0)
			if ok {
				at = c.At
			}
			switch {
			case o.Err != nil || !lok || lso.Err != nil:
				behind = append(behind, fmt.Sprintf("%s/%d: %v", o.Topic, o.Partition, o.Err))
			case lso.Offset < o.Offset:
				behind = append(behind, fmt.Sprintf("%s/%d: open transaction (stable %d, end %d)", o.Topic, o.Partition, lso.Offset, o.Offset))
			case o.Offset > 0 && at < o.Offset && !onlyWatermarks(t, r.brokers, o.Topic, o.Partition, at, o.Offset):
				behind = append(behind, fmt.Sprintf("%s/%d: committed %d, end %d", o.Topic, o.Partition, at, o.Offset))
			}
		})
		if n < len(topics)*int(r.sc.parts) {
			behind = append(behind, fmt.Sprintf("%d partitions listed", n))
		}
		return len(behind) == 0, strings.Join(behind, "\n")
	})
}

// isWatermark reports whether r is one of eddy's watermark records.
func isWatermark(r *kgo.Record) bool {
	if len(r.Key) != 0 {
		return false
	}
	for _, h := range r.Headers {
		if h.Key == "eddy.wm" {
			return true
		}
	}
	return false
}

// onlyWatermarks reports whether the committed records of a partition in
// [from, end) are all watermark records (or transaction markers).
func onlyWatermarks(t testing.TB, brokers []string, topic string, partition int32, from, end int64) bool {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.KeepControlRecords(),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {partition: kgo.NewOffset().At(max(from, 0))}}))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return false // not known to be idle
		}
		data, last := false, int64(-1)
		fs.EachRecord(func(r *kgo.Record) {
			if r.Offset >= end {
				return
			}
			last = max(last, r.Offset)
			data = data || (!r.Attrs.IsControl() && !isWatermark(r))
		})
		if data {
			return false
		}
		if last >= end-1 {
			return true
		}
	}
}

// results reads the final windows and the ids on the late topic (JSON or
// Avro), checking that no watermark record reached either.
func (r *wmRun) results(t *testing.T) (map[winKey][]result, map[string]bool) {
	t.Helper()
	for _, topic := range []string{r.out, r.late, r.dlq} {
		for _, rec := range kafkatest.ReadAll(t, r.brokers, topic, true) {
			for _, h := range rec.Headers {
				if h.Key == "eddy.wm" {
					t.Errorf("a watermark record (header eddy.wm) reached %s: partition %d offset %d", topic, rec.Partition, rec.Offset)
				}
			}
		}
	}
	return r.sc.awaitFinal(t, 30*time.Second, func() (map[winKey][]result, map[string]bool) {
		if r.avro != nil {
			return r.avro.results(t), r.avro.lateIDs(t)
		}
		return parseResults(t, kafkatest.ReadAll(t, r.brokers, r.out, true)), lateIDs(t, r.brokers, r.late)
	})
}

// checkLateExactly: the late topic holds exactly the designed-late records
// (on-time ones listed with their partition and how far ahead the other
// partitions were).
func (r *wmRun) checkLateExactly(t *testing.T, late map[string]bool) {
	t.Helper()
	designed, onTime := 0, 0
	var examples []string
	for _, e := range r.sc.events {
		switch {
		case e.designedLate:
			designed++
		case late[e.ID]:
			onTime++
			if len(examples) < 10 {
				examples = append(examples, fmt.Sprintf("%s partition %d event time %s", e.ID, e.part, time.UnixMilli(e.TS).UTC().Format("15:04:05.000")))
			}
		}
	}
	if onTime > 0 {
		t.Errorf("%d on-time records (of %d) are on the late topic, e.g.:\n%s\nwhere the late topic says:\n%s", onTime, len(r.sc.events),
			strings.Join(examples, "\n"), r.lateWhy(t, late, 10))
	}
	if len(late) != designed+onTime {
		t.Errorf("late topic holds %d distinct ids, %d designed late + %d on time", len(late), designed, onTime)
	}
}

// lateWhy describes, for up to n of the on-time records found on the
// late topic (JSON runs only), what the late record says: the window, the
// stream time that made it late, the rollup, and when and where it was
// written. A failure then shows which task judged the record late, and
// when (a worker that took over, or the first owner).
func (r *wmRun) lateWhy(t *testing.T, late map[string]bool, n int) string {
	t.Helper()
	if r.avro != nil {
		return "(Avro run: not decoded)"
	}
	designed := map[string]bool{}
	for _, e := range r.sc.events {
		if e.designedLate {
			designed[e.ID] = true
		}
	}
	var out []string
	for _, rec := range kafkatest.ReadAll(t, r.brokers, r.late, true) {
		var e tevent
		if json.Unmarshal(rec.Value, &e) != nil || designed[e.ID] || !late[e.ID] {
			continue
		}
		hs := map[string]string{}
		for _, h := range rec.Headers {
			hs[h.Key] = string(h.Value)
		}
		out = append(out, fmt.Sprintf("%s late-topic p%d@%d written %s: window %s, stream time %s, source %s/%s@%s",
			e.ID, rec.Partition, rec.Offset, rec.Timestamp.UTC().Format("15:04:05.000"), hs["eddy.late.window"],
			hs["eddy.late.stream-time"], hs["eddy.source.topic"], hs["eddy.source.partition"], hs["eddy.source.offset"]))
		if len(out) == n {
			break
		}
	}
	return strings.Join(out, "\n")
}

// checkNoDeadLetters: nothing went to the dead-letter topic.
func (r *wmRun) checkNoDeadLetters(t *testing.T) {
	t.Helper()
	if dl := kafkatest.ReadAll(t, r.brokers, r.dlq, true); len(dl) != 0 {
		t.Errorf("%d dead letters, want none; first: %s", len(dl), dl[0].Value)
	}
}

// streamTimes returns eddy_stream_time_seconds of every task of a worker.
func streamTimes(t *testing.T, w *worker) map[string]float64 {
	t.Helper()
	return scrapeSeries(t, w.metricsAddr(t), "eddy_stream_time_seconds")
}

// wmRegistry is eddy's own registry, run as `eddy registry` on a fixed
// address with its own topic, so it can be stopped and started again
// where the workers expect it.
type wmRegistry struct {
	t       *testing.T
	brokers []string
	addr    string
	topic   string
	w       *worker
}

func startEddyRegistry(t *testing.T, brokers []string) *wmRegistry {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	r := &wmRegistry{t: t, brokers: brokers, addr: addr, topic: kafkatest.Name(t, "schemas")}
	r.start()
	return r
}

func (r *wmRegistry) url() string { return "http://" + r.addr }

// start runs `eddy registry` and waits until it answers (a few attempts:
// the port of the previous run may linger for a moment).
func (r *wmRegistry) start() {
	r.t.Helper()
	for attempt := 1; ; attempt++ {
		r.w = startEddy(r.t, nil, "registry", "--brokers", strings.Join(r.brokers, ","), "--http-addr", r.addr,
			"--topic", r.topic, "--log-level", "info")
		deadline := time.Now().Add(60 * time.Second)
		for time.Now().Before(deadline) && !r.w.exited {
			select {
			case err := <-r.w.done:
				r.w.exited = true
				if attempt == 20 {
					r.t.Fatalf("eddy registry on %s exited: %v\n%s", r.addr, err, r.w.logs())
				}
				continue
			default:
			}
			resp, err := http.Get(r.url() + "/subjects")
			if err == nil {
				_ = resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					return
				}
			}
			time.Sleep(100 * time.Millisecond)
		}
		if !r.w.exited {
			r.t.Fatalf("eddy registry on %s does not answer after 60s:\n%s", r.addr, r.w.logs())
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// stop ends the registry process: clients see connection refused.
func (r *wmRegistry) stop() {
	r.t.Helper()
	if err := r.w.stop(syscall.SIGTERM); err != nil {
		r.t.Logf("eddy registry exited with %v", err)
	}
}

// avroEncoders registers v1 and v2 of the request schema under the run's
// subject and makes the run produce Avro: v1 unless useV2 says otherwise.
func (r *wmRun) avroEncoders(t *testing.T, useV2 func(e tevent) bool) {
	t.Helper()
	v1 := r.avro.encoder(t, r.avro.subject, requestSchema)
	v2 := r.avro.encoder(t, r.avro.subject, requestSchemaV2)
	if v1.ID() == v2.ID() {
		t.Fatal("v2 has the id of v1")
	}
	r.encode = func(t testing.TB, e tevent) []byte {
		enc := v1
		if useV2 != nil && useV2(e) {
			enc = v2
		}
		b, err := enc.Encode(map[string]any{"request_id": e.ID, "ts": time.UnixMilli(e.TS).UTC(), "service": e.Service,
			"endpoint": e.Endpoint, "status": e.Status, "latency_ms": e.Latency})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
}

// logLines returns the worker's log lines with msg.
func logLines(w *worker, msg string) []string {
	var out []string
	for _, l := range strings.Split(w.logs(), "\n") {
		if strings.Contains(l, `msg="`+msg+`"`) {
			out = append(out, l)
		}
	}
	return out
}

// logAttr returns attribute k of a text log line ("" when absent).
func logAttr(line, k string) string {
	m := regexp.MustCompile(`(?:^| )` + regexp.QuoteMeta(k) + `=("(?:[^"\\]|\\.)*"|\S*)`).FindStringSubmatch(line)
	if m == nil {
		return ""
	}
	return strings.Trim(m[1], `"`)
}
