package main

// Tests of how eddy keeps its topics, on the real broker (whose retention
// check runs every second, with the default 7-day retention): a replay of
// 30-day-old data is read, aggregated and readable in full (outputs, late
// and dead-letter records) after a run and after a reset and a second run;
// the repartition topic is purged behind the committed offsets and never
// expires by time; settings of existing topics that would delete what eddy
// writes are reported with their fix; and records deleted before eddy read
// them are reported (log, metric, /readyz).

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/eddy-streams/eddy/internal/kafkatest"
)

const thirtyDays = 30 * 24 * time.Hour

// oldScenario is the standard scenario with every event time 30 days in
// the past: older than the broker's retention.
func oldScenario(seed uint64) *scenario {
	s := newScenario(seed, 3, 100, 6)
	shift := thirtyDays.Milliseconds() // a multiple of the window size
	s.t0 -= shift
	s.flushTS -= shift
	for i := range s.events {
		s.events[i].TS -= shift
		s.events[i].arrival -= shift
	}
	return s
}

// startOffsets is the log start offset of every partition of topic.
func startOffsets(t testing.TB, brokers []string, topic string) map[int32]int64 {
	t.Helper()
	return listOffsets(t, brokers, topic, "start", (*kadm.Client).ListStartOffsets)
}

// topicConfig returns the effective value of config key of topic.
func topicConfig(t testing.TB, brokers []string, topic, key string) string {
	t.Helper()
	adm := kadm.NewClient(kafkatest.Client(t, brokers))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rcs, err := adm.DescribeTopicConfigs(ctx, topic)
	if err != nil {
		t.Fatalf("configs of %s: %v", topic, err)
	}
	rc, err := rcs.On(topic, nil)
	if err != nil || rc.Err != nil {
		t.Fatalf("configs of %s: %v %v", topic, err, rc.Err)
	}
	for _, c := range rc.Configs {
		if c.Key == key && c.Value != nil {
			return *c.Value
		}
	}
	return ""
}

// checkOldRun checks, after a run over the old scenario (runs: how many
// so far), that every result, late record and dead letter is readable from
// the beginning of its topic, after the broker had time to apply its
// retention, and that the repartition topic is purged up to the committed
// offsets.
func checkOldRun(t *testing.T, e *e2e, w *worker, runs int) {
	t.Helper()
	e.waitIdle(t, 120*time.Second, w)
	// The purge runs every second here (EDDY_TEST_PURGE_INTERVAL): wait
	// until the repartition topic's log start reaches the committed
	// offsets (but for each partition's last record, which eddy keeps),
	// which proves the purge while the worker runs.
	rep := e.app + "-repartition"
	var starts, ends map[int32]int64
	var com map[string]int64
	deadline := time.Now().Add(30 * time.Second)
	for {
		starts, com, ends = startOffsets(t, e.brokers, rep), committed(t, e.brokers, e.app), endOffsets(t, e.brokers, rep)
		purged := len(starts) == int(e.sc.parts)
		for p, s := range starts {
			c, ok := com[rep+":"+strconv.Itoa(int(p))]
			purged = purged && ok && c > 0 && s == min(c, ends[p]-1)
		}
		if purged {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("run %d: repartition topic not purged to the committed offsets within 30s: log start %v, committed %v, end %v", runs, starts, com, ends)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// Give the broker's retention (checked every second) time to delete
	// whatever it would delete.
	time.Sleep(4 * time.Second)
	for _, topic := range []string{e.out, e.late, e.dlq} {
		for p, s := range startOffsets(t, e.brokers, topic) {
			if s != 0 {
				t.Errorf("run %d: %s/%d starts at offset %d: the broker deleted records eddy wrote", runs, topic, p, s)
			}
		}
	}
	addr := w.metricsAddr(t)
	if n := metric(t, addr, "eddy_records_expired_before_read_total"); n != 0 {
		t.Errorf("run %d: eddy_records_expired_before_read_total = %v: records of 30-day-old data expired before eddy read them", runs, n)
	}
	// Every event went through the repartition topic (bad records are
	// dead-lettered before) and was purged once committed, but for the
	// last offset of each partition. The topic also carries watermark
	// records, which keep coming (a heartbeat every 2s) and being purged:
	// the counter, read after the log starts, is at least their sum.
	var purgedOffsets int64
	for _, s := range starts {
		purgedOffsets += s
	}
	if n := metric(t, addr, "eddy_repartition_purged_records_total"); n < float64(purgedOffsets) || n < float64(len(e.sc.events))-float64(e.sc.parts) {
		t.Errorf("run %d: eddy_repartition_purged_records_total = %v, want at least %d, the offsets below the log starts (%d events forwarded)", runs, n, purgedOffsets, len(e.sc.events))
	}
	got := parseResults(t, kafkatest.ReadAll(t, e.brokers, e.out, true))
	late := lateIDs(t, e.brokers, e.late)
	e.sc.verify(t, got, late)
	for k, rs := range got {
		if len(rs) != runs {
			t.Errorf("run %d: window %s @%d written %d times, want once per run", runs, k.key, k.start, len(rs))
		}
	}
	// Every designed-late record, once per run.
	lateRecs := kafkatest.ReadAll(t, e.brokers, e.late, true)
	designed := 0
	for _, ev := range e.sc.events {
		if ev.designedLate {
			designed++
		}
	}
	if len(lateRecs) < runs*designed {
		t.Errorf("run %d: late topic holds %d records, want at least %d", runs, len(lateRecs), runs*designed)
	}
	dl := kafkatest.ReadAll(t, e.brokers, e.dlq, true)
	if len(dl) != runs*len(e.sc.bad) {
		t.Errorf("run %d: dead-letter topic holds %d records, want %d", runs, len(dl), runs*len(e.sc.bad))
	}
	seen := map[string]int{}
	for _, r := range dl {
		seen[string(r.Value)]++
	}
	for _, b := range e.sc.bad {
		if seen[string(b.value)] != runs {
			t.Errorf("run %d: bad record %q is %d times in the dead-letter topic, want %d", runs, b.value, seen[string(b.value)], runs)
		}
	}
}

// TestKafkaOldDataReplay: input whose event times are 30 days old (older
// than the broker's 7-day retention) through a JSON pipeline with a
// repartition topic, with late and bad records. After the run, and again
// after `eddy reset --to-earliest` and a second run: every expected result
// (computed here), every late record and dead letter is readable from the
// beginning of its topic; the repartition topic has no time retention and
// was purged behind the committed offsets.
func TestKafkaOldDataReplay(t *testing.T) {
	brokers := kafkatest.Real(t)
	for _, mode := range []string{"at_least_once", "exactly_once"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			testOldDataReplay(t, brokers, mode)
		})
	}
}

func testOldDataReplay(t *testing.T, brokers []string, mode string) {
	e := newE2EWith(t, brokers, mode, oldScenario(7))
	produceSync(t, brokers, append(e.sc.records(e.in), e.sc.badRecords(e.in)...))
	state := t.TempDir()

	w := startWorker(t, e.spec, e.brokerList(), state, "EDDY_TEST_PURGE_INTERVAL=1s")
	checkOldRun(t, e, w, 1)
	if v := topicConfig(t, brokers, e.app+"-repartition", "retention.ms"); v != "-1" {
		t.Errorf("repartition topic retention.ms = %s, want -1", v)
	}
	for _, topic := range []string{e.out, e.late, e.dlq} {
		if v := topicConfig(t, brokers, topic, "message.timestamp.type"); v != "LogAppendTime" {
			t.Errorf("%s message.timestamp.type = %s, want LogAppendTime", topic, v)
		}
	}
	if strings.Contains(w.logs(), "topic setting would delete") {
		t.Errorf("eddy warned about the settings of topics it created itself:\n%s", w.logs())
	}
	if err := w.stop(syscall.SIGTERM); err != nil {
		t.Fatalf("eddy exited with %v after SIGTERM", err)
	}

	out := mustReset(t, e, "--to-earliest", "--dry-run")
	if strings.Contains(out, "would delete") {
		t.Errorf("reset --dry-run reports problems with topics eddy created:\n%s", out)
	}
	mustReset(t, e, "--to-earliest")
	w = startWorker(t, e.spec, e.brokerList(), state, "EDDY_TEST_PURGE_INTERVAL=1s")
	checkOldRun(t, e, w, 2)
	if err := w.stop(syscall.SIGTERM); err != nil {
		t.Fatalf("eddy exited with %v after SIGTERM", err)
	}
}

// TestKafkaTopicSettingsReported: existing topics whose settings would
// delete what eddy writes (a repartition topic with 7-day retention, an
// output topic with CreateTime and 7-day retention) are reported by
// `eddy reset --dry-run` and `eddy run`, each with the command that fixes
// it; writing 30-day-old results to that output topic is warned about at
// run time; and `eddy reset` recreates the repartition topic without time
// retention.
func TestKafkaTopicSettingsReported(t *testing.T) {
	brokers := kafkatest.Real(t)
	t.Parallel()
	e := newE2EWith(t, brokers, "at_least_once", oldScenario(8))
	adm := kadm.NewClient(kafkatest.Client(t, brokers))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	week := map[string]*string{"retention.ms": kadm.StringPtr("604800000"), "message.timestamp.type": kadm.StringPtr("CreateTime")}
	for _, topic := range []string{e.app + "-repartition", e.out} {
		if _, err := adm.CreateTopic(ctx, e.sc.parts, -1, week, topic); err != nil {
			t.Fatalf("create %s: %v", topic, err)
		}
	}
	// As an operator's topics would be: known to the broker's metadata
	// (a topic just created may not be listed for a moment).
	waitFor(t, 10*time.Second, "the created topics are listed", func() (bool, string) {
		td, err := adm.ListTopics(ctx, e.app+"-repartition", e.out)
		if err != nil {
			return false, err.Error()
		}
		for _, d := range td {
			if d.Err != nil || len(d.Partitions) != int(e.sc.parts) {
				return false, fmt.Sprintf("%s: %v, %d partitions", d.Topic, d.Err, len(d.Partitions))
			}
		}
		return len(td) == 2, fmt.Sprintf("%d topics listed", len(td))
	})
	produceSync(t, brokers, e.sc.records(e.in))

	out := mustReset(t, e, "--to-earliest", "--dry-run")
	for _, want := range []string{
		"--entity-name " + e.out + " --add-config message.timestamp.type=LogAppendTime",
		"retention.ms=-1 (was 604800000)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("reset --dry-run does not say %q:\n%s", want, out)
		}
	}

	r := runEddy(t, 30*time.Second, "describe", "-f", e.spec, "--brokers", e.brokerList())
	if r.code != 0 {
		t.Fatalf("eddy describe --brokers exited %d:\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	for _, want := range []string{
		"--entity-name " + e.app + "-repartition --add-config retention.ms=-1",
		"--entity-name " + e.out + " --add-config message.timestamp.type=LogAppendTime",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("eddy describe --brokers does not say %q:\n%s", want, r.stdout)
		}
	}

	// The run is not waited out to the end: with the repartition topic's
	// 7-day retention, what it writes of this 30-day-old input is deleted
	// by the broker as soon as its retention check runs, which is what
	// these warnings say.
	w := startWorker(t, e.spec, e.brokerList(), t.TempDir())
	wants := []string{
		"topic=" + e.app + "-repartition",
		"--entity-name " + e.app + "-repartition --add-config retention.ms=-1",
		"--entity-name " + e.out + " --add-config message.timestamp.type=LogAppendTime",
		"records written with timestamps older than the topic's retention",
	}
	waitFor(t, 60*time.Second, "the worker's warnings", func() (bool, string) {
		logs := w.logs()
		for _, want := range wants {
			if !strings.Contains(logs, want) {
				return false, "missing " + strconv.Quote(want) + " in:\n" + logs
			}
		}
		return true, ""
	})
	time.Sleep(2 * time.Second) // more records written, for the rate limit check below
	logs := w.logs()
	if n := strings.Count(logs, "records written with timestamps older than the topic's retention"); n > 2 {
		t.Errorf("the run-time retention warning was logged %d times, want it rate-limited", n)
	}
	if err := w.stop(syscall.SIGTERM); err != nil {
		t.Fatalf("eddy exited with %v after SIGTERM", err)
	}

	mustReset(t, e, "--to-earliest")
	if v := topicConfig(t, brokers, e.app+"-repartition", "retention.ms"); v != "-1" {
		t.Errorf("after eddy reset, the repartition topic's retention.ms = %s, want -1", v)
	}
}

// TestKafkaExpiredBeforeRead: records of a source partition deleted (here
// with DeleteRecords, as retention would) beyond the group's committed
// offset while the worker is stopped: the next worker says so in its log,
// counts them in eddy_records_expired_before_read_total and is not ready
// until an operator acknowledges it.
func TestKafkaExpiredBeforeRead(t *testing.T) {
	brokers := kafkatest.Real(t)
	for _, mode := range []string{"at_least_once", "exactly_once"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			testExpiredBeforeRead(t, brokers, mode)
		})
	}
}

func testExpiredBeforeRead(t *testing.T, brokers []string, mode string) {
	e := newE2E(t, brokers, mode)
	first, second := e.halves()
	produceSync(t, brokers, first)
	w := startWorker(t, e.spec, e.brokerList(), t.TempDir())
	e.waitIdle(t, 120*time.Second, w)
	if err := w.stop(syscall.SIGTERM); err != nil {
		t.Fatalf("eddy exited with %v after SIGTERM", err)
	}
	produceSync(t, brokers, second)

	// Delete the first 7 unread records of partition 0.
	com := committed(t, brokers, e.app)[e.in+":0"]
	const lost = 7
	if end := endOffsets(t, brokers, e.in)[0]; end < com+lost {
		t.Fatalf("partition 0 has %d unread records, need %d", end-com, lost)
	}
	adm := kadm.NewClient(kafkatest.Client(t, brokers))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	offs := kadm.Offsets{}
	offs.AddOffset(e.in, 0, com+lost, -1)
	resp, err := adm.DeleteRecords(ctx, offs)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		t.Fatalf("delete records: %v", err)
	}

	w = startWorker(t, e.spec, e.brokerList(), t.TempDir())
	addr := w.httpAddr(t)
	deadline := time.Now().Add(60 * time.Second)
	for metric(t, addr, "eddy_records_expired_before_read_total", `topic="`+e.in+`"`) != lost {
		if time.Now().After(deadline) {
			t.Fatalf("eddy_records_expired_before_read_total{topic=%q} = %v, want %d", e.in,
				metric(t, addr, "eddy_records_expired_before_read_total", `topic="`+e.in+`"`), lost)
		}
		w.checkRunning(t)
		time.Sleep(100 * time.Millisecond)
	}
	e.waitIdle(t, 120*time.Second, w)
	r := httpGet(t, "http://"+addr+"/readyz")
	if r.code != http.StatusServiceUnavailable || !strings.Contains(r.body, "7 records expired before eddy read them") ||
		!strings.Contains(r.body, e.in+"/0") {
		t.Errorf("/readyz = %d %q, want 503 naming the 7 expired records of %s/0", r.code, r.body, e.in)
	}
	want := "records expired before eddy read them"
	if l := w.logs(); !strings.Contains(l, want) || !strings.Contains(l, "records_lost=7") || !strings.Contains(l, "committed="+strconv.FormatInt(com, 10)) {
		t.Errorf("the log does not report the 7 expired records with the committed offset %d:\n%s", com, l)
	}
	resp2, err := http.Post("http://"+addr+"/expired/ack", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp2.Body.Close()
	if r := httpGet(t, "http://"+addr+"/readyz"); r.code != http.StatusOK {
		t.Errorf("/readyz after POST /expired/ack = %d %q, want 200", r.code, r.body)
	}
	if err := w.stop(syscall.SIGTERM); err != nil {
		t.Fatalf("eddy exited with %v after SIGTERM", err)
	}
}
