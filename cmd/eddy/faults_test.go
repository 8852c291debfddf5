package main

// Fault tests modelled on Kafka's own streams EOS and smoke system tests:
// workers killed and restarted under load, a worker paused past its session
// timeout, and local state damaged between runs. Each run is checked by the
// verifier of e2e_test.go against an independent computation of every
// final window: under exactly-once every window appears exactly once (I1);
// under at-least-once nothing is missing and repeats are identical (I2).

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eddy-streams/eddy/internal/kafkatest"
)

// faultScenario is a larger input over six partitions, with a grace
// period that covers the pauses a fault causes (event time runs about
// nine times faster than the wall clock here).
// soak is the factor of the on-demand soak variant: EDDY_SOAK=N runs the
// fault tests with N times the events, chunks and kills (default 1, the CI
// variant).
func soak() int {
	n, _ := strconv.Atoi(os.Getenv("EDDY_SOAK"))
	return max(1, n)
}

func faultScenario(t *testing.T, brokers []string, processing string) (*e2e, [][]byte, int) {
	sc := newScenario(11, 6, 250*soak(), 12)
	sc.grace = 180_000
	e := newE2EWith(t, brokers, processing, sc)
	n := 0
	for _, ev := range sc.events {
		if !ev.designedLate && !ev.flush {
			n++
		}
	}
	return e, nil, n
}

// checkOnce asserts I1: under exactly-once, no final window is repeated.
func checkOnce(t *testing.T, processing string, got map[winKey][]result) {
	t.Helper()
	if processing != "exactly_once" {
		return
	}
	for k, rs := range got {
		if len(rs) != 1 {
			t.Errorf("exactly-once: window %s @%d emitted %d times", k.key, k.start, len(rs))
		}
	}
}

// testKillRestart: three workers on six partitions; one of them is killed
// with SIGKILL three times during the run and restarted each time on its
// state directory, while the others go on.
func testKillRestart(t *testing.T, processing string) {
	brokers := kafkatest.Real(t)
	e, _, n := faultScenario(t, brokers, processing)
	recs := e.sc.records(e.in)
	normal, tail := recs[:n], recs[n:]
	dirs := []string{t.TempDir(), t.TempDir(), t.TempDir()}
	ws := make([]*worker, 3)
	for i := range ws {
		ws[i] = startWorker(t, e.spec, e.brokerList(), dirs[i])
	}
	chunks := 10 * soak()
	chunk := (len(normal) + chunks - 1) / chunks
	kills := 0
	for i := 0; i < chunks; i++ {
		produceSync(t, brokers, normal[i*chunk:min((i+1)*chunk, len(normal))])
		if i%3 == 2 {
			kills++
			_ = ws[1].stop(syscall.SIGKILL)
			ws[1] = startWorker(t, e.spec, e.brokerList(), dirs[1])
		}
		time.Sleep(time.Second)
	}
	e.waitIdle(t, 120*time.Second, ws[0])
	produceSync(t, brokers, append(tail, e.sc.badRecords(e.in)...))
	got, late := e.finalResults(t, ws[0])
	e.sc.verify(t, got, late)
	checkOnce(t, processing, got)
	checkDeadLetters(t, brokers, e)
	for _, w := range ws {
		_ = w.stop(syscall.SIGTERM)
	}
	checkNoOpenTransaction(t, e)
	t.Logf("%d events, %d kills of worker 1, %d final windows checked, %d late", len(recs), kills, len(got), len(late))
}

func TestKafkaFaultKillRestart(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"at_least_once", "exactly_once"} {
		t.Run(mode, func(t *testing.T) { testKillRestart(t, mode) })
	}
}

// testPaused: a worker is paused with SIGSTOP past its session timeout (and
// its transaction timeout), then resumed. The group has moved on: the
// paused worker is fenced, and nothing it writes afterwards is visible.
func testPaused(t *testing.T, processing string) {
	brokers := kafkatest.Real(t)
	e, _, n := faultScenario(t, brokers, processing)
	recs := e.sc.records(e.in)
	normal, tail := recs[:n], recs[n:]
	ws := make([]*worker, 3)
	for i := range ws {
		ws[i] = startWorker(t, e.spec, e.brokerList(), t.TempDir())
	}
	chunk := (len(normal) + 9) / 10
	for i := 0; i < 10; i++ {
		produceSync(t, brokers, normal[i*chunk:min((i+1)*chunk, len(normal))])
		switch i {
		case 2:
			_ = ws[1].cmd.Process.Signal(syscall.SIGSTOP)
		case 6: // about 10s later: past the 6s session timeout
			_ = ws[1].cmd.Process.Signal(syscall.SIGCONT)
		}
		time.Sleep(time.Second)
	}
	e.waitIdle(t, 120*time.Second, ws[0])
	produceSync(t, brokers, append(tail, e.sc.badRecords(e.in)...))
	got, late := e.finalResults(t, ws[0])
	e.sc.verify(t, got, late)
	checkOnce(t, processing, got)
	for _, w := range ws {
		_ = w.stop(syscall.SIGTERM)
	}
	checkNoOpenTransaction(t, e)
}

func TestKafkaFaultPaused(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"at_least_once", "exactly_once"} {
		t.Run(mode, func(t *testing.T) { testPaused(t, mode) })
	}
}

// damage breaks a stopped worker's state directory in one way.
type damage func(t *testing.T, stateDir, app string, stale string)

var damages = map[string]damage{
	"directory-deleted": func(t *testing.T, dir, _, _ string) {
		if err := os.RemoveAll(dir); err != nil {
			t.Fatal(err)
		}
	},
	"checkpoints-deleted": func(t *testing.T, dir, app, _ string) {
		db, err := pebble.Open(filepath.Join(dir, app), &pebble.Options{})
		if err != nil {
			t.Fatal(err)
		}
		// Checkpoint keys start with 'c' (state/store.go's layout).
		if err := db.DeleteRange([]byte{'c'}, []byte{'d'}, pebble.Sync); err != nil {
			t.Fatal(err)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
	},
	"file-truncated": func(t *testing.T, dir, app, _ string) {
		// Truncate every table and log file of the store to half its size.
		n := 0
		_ = filepath.WalkDir(filepath.Join(dir, app), func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			if ext := filepath.Ext(p); ext == ".sst" || ext == ".log" || strings.HasPrefix(filepath.Base(p), "MANIFEST") {
				info, _ := d.Info()
				if err := os.Truncate(p, info.Size()/2); err != nil {
					t.Fatal(err)
				}
				n++
			}
			return nil
		})
		if n == 0 {
			t.Fatal("no Pebble file to truncate")
		}
	},
	"manifest-destroyed": func(t *testing.T, dir, app, _ string) {
		// The store cannot even be opened: eddy must rebuild it.
		ms, _ := filepath.Glob(filepath.Join(dir, app, "MANIFEST-*"))
		if len(ms) == 0 {
			t.Fatal("no MANIFEST to destroy")
		}
		for _, m := range ms {
			if err := os.WriteFile(m, []byte("garbage"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	},
	"stale-copy": func(t *testing.T, dir, _, stale string) {
		if err := os.RemoveAll(dir); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("cp", "-a", stale, dir).CombinedOutput(); err != nil {
			t.Fatalf("restore stale copy: %v %s", err, out)
		}
	},
}

// testDamagedState runs a third of the input, keeps a copy of the state
// directory, runs the second third, stops cleanly, damages the state, and
// runs the rest: the results must be exactly right, with no crash loop.
func testDamagedState(t *testing.T, processing, kind string) {
	e := newE2E(t, kafkatest.Kfake(t), processing)
	recs := e.sc.records(e.in)
	n := 0
	for _, ev := range e.sc.events {
		if !ev.designedLate && !ev.flush {
			n++
		}
	}
	stateDir := filepath.Join(t.TempDir(), "state")
	stale := filepath.Join(t.TempDir(), "stale")

	produceSync(t, e.brokers, recs[:n/3])
	w := startWorker(t, e.spec, e.brokerList(), stateDir)
	e.waitIdle(t, 60*time.Second, w)
	if err := w.stop(syscall.SIGTERM); err != nil {
		t.Fatalf("clean stop: %v", err)
	}
	if out, err := exec.Command("cp", "-a", stateDir, stale).CombinedOutput(); err != nil {
		t.Fatalf("copy state: %v %s", err, out)
	}

	produceSync(t, e.brokers, recs[n/3:2*n/3])
	w = startWorker(t, e.spec, e.brokerList(), stateDir)
	e.waitIdle(t, 60*time.Second, w)
	if err := w.stop(syscall.SIGTERM); err != nil {
		t.Fatalf("clean stop: %v", err)
	}

	damages[kind](t, stateDir, e.app, stale)

	produceSync(t, e.brokers, append(recs[2*n/3:], e.sc.badRecords(e.in)...))
	w = startWorker(t, e.spec, e.brokerList(), stateDir)
	got, late := e.finalResults(t, w)
	e.sc.verify(t, got, late)
	checkOnce(t, processing, got)
	if err := w.stop(syscall.SIGTERM); err != nil {
		t.Errorf("stop after damaged state: %v", err)
	}
	for _, line := range strings.Split(w.logs(), "\n") {
		if strings.Contains(line, "restore") || strings.Contains(line, "unusable") {
			t.Log(line)
		}
	}
}

func TestDamagedState(t *testing.T) {
	t.Parallel()
	kinds := make([]string, 0, len(damages))
	for k := range damages {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	for _, mode := range []string{"at_least_once", "exactly_once"} {
		for _, kind := range kinds {
			t.Run(mode+"/"+kind, func(t *testing.T) {
				t.Parallel()
				testDamagedState(t, mode, kind)
			})
		}
	}
}

// TestKafkaFaultBrokerRestart kills the broker with SIGKILL and restarts
// it, twice, while two workers run: they must ride it out (no exit, no
// crash loop) and the final windows must be right. The broker is the
// test's own (kafkatest.Private), so the shared broker of the other tests
// never goes down; its two modes run one after the other on it.
func TestKafkaFaultBrokerRestart(t *testing.T) {
	t.Parallel()
	b := kafkatest.Private(t)
	brokers := b.Addrs
	for _, mode := range []string{"at_least_once", "exactly_once"} {
		t.Run(mode, func(t *testing.T) {
			e, _, n := faultScenario(t, brokers, mode)
			recs := e.sc.records(e.in)
			normal, tail := recs[:n], recs[n:]
			ws := []*worker{
				startWorker(t, e.spec, e.brokerList(), t.TempDir()),
				startWorker(t, e.spec, e.brokerList(), t.TempDir()),
			}
			chunk := (len(normal) + 7) / 8
			for i := 0; i < 8; i++ {
				produceSync(t, brokers, normal[i*chunk:min((i+1)*chunk, len(normal))])
				if i == 2 || i == 5 {
					b.Kill()
					time.Sleep(time.Second)
					b.Restart()
				}
				time.Sleep(time.Second)
				for j, w := range ws {
					select {
					case err := <-w.done:
						w.exited = true
						t.Fatalf("worker %d exited during the broker restarts: %v", j, err)
					default:
					}
				}
			}
			e.waitIdle(t, 180*time.Second, ws[0])
			produceSync(t, brokers, append(tail, e.sc.badRecords(e.in)...))
			got, late := e.finalResults(t, ws[0])
			e.sc.verify(t, got, late)
			checkOnce(t, mode, got)
			for _, w := range ws {
				if err := w.stop(syscall.SIGTERM); err != nil {
					t.Errorf("worker stop: %v", err)
				}
			}
			checkNoOpenTransaction(t, e)
		})
	}
}

// checkNoOpenTransaction is invariant I4: after the run, a marker record
// written to every partition of eddy's output, late, dead-letter,
// changelog and repartition topics is readable with read_committed. A
// transaction that eddy left open would hold the last stable offset back
// and hide the marker.
func checkNoOpenTransaction(t *testing.T, e *e2e) {
	t.Helper()
	topics := []string{e.out, e.late, e.dlq, e.app + "-windows-changelog", e.app + "-repartition"}
	var recs []*kgo.Record
	for _, topic := range topics {
		for p := int32(0); p < e.sc.parts; p++ {
			recs = append(recs, &kgo.Record{Topic: topic, Partition: p, Key: []byte("i4-marker"), Value: []byte("{}")})
		}
	}
	produceSync(t, e.brokers, recs)
	for _, topic := range topics {
		seen := map[int32]bool{}
		for _, r := range kafkatest.ReadAll(t, e.brokers, topic, true) {
			if string(r.Key) == "i4-marker" {
				seen[r.Partition] = true
			}
		}
		if len(seen) != int(e.sc.parts) {
			t.Errorf("I4: markers visible with read_committed on %d of %d partitions of %s: a transaction was left open", len(seen), e.sc.parts, topic)
		}
	}
}
