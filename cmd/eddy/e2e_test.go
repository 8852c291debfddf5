package main

// End-to-end tests of the eddy binary: they build it, run `eddy run` as a
// separate process against kfake (fast) or the real broker (TestKafka*),
// feed known events, and check every final window against a computation
// done here with plain loops, sharing no code with the engine.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eddy-streams/eddy/internal/kafkatest"
	"github.com/eddy-streams/eddy/internal/testbin"
)

var eddyBin string

// The binary has the test hooks (processor/testhooks_on.go): the crash,
// restore and purge tests set them through EDDY_TEST_* variables.
func TestMain(m *testing.M) { testbin.Main(m, ".", &eddyBin, "eddytest") }

// worker is one `eddy run` process.
type worker struct {
	t      testing.TB
	cmd    *exec.Cmd
	done   chan error
	logMu  sync.Mutex
	log    strings.Builder
	exited bool
}

func startWorker(t testing.TB, spec, brokers, stateDir string, extraEnv ...string) *worker {
	t.Helper()
	return startEddy(t, extraEnv, "run", "-f", spec, "--brokers", brokers, "--state-dir", stateDir,
		"--http-addr", "127.0.0.1:0", "--session-timeout", "6s", "--log-level", "info")
}

// startEddy starts the eddy binary with args (any subcommand) and extraEnv,
// collecting its stderr; the process is killed when the test ends.
func startEddy(t testing.TB, extraEnv []string, args ...string) *worker {
	t.Helper()
	cmd := exec.Command(eddyBin, args...)
	cmd.Env = append(os.Environ(), extraEnv...)
	w := &worker{t: t, cmd: cmd, done: make(chan error, 1)}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			w.logMu.Lock()
			w.log.WriteString(sc.Text() + "\n")
			w.logMu.Unlock()
		}
		w.done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		if !w.exited && t.Failed() {
			// A goroutine dump of a worker still running when its test
			// failed shows where it was (it goes to the log below).
			_ = cmd.Process.Signal(syscall.SIGQUIT)
			select {
			case <-w.done:
				w.exited = true
			case <-time.After(5 * time.Second):
			}
		}
		if !w.exited {
			_ = cmd.Process.Kill()
			<-w.done
			w.exited = true
		}
		if t.Failed() {
			t.Logf("eddy worker log:\n%s", w.logs())
		}
	})
	return w
}

func (w *worker) logs() string {
	w.logMu.Lock()
	defer w.logMu.Unlock()
	return w.log.String()
}

// stop sends sig and waits for the process to exit.
func (w *worker) stop(sig syscall.Signal) error {
	_ = w.cmd.Process.Signal(sig)
	select {
	case err := <-w.done:
		w.exited = true
		return err
	case <-time.After(60 * time.Second):
		// Ask the Go runtime for a goroutine dump (it goes to the log).
		_ = w.cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-w.done:
			w.exited = true
		case <-time.After(5 * time.Second):
		}
		w.t.Fatalf("eddy did not exit within 60s of %v", sig)
		return nil
	}
}

// scenario is a known input: events per key with out-of-order and late
// ones, undecodable records, and a final flush per key far ahead so every
// window of interest closes.
type scenario struct {
	t0       int64 // ms, aligned to the window size
	size     int64
	grace    int64
	events   []tevent
	bad      []tbad
	flushTS  int64
	parts    int32
	keyOrder []string
	// strictLate: every designed-late record must be on the late topic.
	// A designed-late record is late by its own partition's order, but a
	// task behind the repartition topic counts it late only once it has
	// heard that every source partition's watermark passed its window
	// (DESIGN.md, "Time"): in a run where everything is pre-loaded it may
	// arrive before those watermarks and be counted in its window, which
	// verify then checks like any other. Tests that produce the late
	// records after results have appeared set it.
	strictLate bool
}

type tevent struct {
	ID       string `json:"request_id"`
	TS       int64  `json:"ts"`
	Service  string `json:"service"`
	Endpoint string `json:"endpoint"`
	Status   int    `json:"status"`
	Latency  int    `json:"latency_ms"`

	part         int32
	arrival      int64 // order of production: event time before jitter
	designedLate bool
	flush        bool
}

type tbad struct {
	part  int32
	value []byte
}

func (e tevent) key() string { return e.Service + "|" + e.Endpoint }

const testWindow = 10_000

func newScenario(seed uint64, parts int32, perKey, keys int) *scenario {
	rng := rand.New(rand.NewPCG(seed, seed+1))
	now := time.Now().UnixMilli()
	s := &scenario{size: testWindow, grace: 5_000, parts: parts}
	s.t0 = (now - 30*60_000) / testWindow * testWindow
	s.flushTS = s.t0 + 60*60_000
	id := 0
	k := 0
	var pairs [][2]string
	for _, svc := range []string{"checkout", "search", "accounts", "billing"} {
		for _, ep := range []string{"/a", "/b", "/c"} {
			pairs = append(pairs, [2]string{svc, ep})
		}
	}
	// Spread the first keys over services first, so small scenarios still
	// have several services.
	sort.SliceStable(pairs, func(i, j int) bool { return pairs[i][1] < pairs[j][1] })
	for _, pr := range pairs[:keys] {
		svc, ep := pr[0], pr[1]
		{
			part := int32(k) % parts
			k++
			s.keyOrder = append(s.keyOrder, svc+"|"+ep)
			ts := s.t0
			for i := 0; i < perKey; i++ {
				ts += int64(rng.IntN(700))
				e := tevent{TS: ts, Service: svc, Endpoint: ep, Status: 200, Latency: 5 + rng.IntN(400), part: part, arrival: ts}
				if rng.IntN(10) == 0 { // out of order, within grace
					e.TS -= int64(rng.IntN(2500))
				}
				if rng.IntN(20) == 0 {
					e.Status = 503
				}
				id++
				e.ID = fmt.Sprintf("ev-%06d", id)
				s.events = append(s.events, e)
			}
		}
	}
	// Produce in arrival order, as services would: out-of-order events
	// arrive up to 2.5s behind, always within the 5s grace.
	sort.SliceStable(s.events, func(i, j int) bool { return s.events[i].arrival < s.events[j].arrival })
	for k, key := range s.keyOrder {
		svc, ep, _ := strings.Cut(key, "|")
		part := int32(k) % parts
		{
			for i := 0; i < 3; i++ { // far behind every window of this key: late
				id++
				s.events = append(s.events, tevent{ID: fmt.Sprintf("ev-%06d", id), TS: s.t0 - 30*60_000 + int64(i)*1000, Service: svc,
					Endpoint: ep, Status: 200, Latency: 1, part: part, designedLate: true})
			}
		}
	}
	for i, b := range []string{`{not json`, `[1,2,3]`, `{"ts":"yesterday","service":"x","endpoint":"/a"}`, `{"ts":1,"endpoint":"/a"}`} {
		s.bad = append(s.bad, tbad{part: int32(i) % parts, value: []byte(b)})
	}
	for k := range s.keyOrder {
		svc, ep, _ := strings.Cut(s.keyOrder[k], "|")
		id++
		s.events = append(s.events, tevent{ID: fmt.Sprintf("ev-%06d", id), TS: s.flushTS, Service: svc, Endpoint: ep,
			Status: 200, Latency: 1, part: int32(k) % parts, flush: true})
	}
	return s
}

func (s *scenario) records(topic string) []*kgo.Record {
	var out []*kgo.Record
	for _, e := range s.events {
		b, _ := json.Marshal(e)
		out = append(out, &kgo.Record{Topic: topic, Partition: e.part, Value: b})
	}
	return out
}

// splitLate returns the scenario's records without those late by design,
// and those.
func (s *scenario) splitLate(topic string) (onTime, late []*kgo.Record) {
	for i, r := range s.records(topic) {
		if s.events[i].designedLate {
			late = append(late, r)
		} else {
			onTime = append(onTime, r)
		}
	}
	return onTime, late
}

// watermarkEvery is how often eddy's source stage reports watermarks
// (processor/watermarks.go).
const watermarkEvery = 200 * time.Millisecond

func (s *scenario) badRecords(topic string) []*kgo.Record {
	var out []*kgo.Record
	for _, b := range s.bad {
		out = append(out, &kgo.Record{Topic: topic, Partition: b.part, Value: b.value,
			Headers: []kgo.RecordHeader{{Key: "trace", Value: []byte("t-1")}}})
	}
	return out
}

func (s *scenario) spec(t testing.TB, app, in, out string, processing string) string {
	y := fmt.Sprintf(`app: %s
source:
  topics: [%s]
time:
  field: ts
key: [service, endpoint]
window:
  type: tumbling
  size: 10s
  grace: %dms
aggregates:
  - {name: count, op: count}
  - {name: errors, op: count, where: "status >= 500"}
  - {name: sum_latency, op: sum, field: latency_ms}
  - {name: min_latency, op: min, field: latency_ms}
  - {name: max_latency, op: max, field: latency_ms}
  - {name: mean_latency, op: mean, field: latency_ms}
  - {name: p99_latency, op: p99, field: latency_ms}
output:
  topic: %s
processing: %s
commit_interval: 200ms
idle_timeout: 1h
`, app, in, s.grace, out, processing)
	p := filepath.Join(t.TempDir(), "pipeline.yaml")
	if err := os.WriteFile(p, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// produceSync writes records in order (per partition) and fails the test
// on any error.
func produceSync(t testing.TB, brokers []string, recs []*kgo.Record) {
	t.Helper()
	cl := kafkatest.Client(t, brokers, kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.MaxProduceRequestsInflightPerBroker(1))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
}

// winKey names one final window of the comparison.
type winKey struct {
	key   string
	start int64
}

type winAgg struct {
	count, errors, sum, min, max float64
	lat                          []float64
}

// expected computes every final window from the input, leaving out the
// records eddy reported late (their ids), with plain loops.
func (s *scenario) expected(late map[string]bool) map[winKey]*winAgg {
	out := map[winKey]*winAgg{}
	for _, e := range s.events {
		if e.flush || late[e.ID] {
			continue
		}
		start := e.TS - ((e.TS%s.size)+s.size)%s.size
		k := winKey{e.key(), start}
		a := out[k]
		if a == nil {
			a = &winAgg{min: math.Inf(1), max: math.Inf(-1)}
			out[k] = a
		}
		a.count++
		if e.Status >= 500 {
			a.errors++
		}
		l := float64(e.Latency)
		a.sum += l
		a.min = math.Min(a.min, l)
		a.max = math.Max(a.max, l)
		a.lat = append(a.lat, l)
	}
	return out
}

// result is one output record as eddy writes it (JSON).
type result struct {
	Key         map[string]string `json:"key"`
	WindowStart time.Time         `json:"window_start"`
	WindowEnd   time.Time         `json:"window_end"`
	Count       float64           `json:"count"`
	Errors      float64           `json:"errors"`
	Sum         *float64          `json:"sum_latency"`
	Min         *float64          `json:"min_latency"`
	Max         *float64          `json:"max_latency"`
	Mean        *float64          `json:"mean_latency"`
	P99         *float64          `json:"p99_latency"`
	raw         string
}

func parseResults(t testing.TB, recs []*kgo.Record) map[winKey][]result {
	t.Helper()
	out := map[winKey][]result{}
	for _, r := range recs {
		var res result
		if err := json.Unmarshal(r.Value, &res); err != nil {
			t.Fatalf("output record %s/%d@%d is not a result: %v: %s", r.Topic, r.Partition, r.Offset, err, r.Value)
		}
		res.raw = string(r.Value)
		k := winKey{res.Key["service"] + "|" + res.Key["endpoint"], res.WindowStart.UnixMilli()}
		out[k] = append(out[k], res)
	}
	return out
}

// lateIDs reads the late topic and returns the request ids found there.
func lateIDs(t testing.TB, brokers []string, topic string) map[string]bool {
	t.Helper()
	ids := map[string]bool{}
	for _, r := range kafkatest.ReadAll(t, brokers, topic, true) {
		var e tevent
		if err := json.Unmarshal(r.Value, &e); err != nil {
			t.Fatalf("late record is not the original bytes: %v", err)
		}
		ids[e.ID] = true
	}
	return ids
}

// waitIdle waits until the group has committed, on every partition of the
// app's input and repartition topics, the end offset: everything produced
// so far has been processed and its effects flushed. The worker must keep
// running (checked when w is not nil).
//
// A partition whose last stable offset is below its end has an open
// transaction (a worker's current one, or one a killed worker left until
// it is fenced or times out): read_committed readers, eddy's tasks among
// them, cannot see past it yet, so the partition is not idle, whatever
// hasRecords sees before it.
func (e *e2e) waitIdle(t testing.TB, timeout time.Duration, w *worker) {
	t.Helper()
	adm := kadm.NewClient(kafkatest.Client(t, e.brokers))
	topics := []string{e.in, e.app + "-repartition"}
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		ends, err1 := adm.ListEndOffsets(ctx, topics...)
		offs, err2 := adm.FetchOffsets(ctx, e.app)
		stable, err3 := adm.ListCommittedOffsets(ctx, topics...)
		cancel()
		err1 = errors.Join(err1, err3)
		behind := -1
		if err1 == nil && err2 == nil {
			behind = 0
			n := 0
			ends.Each(func(o kadm.ListedOffset) {
				n++
				c, ok := offs.Lookup(o.Topic, o.Partition)
				lso, lok := stable.Lookup(o.Topic, o.Partition)
				if o.Err != nil || !lok || lso.Err != nil || lso.Offset < o.Offset ||
					(o.Offset > 0 && (!ok || c.At < o.Offset && hasRecords(t, e.brokers, o.Topic, o.Partition, c.At, o.Offset))) {
					behind++
				}
			})
			if n < 2*int(e.sc.parts) {
				behind++ // a topic is not there yet
			}
		}
		if behind == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("group %s not idle after %s: %d partitions behind (%v %v)", e.app, timeout, behind, err1, err2)
		}
		if w != nil {
			select {
			case err := <-w.done:
				w.exited = true
				t.Fatalf("eddy exited early: %v", err)
			default:
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// hasRecords reports whether a committed (read_committed) data record
// exists in [offset, end): a transactional topic ends with a commit marker
// that a consumer's committed offset never passes, and eddy's watermark
// records (heartbeats, every fifth of the idle timeout on the repartition
// topic) are not data: everything produced is processed when only they
// follow the committed offset. Not seeing the range in time means "not
// known to be idle".
func hasRecords(t testing.TB, brokers []string, topic string, partition int32, offset, end int64) bool {
	if offset < 0 {
		return true
	}
	return !onlyWatermarks(t, brokers, topic, partition, offset, end)
}

// finalResults waits for the group to be idle, then reads the late topic
// and the outputs.
func (e *e2e) finalResults(t testing.TB, w *worker) (map[winKey][]result, map[string]bool) {
	t.Helper()
	e.waitIdle(t, 120*time.Second, w)
	return e.sc.awaitFinal(t, 30*time.Second, func() (map[winKey][]result, map[string]bool) {
		late := lateIDs(t, e.brokers, e.late)
		return parseResults(t, kafkatest.ReadAll(t, e.brokers, e.out, true)), late
	})
}

// awaitFinal reads the results and the late records' ids (read) until
// every window the input defines, leaving out the records on the late
// topic, has a result, or timeout passes; it does not fail by itself
// (verify does). The group being idle means every record was processed,
// but what closes the last windows can come after the records: under
// exactly-once the watermark reports of the other input partitions follow
// the flush records on the repartition topic and are read when their
// transaction commits, so the last results may be written a moment after
// the group looks idle.
func (s *scenario) awaitFinal(t testing.TB, timeout time.Duration, read func() (map[winKey][]result, map[string]bool)) (map[winKey][]result, map[string]bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got, late := read()
		complete := true
		for k := range s.expected(late) {
			if len(got[k]) == 0 {
				complete = false
				break
			}
		}
		if complete || time.Now().After(deadline) {
			return got, late
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// verify compares eddy's final windows with the independent computation.
// Duplicates of a final result are allowed only when identical.
func (s *scenario) verify(t testing.TB, got map[winKey][]result, late map[string]bool) {
	t.Helper()
	for _, e := range s.events {
		if s.strictLate && e.designedLate && !late[e.ID] {
			t.Errorf("record %s (event time %d, far behind its key's stream time) is not in the late topic", e.ID, e.TS)
		}
	}
	exp := s.expected(late)
	if len(got) < len(exp) {
		t.Errorf("%d final windows, expected %d", len(got), len(exp))
	}
	for k, a := range exp {
		rs := got[k]
		if len(rs) == 0 {
			t.Errorf("window %s @%d: missing (expected count %v)", k.key, k.start, a.count)
			continue
		}
		for _, r := range rs[1:] {
			if r.raw != rs[0].raw {
				t.Errorf("window %s @%d: duplicate final results differ:\n%s\n%s", k.key, k.start, rs[0].raw, r.raw)
			}
		}
		r := rs[0]
		if r.WindowEnd.UnixMilli()-r.WindowStart.UnixMilli() != s.size {
			t.Errorf("window %s @%d: bounds %v-%v", k.key, k.start, r.WindowStart, r.WindowEnd)
		}
		sort.Float64s(a.lat)
		check := func(name string, got *float64, want float64) {
			if got == nil || *got != want {
				t.Errorf("window %s @%d: %s = %v, want %v", k.key, k.start, name, deref(got), want)
			}
		}
		if r.Count != a.count || r.Errors != a.errors {
			t.Errorf("window %s @%d: count=%v errors=%v, want %v %v", k.key, k.start, r.Count, r.Errors, a.count, a.errors)
		}
		check("sum", r.Sum, a.sum)
		check("min", r.Min, a.min)
		check("max", r.Max, a.max)
		if r.Mean == nil || math.Abs(*r.Mean-a.sum/a.count) > 1e-9*a.sum {
			t.Errorf("window %s @%d: mean = %v, want %v", k.key, k.start, deref(r.Mean), a.sum/a.count)
		}
		// p99 from the sketch: within its 1% relative accuracy of the
		// exact value at one of the two ranks around 0.99*(n-1).
		rank := 0.99 * float64(len(a.lat)-1)
		lo, hi := a.lat[int(math.Floor(rank))], a.lat[int(math.Ceil(rank))]
		if r.P99 == nil || !(math.Abs(*r.P99-lo) <= 0.01*lo+1e-9 || math.Abs(*r.P99-hi) <= 0.01*hi+1e-9) {
			t.Errorf("window %s @%d: p99 = %v, want within 1%% of %v or %v", k.key, k.start, deref(r.P99), lo, hi)
		}
	}
	for k := range got {
		if k.start >= s.flushTS-s.size {
			continue
		}
		if exp[k] == nil {
			t.Errorf("window %s @%d: emitted but no input belongs to it: %s", k.key, k.start, got[k][0].raw)
		}
	}
}

func deref(p *float64) any {
	if p == nil {
		return nil
	}
	return *p
}

// e2eSetup creates topics and writes the pipeline for one run.
type e2e struct {
	brokers            []string
	in, out, late, dlq string
	app                string
	spec               string
	sc                 *scenario
}

func newE2E(t testing.TB, brokers []string, processing string) *e2e {
	return newE2EWith(t, brokers, processing, newScenario(42, 4, 150, 6))
}

func newE2EWith(t testing.TB, brokers []string, processing string, sc *scenario) *e2e {
	e := &e2e{brokers: brokers, sc: sc}
	e.in = kafkatest.Name(t, "in")
	e.out = kafkatest.Name(t, "out")
	e.app = kafkatest.Name(t, "app")
	e.late = e.app + "-late"
	e.dlq = e.app + "-dlq"
	kafkatest.CreateTopic(t, brokers, e.in, e.sc.parts)
	e.spec = e.sc.spec(t, e.app, e.in, e.out, processing)
	return e
}

func (e *e2e) brokerList() string { return strings.Join(e.brokers, ",") }

// testEndToEnd: known events with out-of-order, late and bad records over
// several keys and partitions; every final window must be exactly right.
func testEndToEnd(t *testing.T, brokers []string, processing string) {
	e := newE2E(t, brokers, processing)
	// The records late by design come after the first results: by then
	// every task has heard every partition's watermark, so they are late
	// whichever task they reach.
	recs, lateRecs := e.sc.splitLate(e.in)
	produceSync(t, brokers, append(recs, e.sc.badRecords(e.in)...))
	w := startWorker(t, e.spec, e.brokerList(), t.TempDir())
	waitOutputs(t, brokers, e.out, 1, w)
	time.Sleep(2 * watermarkEvery)
	produceSync(t, brokers, lateRecs)
	e.sc.strictLate = true
	got, late := e.finalResults(t, w)
	e.sc.verify(t, got, late)
	for k, rs := range got {
		if len(rs) > 1 {
			t.Errorf("window %v emitted %d times in a clean run", k, len(rs))
		}
	}
	checkDeadLetters(t, brokers, e)
	if err := w.stop(syscall.SIGTERM); err != nil {
		t.Errorf("eddy exited with %v after SIGTERM", err)
	}
}

func checkDeadLetters(t *testing.T, brokers []string, e *e2e) {
	t.Helper()
	dl := kafkatest.ReadAll(t, brokers, e.dlq, true)
	if len(dl) != len(e.sc.bad) {
		t.Fatalf("dead-letter topic has %d records, want %d", len(dl), len(e.sc.bad))
	}
	seen := map[string]bool{}
	for _, r := range dl {
		h := map[string]string{}
		for _, x := range r.Headers {
			h[x.Key] = string(x.Value)
		}
		seen[string(r.Value)] = true
		if h["trace"] != "t-1" {
			t.Errorf("dead letter %q lost its original headers: %v", r.Value, h)
		}
		if h["eddy.error.class"] == "" || h["eddy.error.message"] == "" || h["eddy.source.topic"] != e.in ||
			h["eddy.source.partition"] == "" || h["eddy.source.offset"] == "" {
			t.Errorf("dead letter %q lacks headers saying why and where: %v", r.Value, h)
		}
	}
	for _, b := range e.sc.bad {
		if !seen[string(b.value)] {
			t.Errorf("bad record %q is not in the dead-letter topic with its original bytes", b.value)
		}
	}
}

func TestEndToEnd(t *testing.T) {
	t.Parallel()
	testEndToEnd(t, kafkatest.Kfake(t), "at_least_once")
}

func TestExactlyOnceEndToEnd(t *testing.T) {
	t.Parallel()
	testEndToEnd(t, kafkatest.Kfake(t), "exactly_once")
}

func TestKafkaExactlyOnceEndToEnd(t *testing.T) {
	t.Parallel()
	testEndToEnd(t, kafkatest.Real(t), "exactly_once")
}

func TestKafkaEndToEnd(t *testing.T) {
	t.Parallel()
	testEndToEnd(t, kafkatest.Real(t), "at_least_once")
}
