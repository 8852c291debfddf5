package main

// Tests of `eddy reset` on the real broker: a replay gives the same final
// windows as the original run, a reset to a time commits the broker's
// offsets-for-times, a reset is refused while a worker runs, and a dry run
// changes nothing.

import (
	"context"
	"encoding/json"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eddy-streams/eddy/internal/kafkatest"
)

// eddyReset runs `eddy reset` with args and returns its stdout, stderr and
// exit error.
func eddyReset(t testing.TB, e *e2e, args ...string) (string, string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, eddyBin, append([]string{"reset", "-f", e.spec, "--brokers", e.brokerList()}, args...)...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return out.String(), errb.String(), err
}

func mustReset(t testing.TB, e *e2e, args ...string) string {
	t.Helper()
	out, errOut, err := eddyReset(t, e, args...)
	if err != nil {
		t.Fatalf("eddy reset %v: %v\nstdout:\n%s\nstderr:\n%s", args, err, out, errOut)
	}
	return out
}

// timedRecords is the scenario's input with each record's Kafka timestamp
// set to its event time, as producers that stamp records do: offsets for
// times then follow event time.
func timedRecords(s *scenario, topic string) []*kgo.Record {
	recs := s.records(topic)
	for i, r := range recs {
		r.Timestamp = time.UnixMilli(s.events[i].TS)
	}
	return recs
}

// endOffsets returns the end offset of every partition of topic.
func endOffsets(t testing.TB, brokers []string, topic string) map[int32]int64 {
	t.Helper()
	return listOffsets(t, brokers, topic, "end", (*kadm.Client).ListEndOffsets)
}

// listOffsets returns what list (kadm's ListStartOffsets or
// ListEndOffsets) says of every partition of topic.
func listOffsets(t testing.TB, brokers []string, topic, what string,
	list func(*kadm.Client, context.Context, ...string) (kadm.ListedOffsets, error)) map[int32]int64 {
	t.Helper()
	adm := kadm.NewClient(kafkatest.Client(t, brokers))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := list(adm, ctx, topic)
	if err == nil {
		err = l.Error()
	}
	if err != nil {
		t.Fatalf("%s offsets of %s: %v", what, topic, err)
	}
	out := map[int32]int64{}
	l.Each(func(o kadm.ListedOffset) { out[o.Partition] = o.Offset })
	return out
}

// recordsFrom reads topic (read_committed) and keeps the records at or
// after from (per partition).
func recordsFrom(t testing.TB, brokers []string, topic string, from map[int32]int64) []*kgo.Record {
	var out []*kgo.Record
	for _, r := range kafkatest.ReadAll(t, brokers, topic, true) {
		if r.Offset >= from[r.Partition] {
			out = append(out, r)
		}
	}
	return out
}

func lateIDsFrom(t testing.TB, brokers []string, topic string, from map[int32]int64) map[string]bool {
	ids := map[string]bool{}
	for _, r := range recordsFrom(t, brokers, topic, from) {
		var ev tevent
		if err := json.Unmarshal(r.Value, &ev); err != nil {
			t.Fatalf("late record is not the original bytes: %v", err)
		}
		ids[ev.ID] = true
	}
	return ids
}

// committed returns the group's committed offsets, "topic:partition" ->
// offset.
func committed(t testing.TB, brokers []string, group string) map[string]int64 {
	t.Helper()
	adm := kadm.NewClient(kafkatest.Client(t, brokers))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	offs, err := adm.FetchOffsets(ctx, group)
	if err == nil {
		err = offs.Error()
	}
	if err != nil {
		t.Fatalf("committed offsets of %s: %v", group, err)
	}
	out := map[string]int64{}
	offs.Each(func(o kadm.OffsetResponse) { out[o.Topic+":"+strconv.Itoa(int(o.Partition))] = o.At })
	return out
}

// topicState is what a reset may change about a topic: its id and offsets.
func topicState(t testing.TB, brokers []string, topics ...string) map[string]string {
	t.Helper()
	adm := kadm.NewClient(kafkatest.Client(t, brokers))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	td, err := adm.ListTopics(ctx, topics...)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, n := range topics {
		ends := endOffsets(t, brokers, n)
		out[n] = td[n].ID.String()
		for p := int32(0); p < int32(len(ends)); p++ {
			out[n] += " " + strconv.Itoa(int(p)) + "=" + strconv.FormatInt(ends[p], 10)
		}
	}
	return out
}

// sameWindows checks that every window of want is in got with the same
// result, and that got has no other windows, among the windows keep
// accepts.
func sameWindows(t testing.TB, what string, want, got map[winKey][]result, keep func(winKey) bool) int {
	t.Helper()
	n := 0
	for k, rs := range want {
		if !keep(k) {
			continue
		}
		n++
		g := got[k]
		if len(g) == 0 {
			t.Errorf("%s: window %s @%d of the first run is missing: %s", what, k.key, k.start, rs[0].raw)
			continue
		}
		for _, r := range g {
			if r.raw != rs[0].raw {
				t.Errorf("%s: window %s @%d differs:\nfirst run: %s\nreplay:    %s", what, k.key, k.start, rs[0].raw, r.raw)
			}
		}
	}
	for k, g := range got {
		if keep(k) && len(want[k]) == 0 {
			t.Errorf("%s: window %s @%d only in the replay: %s", what, k.key, k.start, g[0].raw)
		}
	}
	return n
}

// runOnce runs a worker over everything produced, stops it cleanly and
// returns the final results written from outFrom on and the late ids
// written from lateFrom on.
func runOnce(t *testing.T, e *e2e, stateDir string, outFrom, lateFrom map[int32]int64) (map[winKey][]result, map[string]bool) {
	t.Helper()
	w := startWorker(t, e.spec, e.brokerList(), stateDir)
	e.waitIdle(t, 120*time.Second, w)
	if err := w.stop(syscall.SIGTERM); err != nil {
		t.Fatalf("eddy exited with %v after SIGTERM", err)
	}
	return parseResults(t, recordsFrom(t, e.brokers, e.out, outFrom)), lateIDsFrom(t, e.brokers, e.late, lateFrom)
}

// resetParts is the input partition count of the replay comparisons:
// several, in both modes, so that the order in which records of different
// input partitions reach a window (event time, by the partition group)
// matters and must be the same in the replay.
const resetParts = 3

// designedLate counts the late ids that the scenario made late on purpose.
func designedLate(s *scenario, late map[string]bool) (designed, other int) {
	want := map[string]bool{}
	for _, ev := range s.events {
		if ev.designedLate {
			want[ev.ID] = true
		}
	}
	for id := range late {
		if want[id] {
			designed++
		} else {
			other++
		}
	}
	return designed, other
}

// TestKafkaResetToEarliest: run a pipeline over a known input, reset to
// earliest, run again on the same state directory (whose state the reset
// must make stale), and compare every final window of both runs: identical,
// and each right against the independent computation.
func TestKafkaResetToEarliest(t *testing.T) {
	for _, mode := range []string{"at_least_once", "exactly_once"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			testResetReplay(t, mode, newScenario(11, resetParts, 120, 6))
		})
	}
}

// TestKafkaResetBacklog: the same over a backlog larger than one poll
// (about 5,000 records per input partition), so that the worker forwards
// it over many polls and commits, with records of some partitions buffered
// at each commit. The replay must give the same windows and late records.
func TestKafkaResetBacklog(t *testing.T) {
	for _, mode := range []string{"at_least_once", "exactly_once"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			testResetReplay(t, mode, newScenario(17, resetParts, 2500, 6))
		})
	}
}

func testResetReplay(t *testing.T, mode string, sc *scenario) {
	brokers := kafkatest.Real(t)
	e := newE2EWith(t, brokers, mode, sc)
	produceSync(t, brokers, append(timedRecords(e.sc, e.in), e.sc.badRecords(e.in)...))
	stateDir := t.TempDir()

	first, late1 := runOnce(t, e, stateDir, nil, nil)
	e.sc.verify(t, first, late1)
	outEnd, lateEnd := endOffsets(t, brokers, e.out), endOffsets(t, brokers, e.late)

	out := mustReset(t, e, "--to-earliest")
	for _, want := range []string{"TO REPROCESS", e.app + "-windows-changelog", e.app + "-repartition", "commit the new input offsets", "complete"} {
		if !strings.Contains(out, want) {
			t.Errorf("eddy reset output lacks %q:\n%s", want, out)
		}
	}
	for k, v := range committed(t, brokers, e.app) {
		if v != 0 {
			t.Errorf("after reset to earliest, %s is committed at %d, want 0", k, v)
		}
	}

	second, late2 := runOnce(t, e, stateDir, outEnd, lateEnd)
	e.sc.verify(t, second, late2)
	d1, o1 := designedLate(e.sc, late1)
	d2, o2 := designedLate(e.sc, late2)
	t.Logf("%d events on %d input partitions; late records: first run %d designed + %d other, replay %d designed + %d other",
		len(e.sc.events), e.sc.parts, d1, o1, d2, o2)
	all := func(winKey) bool { return true }
	if n := sameWindows(t, "replay", first, second, all); n == 0 {
		t.Fatal("no final windows to compare")
	}
	for id := range late1 {
		if !late2[id] {
			t.Errorf("record %s was late in the first run, not in the replay", id)
		}
	}
	if len(late2) != len(late1) {
		t.Errorf("%d late records in the replay, %d in the first run", len(late2), len(late1))
	}
}

// TestKafkaResetToDatetime: reset to a time in the middle of the input.
// The committed offsets must be the broker's offsets for that time, Kafka's
// ConsumerGroupCommand must agree, and the replay's windows that start at
// or after that time must be complete and identical to the first run's.
// Windows before it are partial in the replay (they lack the records before
// the reset point) and are not compared.
func TestKafkaResetToDatetime(t *testing.T) {
	for _, mode := range []string{"at_least_once", "exactly_once"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			brokers := kafkatest.Real(t)
			e := newE2EWith(t, brokers, mode, newScenario(23, resetParts, 300, 6))
			produceSync(t, brokers, timedRecords(e.sc, e.in))
			stateDir := t.TempDir()
			first, late1 := runOnce(t, e, stateDir, nil, nil)
			e.sc.verify(t, first, late1)
			outEnd, lateEnd := endOffsets(t, brokers, e.out), endOffsets(t, brokers, e.late)

			at := e.sc.t0 + 5*e.sc.size // about the middle of each key's events (~105s of them)
			ts := time.UnixMilli(at).UTC().Format(time.RFC3339Nano)
			mustReset(t, e, "--to-datetime", ts)

			adm := kadm.NewClient(kafkatest.Client(t, brokers))
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			want, err := adm.ListOffsetsAfterMilli(ctx, at, e.in)
			if err == nil {
				err = want.Error()
			}
			if err != nil {
				t.Fatal(err)
			}
			got := committed(t, brokers, e.app)
			mid := 0
			want.Each(func(o kadm.ListedOffset) {
				k := e.in + ":" + strconv.Itoa(int(o.Partition))
				if got[k] != o.Offset {
					t.Errorf("%s committed at %d, offsets-for-times of %s says %d", k, got[k], ts, o.Offset)
				}
				if o.Offset > 0 {
					mid++
				}
			})
			if mid == 0 {
				t.Fatalf("reset point %s is not in the middle of any partition", ts)
			}
			checkDescribeAgrees(t, e, got)

			second, late2 := runOnce(t, e, stateDir, outEnd, lateEnd)
			after := func(k winKey) bool { return k.start >= at }
			if n := sameWindows(t, "replay from "+ts, first, second, after); n < 12 {
				t.Fatalf("only %d windows after the reset point to compare", n)
			}
			// And against the independent computation: every event at or
			// after the reset time is replayed (the reset offset is the
			// first with a timestamp at or after it).
			sub := *e.sc
			sub.events = nil
			for _, ev := range e.sc.events {
				if ev.TS >= at || ev.flush || ev.designedLate {
					sub.events = append(sub.events, ev)
				}
			}
			gotAfter := map[winKey][]result{}
			for k, rs := range second {
				if after(k) {
					gotAfter[k] = rs
				}
			}
			sub.verify(t, gotAfter, late2)
		})
	}
}

// checkDescribeAgrees compares Kafka's ConsumerGroupCommand --describe with
// the committed offsets eddy's client sees.
func checkDescribeAgrees(t *testing.T, e *e2e, got map[string]int64) {
	t.Helper()
	out := consumerGroupDescribe(t, e.brokers, e.app)
	rows := 0
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 4 || f[0] != e.app {
			continue
		}
		rows++
		k := f[1] + ":" + f[2]
		cur, err := strconv.ParseInt(f[3], 10, 64)
		if w, ok := got[k]; err != nil || !ok || cur != w {
			t.Errorf("ConsumerGroupCommand: %s at %s, eddy's client sees %d (%v)", k, f[3], w, ok)
		}
	}
	if rows != len(got) {
		t.Errorf("ConsumerGroupCommand listed %d partitions, the group has %d committed:\n%s", rows, len(got), out)
	}
}

// TestKafkaResetDescribeAgrees: after a reset to explicit offsets, Kafka's
// own ConsumerGroupCommand shows exactly the offsets eddy's client reads,
// for the input (listed partitions moved, the other unchanged) and the
// recreated repartition topic (0).
func TestKafkaResetDescribeAgrees(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Real(t)
	e := newE2EWith(t, brokers, "at_least_once", newScenario(5, 3, 40, 3))
	produceSync(t, brokers, e.sc.records(e.in))
	runOnce(t, e, t.TempDir(), nil, nil)
	before := committed(t, brokers, e.app)

	mustReset(t, e, "--to-offsets", e.in+":0=5,"+e.in+":1=7")
	got := committed(t, brokers, e.app)
	want := map[string]int64{e.in + ":0": 5, e.in + ":1": 7, e.in + ":2": before[e.in+":2"]}
	for p := 0; p < 3; p++ {
		want[e.app+"-repartition:"+strconv.Itoa(p)] = 0
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s committed at %d, want %d", k, got[k], w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("committed offsets %v, want %v", got, want)
	}
	checkDescribeAgrees(t, e, got)
}

// TestKafkaResetRefusedWhileRunning: a reset while a worker is a member of
// the group is refused with the member named, and changes nothing.
func TestKafkaResetRefusedWhileRunning(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Real(t)
	e := newE2EWith(t, brokers, "at_least_once", newScenario(9, 2, 40, 2))
	produceSync(t, brokers, e.sc.records(e.in))
	w := startWorker(t, e.spec, e.brokerList(), t.TempDir())
	e.waitIdle(t, 120*time.Second, w)
	internal := []string{e.app + "-repartition", e.app + "-windows-changelog"}
	offsBefore, topicsBefore := committed(t, brokers, e.app), topicState(t, brokers, internal...)

	for _, args := range [][]string{{"--to-earliest"}, {"--to-earliest", "--dry-run"}} {
		out, errOut, err := eddyReset(t, e, args...)
		if err == nil {
			t.Fatalf("eddy reset %v succeeded while a worker runs:\n%s", args, out)
		}
		for _, want := range []string{"refusing to reset", e.app, "1 active member", "stop every `eddy run`"} {
			if !strings.Contains(errOut, want) {
				t.Errorf("eddy reset %v: error lacks %q:\n%s", args, want, errOut)
			}
		}
		if strings.Contains(out, "done:") {
			t.Errorf("eddy reset %v reported a step done while refusing:\n%s", args, out)
		}
	}
	adm := kadm.NewClient(kafkatest.Client(t, brokers))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	gs, err := adm.DescribeGroups(ctx, e.app)
	if err != nil || len(gs[e.app].Members) != 1 {
		t.Fatalf("describe group: %v %v", err, gs)
	}
	// The member is named: its member id is in the message.
	_, errOut, _ := eddyReset(t, e, "--to-earliest")
	if id := gs[e.app].Members[0].MemberID; !strings.Contains(errOut, id) {
		t.Errorf("refusal does not name member %s:\n%s", id, errOut)
	}
	assertSame(t, "offsets", offsBefore, committed(t, brokers, e.app))
	assertSame(t, "internal topics", topicsBefore, topicState(t, brokers, internal...))
	if err := w.stop(syscall.SIGTERM); err != nil {
		t.Errorf("eddy exited with %v after SIGTERM", err)
	}
}

// TestKafkaResetDryRun: --dry-run prints, per partition, the committed
// offset, the new one and the records to reprocess, and changes nothing
// (offsets, topic ids and contents compared before and after).
func TestKafkaResetDryRun(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Real(t)
	e := newE2EWith(t, brokers, "at_least_once", newScenario(3, 2, 40, 2))
	produceSync(t, brokers, e.sc.records(e.in))
	runOnce(t, e, t.TempDir(), nil, nil)
	topics := []string{e.in, e.out, e.late, e.app + "-repartition", e.app + "-windows-changelog"}
	offsBefore, topicsBefore := committed(t, brokers, e.app), topicState(t, brokers, topics...)
	ends := endOffsets(t, brokers, e.in)

	for _, args := range [][]string{{"--to-earliest"}, {"--by-duration", "2h"}, {"--to-offsets", e.in + ":1=3"}} {
		out := mustReset(t, e, append(args, "--dry-run")...)
		if !strings.Contains(out, "Dry run: nothing was changed.") || strings.Contains(out, "done:") {
			t.Errorf("dry run %v output:\n%s", args, out)
		}
		if args[0] == "--to-earliest" {
			for p, end := range ends {
				// TOPIC PARTITION CURRENT NEW END TO-REPROCESS
				row := strings.Join([]string{e.in, strconv.Itoa(int(p)), strconv.FormatInt(end, 10), "0",
					strconv.FormatInt(end, 10), strconv.FormatInt(end, 10)}, " ")
				if !strings.Contains(squeeze(out), row) {
					t.Errorf("dry run does not show %q:\n%s", row, out)
				}
			}
		}
	}
	assertSame(t, "offsets", offsBefore, committed(t, brokers, e.app))
	assertSame(t, "topics", topicsBefore, topicState(t, brokers, topics...))
}

// TestResetTargetFlags: the target flags and their errors, without Kafka.
func TestResetTargetFlags(t *testing.T) {
	now := time.Date(2026, 11, 20, 6, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		args []string
		want string // target String() or error substring
	}{
		{[]string{"--to-earliest"}, "the earliest offsets"},
		{[]string{"--to-datetime", "2026-11-20T00:00:00Z"}, "at or after 2026-11-20T00:00:00Z"},
		{[]string{"--by-duration", "6h"}, "at or after 2026-11-20T00:00:00Z"},
		{[]string{"--to-offsets", "in:0=5,in:1=7"}, "the given offsets"},
		{nil, "exactly one of"},
		{[]string{"--to-earliest", "--by-duration", "1h"}, "exactly one of"},
		{[]string{"--to-datetime", "2026-11-20"}, "RFC 3339"},
		{[]string{"--by-duration", "-1h"}, "must be positive"},
		{[]string{"--to-offsets", "in=5"}, "topic:partition=offset"},
		{[]string{"--to-offsets", "in:0=5,in:0=6"}, "given twice"},
		{[]string{"--to-offsets", "in:x=5"}, "non-negative integers"},
	} {
		cmd := resetCmd()
		if err := cmd.Flags().Parse(c.args); err != nil {
			t.Fatal(err)
		}
		tg, err := resetTarget(cmd, now)
		got := ""
		if err != nil {
			got = err.Error()
		} else {
			got = tg.String()
		}
		if !strings.Contains(got, c.want) {
			t.Errorf("%v: got %q, want %q", c.args, got, c.want)
		}
	}
	offs, err := parseOffsets("a:b:2=9, c:0=1")
	if err != nil || offs["a:b"][2] != 9 || offs["c"][0] != 1 {
		t.Errorf("parseOffsets: %v %v", offs, err)
	}
}

func squeeze(s string) string { return strings.Join(strings.Fields(s), " ") }

func assertSame[V comparable](t testing.TB, what string, before, after map[string]V) {
	t.Helper()
	for k, v := range before {
		if after[k] != v {
			t.Errorf("%s changed: %s was %v, now %v", what, k, v, after[k])
		}
	}
	if len(after) != len(before) {
		t.Errorf("%s changed: %v, now %v", what, before, after)
	}
}

// TestKafkaResetResumesInterrupted: a reset that stopped after deleting the
// internal topics (simulated by deleting them here) is finished by running
// the same command again: the missing topics are created with eddy's
// settings, the offsets committed, and the replay is right. Running it once
// more (a reset of a reset) is harmless too.
func TestKafkaResetResumesInterrupted(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Real(t)
	e := newE2EWith(t, brokers, "at_least_once", newScenario(13, 2, 80, 4))
	produceSync(t, brokers, e.sc.records(e.in))
	stateDir := t.TempDir()
	first, late1 := runOnce(t, e, stateDir, nil, nil)
	e.sc.verify(t, first, late1)
	outEnd, lateEnd := endOffsets(t, brokers, e.out), endOffsets(t, brokers, e.late)

	adm := kadm.NewClient(kafkatest.Client(t, brokers))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	internal := []string{e.app + "-repartition", e.app + "-windows-changelog"}
	if _, err := adm.DeleteTopics(ctx, internal...); err != nil {
		t.Fatal(err)
	}
	out := mustReset(t, e, "--to-earliest")
	if !strings.Contains(out, "missing: created with eddy's settings") {
		t.Errorf("plan does not say the missing topics are created:\n%s", out)
	}
	mustReset(t, e, "--to-earliest")
	cfgs, err := adm.DescribeTopicConfigs(ctx, e.app+"-windows-changelog")
	if err != nil {
		t.Fatal(err)
	}
	rc, _ := cfgs.On(e.app+"-windows-changelog", nil)
	for _, c := range rc.Configs {
		if c.Key == "cleanup.policy" && c.MaybeValue() != "compact" {
			t.Errorf("recreated changelog has cleanup.policy %q", c.MaybeValue())
		}
	}
	for k, v := range committed(t, brokers, e.app) {
		if v != 0 {
			t.Errorf("%s committed at %d, want 0", k, v)
		}
	}
	second, late2 := runOnce(t, e, stateDir, outEnd, lateEnd)
	e.sc.verify(t, second, late2)
	sameWindows(t, "replay", first, second, func(winKey) bool { return true })
}
