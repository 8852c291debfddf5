package main

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eddy-streams/eddy/internal/kafkatest"
)

// halves splits the scenario's records: the first half of the normal
// events, then the rest (later events, late ones, and the flush).
func (e *e2e) halves() (first, second []*kgo.Record) {
	recs := e.sc.records(e.in)
	n := 0
	for _, ev := range e.sc.events {
		if !ev.designedLate && !ev.flush {
			n++
		}
	}
	return recs[:n/2], append(recs[n/2:], e.sc.badRecords(e.in)...)
}

// waitOutputs waits until the output topic holds at least n records.
func waitOutputs(t *testing.T, brokers []string, topic string, n int, w *worker) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for len(kafkatest.ReadAll(t, brokers, topic, true)) < n {
		if time.Now().After(deadline) {
			t.Fatalf("no %d outputs on %s within 60s", n, topic)
		}
		select {
		case err := <-w.done:
			w.exited = true
			t.Fatalf("eddy exited early: %v", err)
		default:
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// testCrashRecovery kills the worker (SIGKILL, not a clean stop) in the
// middle of the input, restarts it on the same state directory, and checks
// that every final window is exactly right: nothing missing, and any
// repeated final result identical to the first.
func testCrashRecovery(t *testing.T, brokers []string, crashAt, processing string) {
	e := newE2E(t, brokers, processing)
	first, second := e.halves()
	produceSync(t, brokers, first)
	stateDir := t.TempDir()
	var env []string
	if crashAt != "" {
		env = append(env, "EDDY_TEST_CRASH_AT="+crashAt)
	}
	w := startWorker(t, e.spec, e.brokerList(), stateDir, env...)
	if crashAt != "" {
		// The worker dies by itself at the crash point of its second commit
		// that flushes state. Wait for a first commit of the first half (or
		// the crash itself, when that half took two commits) so that the
		// second half, fed in chunks, makes further commits: a worker slow
		// to start could otherwise take all the input in one commit and
		// never reach a second.
		exited := false
		adm := kadm.NewClient(kafkatest.Client(t, brokers))
		waitFor(t, 60*time.Second, "a first commit, or the crash", func() (bool, string) {
			select {
			case err := <-w.done:
				w.exited, exited = true, true
				checkCrashExit(t, crashAt, err)
				return true, ""
			default:
			}
			offs, err := adm.FetchOffsets(context.Background(), e.app)
			if err != nil {
				return false, err.Error()
			}
			var sum int64
			offs.Each(func(o kadm.OffsetResponse) {
				if o.Topic == e.in {
					sum += o.At
				}
			})
			return sum > 0, fmt.Sprintf("committed %d offsets of %s", sum, e.in)
		})
		chunk := (len(second) + 5) / 6
		for len(second) > 0 && !exited {
			n := min(chunk, len(second))
			produceSync(t, brokers, second[:n])
			second = second[n:]
			select {
			case err := <-w.done:
				w.exited, exited = true, true
				checkCrashExit(t, crashAt, err)
			case <-time.After(500 * time.Millisecond):
			}
		}
		if !exited {
			select {
			case err := <-w.done:
				w.exited = true
				checkCrashExit(t, crashAt, err)
			case <-time.After(60 * time.Second):
				t.Fatalf("worker did not reach crash point %s", crashAt)
			}
		}
	} else {
		waitOutputs(t, brokers, e.out, 3, w)
		if err := w.stop(syscall.SIGKILL); err == nil {
			t.Fatal("SIGKILL: the worker exited cleanly?")
		}
	}
	produceSync(t, brokers, second)
	w2 := startWorker(t, e.spec, e.brokerList(), stateDir)
	got, late := e.finalResults(t, w2)
	e.sc.verify(t, got, late)
	if err := w2.stop(syscall.SIGTERM); err != nil {
		t.Errorf("eddy exited with %v after SIGTERM", err)
	}
	if !strings.Contains(w2.logs(), `msg="partition restored"`) {
		t.Errorf("restarted worker did not report restoring its partitions")
	}
	if processing != "exactly_once" {
		return
	}
	// Exactly-once: under read_committed every final window appears once,
	// even though the worker died mid-transaction.
	for k, rs := range got {
		if len(rs) != 1 {
			t.Errorf("exactly-once: window %s @%d emitted %d times", k.key, k.start, len(rs))
		}
	}
	// And the restarted worker restored only the changelog tail: its store
	// was not wiped (unlike Kafka Streams under EOS).
	total := int64(len(kafkatest.ReadAll(t, brokers, e.app+"-windows-changelog", true)))
	var restored int64
	for _, m := range restoredRE.FindAllStringSubmatch(w2.logs(), -1) {
		n, _ := strconv.ParseInt(m[1], 10, 64)
		restored += n
		if m[2] != "false" {
			t.Errorf("exactly-once restart rebuilt a store from scratch: %s", m[0])
		}
	}
	t.Logf("restored %d changelog records after the crash (changelog now holds %d)", restored, total)
	if restored >= total {
		t.Errorf("restored %d records: the whole changelog (%d), not its tail", restored, total)
	}
}

func checkCrashExit(t *testing.T, crashAt string, err error) {
	t.Helper()
	if ee, ok := err.(interface{ ExitCode() int }); !ok || ee.ExitCode() != 137 {
		t.Fatalf("worker should have exited with 137 at %s, got %v", crashAt, err)
	}
}

func TestCrashRecovery(t *testing.T) {
	t.Parallel()
	testCrashRecovery(t, kafkatest.Kfake(t), "", "at_least_once")
}

// TestCrashPoints crashes inside the commit at each point of the protocol
// (DESIGN.md, "The commit") and checks recovery from each.
func TestCrashPoints(t *testing.T) {
	t.Parallel()
	for _, at := range []string{"after-flush", "after-marker", "after-offset"} {
		t.Run(at, func(t *testing.T) {
			t.Parallel()
			testCrashRecovery(t, kafkatest.Kfake(t), at, "at_least_once")
		})
	}
}

func TestKafkaCrashRecovery(t *testing.T) {
	t.Parallel()
	testCrashRecovery(t, kafkatest.Real(t), "", "at_least_once")
}

// TestExactlyOnceCrashPoints crashes inside the transactional commit:
// before the transaction commits, and after it commits but before Pebble
// is written.
func TestExactlyOnceCrashPoints(t *testing.T) {
	t.Parallel()
	for _, at := range []string{"after-flush", "after-offset"} {
		t.Run(at, func(t *testing.T) {
			t.Parallel()
			testCrashRecovery(t, kafkatest.Kfake(t), at, "exactly_once")
		})
	}
}

func TestKafkaExactlyOnceCrash(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Real(t)
	t.Run("sigkill", func(t *testing.T) { testCrashRecovery(t, brokers, "", "exactly_once") })
	t.Run("after-offset", func(t *testing.T) { testCrashRecovery(t, brokers, "after-offset", "exactly_once") })
}

var restoredRE = regexp.MustCompile(`msg="partition restored".* records=(\d+) from_scratch=(\w+)`)

// testStateDirDeleted stops the worker cleanly halfway, deletes its state
// directory, and runs the rest: the state is rebuilt from the changelog
// and every final window is exactly right, as if nothing was deleted.
func testStateDirDeleted(t *testing.T, brokers []string) *e2e {
	e := newE2E(t, brokers, "at_least_once")
	first, second := e.halves()
	produceSync(t, brokers, first)
	stateDir := t.TempDir()
	w := startWorker(t, e.spec, e.brokerList(), stateDir)
	// Let the worker process the whole first half before stopping it.
	e.waitIdle(t, 60*time.Second, w)
	if err := w.stop(syscall.SIGTERM); err != nil {
		t.Fatalf("clean stop: %v", err)
	}
	if err := os.RemoveAll(stateDir); err != nil {
		t.Fatal(err)
	}
	produceSync(t, brokers, second)
	w2 := startWorker(t, e.spec, e.brokerList(), stateDir)
	got, late := e.finalResults(t, w2)
	e.sc.verify(t, got, late)
	for k, rs := range got {
		if len(rs) > 1 {
			t.Errorf("window %v emitted %d times although the stop was clean", k, len(rs))
		}
	}
	restored := int64(0)
	for _, m := range restoredRE.FindAllStringSubmatch(w2.logs(), -1) {
		n, _ := strconv.ParseInt(m[1], 10, 64)
		restored += n
		if m[2] != "true" {
			t.Errorf("restore after deleting the state directory should start from scratch: %s", m[0])
		}
	}
	if restored == 0 {
		t.Errorf("the second run restored no changelog records; log:\n%s", w2.logs())
	}
	_ = w2.stop(syscall.SIGTERM)
	return e
}

func TestStateDirDeleted(t *testing.T) {
	t.Parallel()
	testStateDirDeleted(t, kafkatest.Kfake(t))
}

// TestKafkaChangelogRestore also checks, with the broker's own view, that
// the changelog eddy created is compacted and has one partition per input
// partition.
func TestKafkaChangelogRestore(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Real(t)
	e := testStateDirDeleted(t, brokers)
	adm := kadm.NewClient(kafkatest.Client(t, brokers))
	changelog := e.app + "-windows-changelog"
	cfgs, err := adm.DescribeTopicConfigs(context.Background(), changelog)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := cfgs.On(changelog, nil)
	if err != nil {
		t.Fatal(err)
	}
	policy := ""
	for _, c := range rc.Configs {
		if c.Key == "cleanup.policy" {
			policy = c.MaybeValue()
		}
	}
	if policy != "compact" {
		t.Errorf("changelog %s cleanup.policy = %q, want compact", changelog, policy)
	}
	td, err := adm.ListTopics(context.Background(), changelog, e.in)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(td[changelog].Partitions), len(td[e.in].Partitions); got != want {
		t.Errorf("changelog has %d partitions, input %d", got, want)
	}
}
