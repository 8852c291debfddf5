package engine

// Tests of the engine without Kafka: a pipeline from a YAML spec
// (topology.Parse, NewPipeline), one Task over a real Pebble store, records
// fed through Task.Process, Task.Punctuate and Task.Flush (the very calls
// the shell makes), and a wall clock that the test moves by hand.
//
// Most of them are scenarios in testdata/windows/*.txt (see runScenario for
// the format). After a deliberate change of behaviour, rewrite their
// expected output with
//
//	go test ./processor/engine -run TestWindowScenarios -update
//
// and read the diff.

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/eddy-streams/eddy/state"
	"github.com/eddy-streams/eddy/topology"
)

var update = flag.Bool("update", false, "rewrite the expected output of processor/engine/testdata/windows/*.txt")

// scenarioDay is the UTC day of clock times in scenarios: "12:00:05" is
// 12:00:05 on this day.
var scenarioDay = time.Date(2025, 6, 2, 0, 0, 0, 0, time.UTC)

// lateRecord is a record aggregate reported late.
type lateRecord struct {
	key        string
	ts, stream int64
	window     state.WindowKey
}

// harness drives one Task (partition 0) of a pipeline through the
// engine's API, as the shell does, without Kafka:
//
//   - record: Task.Process of a decoded record;
//   - advanceWall: Task.Punctuate;
//   - commit: Task.Flush, then TaskStore.Commit of the changes and the
//     checkpoint, then Task.Flushed;
//   - restart: a process restart from local state (reopen Pebble, NewTask
//     from the stored checkpoint, Rebuild, LoadAlerts), without a changelog.
type harness struct {
	tb  testing.TB
	dir string
	p   *Pipeline
	db  *state.DB
	t   *Task
	now time.Time // the injected wall clock
	fx  Effects
	off int64 // next input offset

	out     []string // what happened, one line per event, for scenarios
	emitted []Result
	late    []lateRecord
	dlq     int
	alerts  []Alert // published alert transitions, in order
}

func newHarness(tb testing.TB, specYAML string) (*harness, error) {
	spec, err := topology.Parse([]byte(specYAML))
	if err != nil {
		return nil, err
	}
	p, err := NewPipeline(spec)
	if err != nil {
		return nil, err
	}
	h := &harness{tb: tb, dir: tb.TempDir(), p: p, now: scenarioDay.Add(12 * time.Hour)}
	if err := h.open(); err != nil {
		return nil, err
	}
	tb.Cleanup(func() {
		if h.db != nil {
			if err := h.db.Close(); err != nil {
				tb.Errorf("close state: %v", err)
			}
		}
	})
	return h, nil
}

func mustHarness(tb testing.TB, specYAML string) *harness {
	tb.Helper()
	h, err := newHarness(tb, specYAML)
	if err != nil {
		tb.Fatalf("spec: %v", err)
	}
	return h
}

// open opens the state in h.dir and makes the task from what it holds.
func (h *harness) open() error {
	db, err := state.Open(h.dir)
	if err != nil {
		return err
	}
	h.db = db
	ts := db.TaskStore(h.p.spec.Store, 0, h.p.aggSpecs, 0)
	cp, _, err := ts.Checkpoint()
	if err != nil {
		return err
	}
	h.t = NewTask(h.p, ts, cp, h.now)
	if err := h.t.Rebuild(true); err != nil {
		return err
	}
	return h.t.LoadAlerts()
}

func (h *harness) restart() error {
	err := h.db.Close()
	h.db = nil
	if err != nil {
		return err
	}
	return h.open()
}

func (h *harness) printf(format string, args ...any) {
	h.out = append(h.out, fmt.Sprintf(format, args...))
}

// groupKey is the shell's grouping key (a JSON array of the key fields as
// strings), built independently of processor.groupKey.
func groupKey(fields map[string]any, keyFields []string) (string, string, error) {
	parts := make([]string, len(keyFields))
	for i, f := range keyFields {
		v, ok := KeyString(fields[f])
		if !ok {
			return "", f, errors.New("missing or null")
		}
		parts[i] = v
	}
	b, err := json.Marshal(parts)
	return string(b), "", err
}

// record processes one decoded record through Task.Process, as the shell
// does after the stateless steps.
func (h *harness) record(fields map[string]any, ts int64) error {
	in := state.SourcePartition{Topic: "in", Partition: 0}
	rec := Record{Input: in, Offset: h.off, Source: in, SourceOffset: h.off, Time: ts, Fields: fields}
	h.off++
	key, field, err := groupKey(fields, h.p.spec.Key)
	if err != nil {
		rec.Reject = &Reject{Class: ErrMissingKey, Field: field, Err: err}
	}
	rec.Key = key
	if err := h.t.Process(rec, h.now, &h.fx); err != nil {
		return err
	}
	if dl := h.fx.DeadLetter; dl != nil {
		h.dlq++
		if dl.Class == ErrMissingKey {
			h.printf("dead-letter ts=%s class=%s field=%s: %v", fmtClock(ts), dl.Class, dl.Field, dl.Err)
		} else {
			h.printf("dead-letter %s ts=%s class=%s field=%s: %v", h.fmtKey(key), fmtClock(ts), dl.Class, dl.Field, dl.Err)
		}
		return nil
	}
	if l := h.fx.Late; l != nil {
		h.late = append(h.late, lateRecord{key: key, ts: ts, stream: l.StreamTime, window: l.Window})
		h.printf("late %s ts=%s window=%s stream-time=%s", h.fmtKey(key), fmtClock(l.EventTime), h.fmtWindow(l.Window), fmtClock(l.StreamTime))
	}
	h.effects(true)
	return nil
}

// effects records h.fx's alerts and results as the shell publishes them.
// The engine evaluates a closed window's alert rules before it returns the
// result, so in a scenario alerts print first.
func (h *harness) effects(final bool) {
	for _, tr := range h.fx.Alerts {
		h.alerts = append(h.alerts, tr.Alert)
		h.printf("alert %s %s %s at=%s", tr.Alert.Rule, tr.Alert.State, h.fmtKey(tr.Key), fmtClock(tr.At))
	}
	for _, r := range h.fx.Results {
		if r.Final != final {
			h.tb.Errorf("result for %v: final=%v, want %v", r.Window, r.Final, final)
		}
		if r.Silent {
			continue
		}
		// The row belongs to the store's cache, which the next change may
		// reuse: keep a copy, as the shell keeps the encoded bytes.
		r.Row = r.Row.Clone()
		if final {
			h.emitted = append(h.emitted, r)
			h.printf("emit %s", h.fmtResult(r))
		} else {
			h.printf("update %s", h.fmtResult(r))
		}
	}
}

// advanceWall moves the wall clock and punctuates, as the shell does.
func (h *harness) advanceWall(d time.Duration) error {
	h.now = h.now.Add(d)
	before := h.t.streamTime
	if err := h.t.Punctuate(h.now, &h.fx); err != nil {
		return err
	}
	if h.t.streamTime != before {
		h.printf("idle: stream-time advanced to %s", fmtClock(h.t.streamTime))
	}
	h.effects(true)
	return nil
}

// close closes the windows due at the current stream time.
func (h *harness) close() error {
	h.fx.reset()
	if err := h.t.CloseDue(&h.fx); err != nil {
		return err
	}
	h.effects(true)
	return nil
}

// commit flushes the task as the shell's commit does, with Pebble standing
// in for the changelog.
func (h *harness) commit() error {
	t := h.t
	changes, ok, err := t.Flush(&h.fx)
	if err != nil {
		return err
	}
	h.effects(false)
	if !ok {
		changes = nil
	}
	puts := 0
	for _, ch := range changes {
		if ch.Value != nil {
			puts++
		}
	}
	cp := t.Checkpoint()
	if err := t.store.Commit(changes, cp); err != nil {
		return err
	}
	t.Flushed()
	h.printf("commit: %d rows written, %d deleted", puts, len(changes)-puts)
	return nil
}

// stored lists the windows in Pebble (what survives a restart).
func (h *harness) stored() []state.WindowKey {
	var wks []state.WindowKey
	if err := h.t.store.Scan(true, func(wk state.WindowKey) error {
		wks = append(wks, wk)
		return nil
	}); err != nil {
		h.tb.Fatalf("scan: %v", err)
	}
	return wks
}

func (h *harness) openWindows() []state.WindowKey {
	wks := make([]state.WindowKey, 0, len(h.t.open))
	for wk := range h.t.open {
		wks = append(wks, wk)
	}
	slices.SortFunc(wks, cmpWindowKey)
	return wks
}

func (h *harness) showState() {
	h.printf("stream-time %s", fmtClock(h.t.streamTime))
	wks := h.openWindows()
	if len(wks) == 0 {
		h.printf("open: none")
	}
	for _, wk := range wks {
		row, err := h.t.store.Get(wk)
		if err != nil || row == nil {
			h.printf("open %s %s: no row (%v)", h.fmtKey(wk.Key), h.fmtWindow(wk), err)
			continue
		}
		h.printf("open %s", h.fmtResult(Result{Window: wk, Row: row}))
	}
	st := h.stored()
	if len(st) == 0 {
		h.printf("stored: none")
	}
	for _, wk := range st {
		h.printf("stored %s %s", h.fmtKey(wk.Key), h.fmtWindow(wk))
	}
}

func cmpWindowKey(a, b state.WindowKey) int {
	if c := strings.Compare(a.Key, b.Key); c != 0 {
		return c
	}
	if c := cmp64(a.Start, b.Start); c != 0 {
		return c
	}
	return cmp64(a.End, b.End)
}

// fmtClock renders ms as the time of day on scenarioDay (milliseconds only
// when not zero), or in full on another day.
func fmtClock(ms int64) string {
	t := time.UnixMilli(ms).UTC()
	if d := t.Sub(scenarioDay); d >= 0 && d < 24*time.Hour {
		if t.Nanosecond() != 0 {
			return t.Format("15:04:05.000")
		}
		return t.Format("15:04:05")
	}
	return t.Format(timeLayout)
}

// parseClock reads HH:MM:SS[.mmm] (on scenarioDay; hours may pass 23) or
// an RFC 3339 time.
func parseClock(s string) (int64, error) {
	if strings.Contains(s, "T") {
		t, err := time.Parse(time.RFC3339Nano, s)
		return t.UnixMilli(), err
	}
	parts := strings.Split(s, ":")
	if len(parts) != 3 {
		return 0, fmt.Errorf("time %q: want HH:MM:SS[.mmm] or RFC 3339", s)
	}
	h, err1 := strconv.Atoi(parts[0])
	m, err2 := strconv.Atoi(parts[1])
	sec, err3 := strconv.ParseFloat(parts[2], 64)
	if err := errors.Join(err1, err2, err3); err != nil {
		return 0, fmt.Errorf("time %q: %w", s, err)
	}
	ms := int64(h)*3600_000 + int64(m)*60_000 + int64(math.Round(sec*1000))
	return scenarioDay.UnixMilli() + ms, nil
}

// fmtKey renders a grouping key as its fields: endpoint=/a.
func (h *harness) fmtKey(key string) string {
	var parts []string
	if err := json.Unmarshal([]byte(key), &parts); err != nil {
		return strconv.Quote(key)
	}
	var b strings.Builder
	for i, f := range h.p.spec.Key {
		if i > 0 {
			b.WriteByte(' ')
		}
		if i < len(parts) {
			fmt.Fprintf(&b, "%s=%s", f, parts[i])
		}
	}
	return b.String()
}

// fmtWindow renders [start,end) for time windows, [first,last] for sessions.
func (h *harness) fmtWindow(wk state.WindowKey) string {
	if h.p.spec.Window.Type == topology.WindowSession {
		return "[" + fmtClock(wk.Start) + "," + fmtClock(wk.End) + "]"
	}
	return "[" + fmtClock(wk.Start) + "," + fmtClock(wk.End) + ")"
}

// fmtResult renders a result: key, window, then each aggregate (exact,
// except percentiles: 4 significant digits of the sketch's estimate).
func (h *harness) fmtResult(r Result) string {
	var b strings.Builder
	b.WriteString(h.fmtKey(r.Window.Key))
	b.WriteByte(' ')
	b.WriteString(h.fmtWindow(r.Window))
	for i, a := range h.p.spec.Aggregates {
		v, ok := r.Row.Value(i)
		s := "null"
		switch {
		case !ok:
		case a.Op == topology.AggQuantile:
			s = strconv.FormatFloat(v, 'g', 4, 64)
		default:
			s = strconv.FormatFloat(v, 'g', -1, 64)
		}
		fmt.Fprintf(&b, " %s=%s", a.Name, s)
	}
	return b.String()
}

// parseFields reads name=value pairs: numbers become float64 (as JSON
// decodes them), "null" nil, "quoted" and other words strings.
func parseFields(args []string) (fields map[string]any, ts int64, err error) {
	fields = make(map[string]any)
	hasTS := false
	for _, a := range args {
		name, val, ok := strings.Cut(a, "=")
		if !ok {
			return nil, 0, fmt.Errorf("%q: want name=value", a)
		}
		if name == "ts" {
			if ts, err = parseClock(val); err != nil {
				return nil, 0, err
			}
			hasTS = true
			continue
		}
		switch {
		case val == "null":
			fields[name] = nil
		case strings.HasPrefix(val, `"`):
			s, err := strconv.Unquote(val)
			if err != nil {
				return nil, 0, fmt.Errorf("%q: %w", a, err)
			}
			fields[name] = s
		default:
			if f, err := strconv.ParseFloat(val, 64); err == nil {
				fields[name] = f
			} else {
				fields[name] = val
			}
		}
	}
	if !hasTS {
		return nil, 0, errors.New("record without ts=")
	}
	return fields, ts, nil
}

// run executes one directive of a scenario's run block.
func (h *harness) run(line string) error {
	args := strings.Fields(line)
	switch args[0] {
	case "record":
		fields, ts, err := parseFields(args[1:])
		if err != nil {
			return err
		}
		return h.record(fields, ts)
	case "advance-wall":
		if len(args) != 2 {
			return errors.New("usage: advance-wall <duration>")
		}
		d, err := time.ParseDuration(args[1])
		if err != nil {
			return err
		}
		return h.advanceWall(d)
	case "close":
		return h.close()
	case "commit":
		return h.commit()
	case "restart":
		if err := h.restart(); err != nil {
			return err
		}
		h.printf("restarted: stream-time %s, %d open windows", fmtClock(h.t.streamTime), len(h.t.open))
		return nil
	case "state":
		h.showState()
		return nil
	}
	return fmt.Errorf("unknown directive %q (want record, advance-wall, close, commit, restart or state)", args[0])
}

// runScenario runs one scenario file. The format, a small cousin of
// cockroachdb/datadriven:
//
//	# comments and blank lines between blocks
//	spec                   a pipeline spec in YAML, until ----;
//	<yaml>                 it starts a fresh task and store
//	----
//	ok                     (or the spec's error)
//
//	run                    directives, one a line, until ----:
//	record endpoint=/a ts=12:00:05 latency=10
//	advance-wall 30s       move the wall clock, punctuate
//	close                  closeWindows
//	commit                 flush and commit the task's state
//	restart                reopen the store, rebuild the task from it
//	state                  stream time, open windows, rows in Pebble
//	----
//	emit ...               what happened, in order, until a blank line
//
// Blocks run in order against the same task. With -update the file is
// rewritten with the actual output.
func runScenario(t *testing.T, path string) {
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	var rewritten []string
	var h *harness
	for i := 0; i < len(lines); {
		line := lines[i]
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
			rewritten = append(rewritten, line)
			i++
			continue
		}
		pos := fmt.Sprintf("%s:%d", path, i+1)
		cmd := strings.TrimSpace(line)
		start := i
		i++
		var input []string
		for ; i < len(lines) && lines[i] != "----"; i++ {
			input = append(input, lines[i])
		}
		if i == len(lines) {
			t.Fatalf("%s: %s block without ----", pos, cmd)
		}
		rewritten = append(rewritten, lines[start:i+1]...)
		i++
		var expected []string
		for ; i < len(lines) && strings.TrimSpace(lines[i]) != ""; i++ {
			expected = append(expected, lines[i])
		}

		var actual []string
		switch cmd {
		case "spec":
			h, err = newHarness(t, strings.Join(input, "\n"))
			if err != nil {
				actual = strings.Split(err.Error(), "\n")
			} else {
				actual = []string{"ok"}
			}
		case "run":
			if h == nil {
				t.Fatalf("%s: run before a valid spec", pos)
			}
			h.out = h.out[:0]
			for j, in := range input {
				if strings.TrimSpace(in) == "" || strings.HasPrefix(in, "#") {
					continue
				}
				if err := h.run(in); err != nil {
					t.Fatalf("%s:%d: %s: %v", path, start+2+j, in, err)
				}
			}
			actual = slices.Clone(h.out)
		default:
			t.Fatalf("%s: unknown block %q (want spec or run)", pos, cmd)
		}
		rewritten = append(rewritten, actual...)
		if !*update && !slices.Equal(actual, expected) {
			t.Errorf("%s: output differs\n--- want\n%s\n--- got\n%s", pos, strings.Join(expected, "\n"), strings.Join(actual, "\n"))
		}
	}
	if *update {
		out := strings.Join(rewritten, "\n") + "\n"
		if out != string(data) {
			if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
				t.Fatal(err)
			}
			t.Logf("rewrote %s", path)
		}
	}
}

func TestWindowScenarios(t *testing.T) {
	files, err := filepath.Glob("testdata/windows/*.txt")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no scenarios in testdata/windows")
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".txt"), func(t *testing.T) { runScenario(t, f) })
	}
}

// specYAML is a pipeline over field "k" (the key) and "v" (a number).
func specYAML(window, extra string) string {
	return `app: t
source: {topics: [in]}
key: [k]
window: ` + window + `
aggregates:
  - {name: n, op: count}
  - {name: total, op: sum, field: v}
  - {name: lo, op: min, field: v}
  - {name: hi, op: max, field: v}
  - {name: p99, op: p99, field: v}
output: {topic: out}
` + extra
}

func (h *harness) mustRecord(key string, ts int64, v float64) {
	h.tb.Helper()
	if err := h.record(map[string]any{"k": key, "v": v}, ts); err != nil {
		h.tb.Fatalf("record %s@%d: %v", key, ts, err)
	}
}

// closeAll advances the wall clock far enough for the idle advance to close
// every window.
func (h *harness) closeAll() {
	h.tb.Helper()
	if err := h.advanceWall(10_000 * time.Hour); err != nil {
		h.tb.Fatal(err)
	}
}

// checkEmpty checks that the task tracks nothing once every window closed.
func (h *harness) checkEmpty() {
	h.tb.Helper()
	t := h.t
	if len(t.open) != 0 || len(t.closeAt) != 0 || t.closeQ.Len() != 0 || len(t.sessions) != 0 || len(t.dirtyEmit) != 0 {
		h.tb.Errorf("after every window closed: %d open, %d close times, %d queued, %d keys with sessions, %d dirty",
			len(t.open), len(t.closeAt), t.closeQ.Len(), len(t.sessions), len(t.dirtyEmit))
	}
}

// TestRetentionBounded feeds 10,000 records over 1,000 windows (5 keys,
// out of order by up to 1.5s, all within grace) and checks that the state
// never holds more windows than can be open at once, that Pebble holds
// exactly the open windows after every commit, and that every record is in
// exactly one final result per window it belongs to.
func TestRetentionBounded(t *testing.T) {
	const (
		records = 10_000
		keys    = 5
		step    = 100 // ms between records: 10 per second, 1,000 one-second windows
	)
	for _, c := range []struct {
		name, window, extra string
		// maxOpen bounds the open windows per key: those whose close time
		// is after stream time and that hold a record not after it.
		maxOpen int
		perRec  int // windows each record belongs to
	}{
		// end in (st-grace, st+size]: 3 windows of 1s.
		{"tumbling", "{type: tumbling, size: 1s, grace: 2s}", "", 3, 1},
		// The same in update mode: closing also forgets the dirty marks.
		{"tumbling-update", "{type: tumbling, size: 1s, grace: 2s}", "emit: update\n", 3, 1},
		// end in (st-grace, st+size], one every 1s: 5.
		{"hopping", "{type: hopping, size: 3s, advance: 1s, grace: 2s}", "", 5, 3},
		// a key's records are 500ms apart (± jitter), sessions more than
		// gap apart, each open one with its last record in
		// (st-gap-grace, st]: at most 2.3s/0.3s, rounded up.
		{"session", "{type: session, gap: 300ms, grace: 2s}", "", 8, 1},
		{"session-update", "{type: session, gap: 300ms, grace: 2s}", "emit: update\n", 8, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			h := mustHarness(t, specYAML(c.window, c.extra))
			rng := rand.New(rand.NewPCG(1, 2))
			base := scenarioDay.Add(12 * time.Hour).UnixMilli()
			maxOpen := c.maxOpen * keys
			peak := 0
			for i := range records {
				ts := base + int64(i*step) - rng.Int64N(1500)
				h.mustRecord(fmt.Sprintf("k%d", i%keys), ts, 1)
				if n := len(h.t.open); n > maxOpen {
					t.Fatalf("record %d: %d open windows, at most %d can be open", i, n, maxOpen)
				} else {
					peak = max(peak, n)
				}
				if n := len(h.t.dirtyEmit); n > len(h.t.open) {
					t.Fatalf("record %d: %d windows marked dirty, only %d open", i, n, len(h.t.open))
				}
				if i%100 == 99 {
					if err := h.commit(); err != nil {
						t.Fatal(err)
					}
					if st, open := h.stored(), h.openWindows(); !slices.Equal(st, open) {
						t.Fatalf("record %d: after commit Pebble holds %d windows, %d are open", i, len(st), len(open))
					}
				}
			}
			if n := len(h.stored()); n > maxOpen {
				t.Errorf("%d windows stored at the end, at most %d can be open", n, maxOpen)
			}
			if len(h.late) != 0 {
				t.Errorf("%d late records, want 0 (disorder is within grace)", len(h.late))
			}
			if err := h.commit(); err != nil { // update mode: clears the dirty marks
				t.Fatal(err)
			}
			h.closeAll()
			h.checkEmpty()
			if err := h.commit(); err != nil {
				t.Fatal(err)
			}
			if st := h.stored(); len(st) != 0 {
				t.Errorf("after every window closed and a commit, Pebble holds %d windows, e.g. %v", len(st), st[0])
			}
			total := 0.0
			seen := make(map[state.WindowKey]bool)
			for _, r := range h.emitted {
				if seen[r.Window] {
					t.Errorf("window %v emitted twice", r.Window)
				}
				seen[r.Window] = true
				n, _ := r.Row.Value(0)
				total += n
			}
			// In update mode a window has a result at close only if it
			// changed since the last commit; the others went out as updates.
			if want := float64(records * c.perRec); !h.p.emitUpdate && total != want {
				t.Errorf("results count %v records, want %v", total, want)
			}
			t.Logf("%d results; at most %d windows open at once (bound %d)", len(h.emitted), peak, maxOpen)
		})
	}
}

// modelWindow is a window of the reference model.
type modelWindow struct {
	key        string
	start, end int64
	n          int
	sum        float64
	emitted    bool
}

// TestTimeWindowsMatchModel checks tumbling and hopping windows against a
// brute-force model of the documented semantics, on random streams with
// records out of order by up to 3s (so some are late) on a 100ms grid (so
// records hit window boundaries and close times exactly):
//
//   - stream time is the highest event time seen;
//   - a window [s, e) closes when stream time reaches e + grace; its final
//     result counts every record of it that arrived before;
//   - a record counts in its open windows and is late only when all its
//     windows are closed; it is reported once, with its newest window;
//   - results come out by close time, then key, then start.
func TestTimeWindowsMatchModel(t *testing.T) {
	for seed := uint64(1); seed <= 40; seed++ {
		rng := rand.New(rand.NewPCG(seed, 0))
		size := []int64{1000, 2000, 5000}[rng.IntN(3)]
		grace := []int64{0, 500, 2000}[rng.IntN(3)]
		advance := size
		window := fmt.Sprintf("{type: tumbling, size: %dms, grace: %dms}", size, grace)
		if rng.IntN(2) == 0 {
			advance = size / []int64{1, 2, 4, 5}[rng.IntN(4)] // divides every size
			window = fmt.Sprintf("{type: hopping, size: %dms, advance: %dms, grace: %dms}", size, advance, grace)
		}
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			h := mustHarness(t, specYAML(window, ""))
			keys := 1 + rng.IntN(3)
			base := scenarioDay.Add(12 * time.Hour).UnixMilli()

			var want []string
			var wantLate []string
			model := make(map[state.WindowKey]*modelWindow)
			var st int64
			closeModel := func(st int64) {
				var due []*modelWindow
				for _, w := range model {
					if !w.emitted && w.end+grace <= st {
						due = append(due, w)
					}
				}
				slices.SortFunc(due, func(a, b *modelWindow) int {
					if c := cmp64(a.end, b.end); c != 0 {
						return c
					}
					if c := strings.Compare(a.key, b.key); c != 0 {
						return c
					}
					return cmp64(a.start, b.start)
				})
				for _, w := range due {
					w.emitted = true
					want = append(want, fmt.Sprintf("%s [%d,%d) n=%d sum=%g", w.key, w.start-base, w.end-base, w.n, w.sum))
				}
			}

			arrival := base
			for i := range 300 {
				arrival += 100 * rng.Int64N(5)
				ts := arrival - 100*rng.Int64N(31)
				key := fmt.Sprintf("k%d", rng.IntN(keys))
				v := float64(rng.IntN(100))
				h.mustRecord(key, ts, v)

				st = max(st, ts)
				var starts []int64
				for s := topology.FloorDiv(ts, advance) * advance; s+size > ts; s -= advance {
					starts = append([]int64{s}, starts...)
				}
				counted := false
				for _, s := range starts {
					if s+size+grace <= st {
						continue
					}
					wk := state.WindowKey{Key: key, Start: s, End: s + size}
					w := model[wk]
					if w == nil {
						w = &modelWindow{key: key, start: s, end: s + size}
						model[wk] = w
					}
					w.n++
					w.sum += v
					counted = true
				}
				if !counted {
					s := starts[len(starts)-1]
					wantLate = append(wantLate, fmt.Sprintf("record %d %s ts=%d window=[%d,%d)", i, key, ts-base, s-base, s+size-base))
				}
				closeModel(st)
			}
			h.closeAll()
			closeModel(math.MaxInt64)
			h.checkEmpty()

			var got, gotLate []string
			for _, r := range h.emitted {
				n, _ := r.Row.Value(0)
				sum, _ := r.Row.Value(1)
				got = append(got, fmt.Sprintf("%s [%d,%d) n=%g sum=%g", h.fmtKey(r.Window.Key)[2:], r.Window.Start-base, r.Window.End-base, n, sum))
			}
			j := 0
			for _, l := range h.late {
				// record index is not known to the harness: match in order.
				for j < len(wantLate) && !strings.HasSuffix(wantLate[j], fmt.Sprintf("%s ts=%d window=[%d,%d)", h.fmtKey(l.key)[2:], l.ts-base, l.window.Start-base, l.window.End-base)) {
					gotLate = append(gotLate, "missing: "+wantLate[j])
					j++
				}
				if j == len(wantLate) {
					gotLate = append(gotLate, fmt.Sprintf("unexpected late %s ts=%d", l.key, l.ts-base))
					continue
				}
				j++
			}
			for ; j < len(wantLate); j++ {
				gotLate = append(gotLate, "missing: "+wantLate[j])
			}
			if len(gotLate) > 0 {
				t.Errorf("%s: late records differ from the model:\n%s", window, strings.Join(gotLate, "\n"))
			}
			t.Logf("%s, %d keys: %d results, %d late", window, keys, len(got), len(h.late))
			if !slices.Equal(got, want) {
				t.Errorf("%s: results differ from the model\n--- want\n%s\n--- got\n%s", window, strings.Join(want, "\n"), strings.Join(got, "\n"))
			}
		})
	}
}

// batchSessions computes sessions the way the docs define them, over the
// whole input at once: a key's records at most gap apart are one session.
func batchSessions(recs []modelRecord, gap int64) []string {
	byKey := make(map[string][]modelRecord)
	for _, r := range recs {
		byKey[r.key] = append(byKey[r.key], r)
	}
	var out []string
	for key, rs := range byKey {
		slices.SortStableFunc(rs, func(a, b modelRecord) int { return cmp64(a.ts, b.ts) })
		first, n, sum := 0, 0, 0.0
		for i, r := range rs {
			n++
			sum += r.v
			if i == len(rs)-1 || rs[i+1].ts-r.ts > gap {
				out = append(out, fmt.Sprintf("%s [%d,%d] n=%d sum=%g", key, rs[first].ts, r.ts, n, sum))
				first, n, sum = i+1, 0, 0
			}
		}
	}
	slices.Sort(out)
	return out
}

type modelRecord struct {
	key string
	ts  int64
	v   float64
}

// sessionRun feeds recs to a session pipeline, closes everything and
// returns the results, sorted, in the format of batchSessions.
func sessionRun(t *testing.T, recs []modelRecord, gap, grace time.Duration) (results []string, late int) {
	h := mustHarness(t, specYAML(fmt.Sprintf("{type: session, gap: %s, grace: %s}", gap, grace), ""))
	for _, r := range recs {
		h.mustRecord(r.key, r.ts, r.v)
	}
	h.closeAll()
	h.checkEmpty()
	for _, r := range h.emitted {
		n, _ := r.Row.Value(0)
		sum, _ := r.Row.Value(1)
		results = append(results, fmt.Sprintf("%s [%d,%d] n=%g sum=%g", h.fmtKey(r.Window.Key)[2:], r.Window.Start, r.Window.End, n, sum))
	}
	slices.Sort(results)
	return results, len(h.late)
}

// TestSessionsMatchBatch: when records are out of order by at most grace,
// none is late and streaming sessions equal the sessions computed over the
// whole input. Times are whole seconds and the gap is 5.5s, so no record
// falls exactly on a session's close time (see the report on that
// boundary).
func TestSessionsMatchBatch(t *testing.T) {
	const gap, grace = 5500 * time.Millisecond, 3 * time.Second
	for seed := uint64(1); seed <= 30; seed++ {
		rng := rand.New(rand.NewPCG(seed, 7))
		var recs []modelRecord
		arrival := scenarioDay.Add(12 * time.Hour).UnixMilli()
		for range 200 {
			arrival += 1000 * rng.Int64N(5)
			recs = append(recs, modelRecord{
				key: fmt.Sprintf("k%d", rng.IntN(3)),
				ts:  arrival - 1000*rng.Int64N(int64(grace/time.Second)+1),
				v:   float64(rng.IntN(10)),
			})
		}
		got, late := sessionRun(t, recs, gap, grace)
		if late != 0 {
			t.Errorf("seed %d: %d late records, want 0 (disorder is within grace)", seed, late)
		}
		if want := batchSessions(recs, gap.Milliseconds()); !slices.Equal(got, want) {
			t.Errorf("seed %d: streaming sessions differ from batch sessions\n--- want\n%s\n--- got\n%s", seed, strings.Join(want, "\n"), strings.Join(got, "\n"))
		}
	}
}

// TestSessionMergeMatchesDirectRow: a record that bridges two sessions
// leaves one session whose aggregates (count, sum, min, max, p99) equal
// those of one row fed every value directly.
func TestSessionMergeMatchesDirectRow(t *testing.T) {
	h := mustHarness(t, specYAML("{type: session, gap: 10s, grace: 30s}", ""))
	base := scenarioDay.Add(12 * time.Hour).UnixMilli()
	direct := state.NewRow(h.p.aggSpecs)
	feed := func(ts int64, v float64) {
		h.mustRecord("u", base+ts, v)
		for i := range h.p.aggSpecs {
			direct.Add(i, v)
		}
	}
	// Session A [0, 9000] and session B [20000, 26000]: 11s apart.
	for i, v := range []float64{3, 1e6, -2, 7.5, 0.25} {
		feed(int64(i)*2250, v)
	}
	for i, v := range []float64{42, 8, 99.9, 1e-3} {
		feed(20000+int64(i)*2000, v)
	}
	if n := len(h.t.sessions[`["u"]`]); n != 2 {
		t.Fatalf("%d sessions before the bridge, want 2: %v", n, h.t.sessions)
	}
	feed(15000, 13) // within 10s of both
	if len(h.t.open) != 1 {
		t.Fatalf("%d open sessions after the bridge, want 1: %v", len(h.t.open), h.openWindows())
	}
	wk := h.openWindows()[0]
	if wk.Start != base || wk.End != base+26000 {
		t.Errorf("merged session %s, want [12:00:00,12:00:26]", h.fmtWindow(wk))
	}
	h.closeAll()
	if len(h.emitted) != 1 {
		t.Fatalf("%d results, want 1", len(h.emitted))
	}
	got := h.emitted[0].Row
	for i, a := range h.p.spec.Aggregates {
		gv, gok := got.Value(i)
		dv, dok := direct.Value(i)
		if gv != dv || gok != dok {
			t.Errorf("%s: merged session has %v (%v), one row fed every value has %v (%v)", a.Name, gv, gok, dv, dok)
		}
	}
}

// TestAggInputs checks the error classes of aggInputs with errors.Is.
func TestAggInputs(t *testing.T) {
	h := mustHarness(t, `app: t
source: {topics: [in]}
key: [k]
window: {type: tumbling, size: 1m}
aggregates:
  - {name: requests, op: count}
  - {name: errors, op: count, where: status >= 500}
  - {name: total_ms, op: sum, field: latency}
  - {name: users, op: distinct, field: user}
output: {topic: out}
`)
	p := h.p
	for _, c := range []struct {
		name   string
		fields map[string]any
		skip   []bool // per aggregate, when no error
		num    float64
		class  error // nil: no error
		field  string
	}{
		{name: "ok", fields: map[string]any{"status": 503.0, "latency": 12.0, "user": "a"}, skip: []bool{false, false, false, false}, num: 12},
		{name: "where false", fields: map[string]any{"status": 200.0, "latency": 12.0, "user": "a"}, skip: []bool{false, true, false, false}, num: 12},
		{name: "missing numeric field", fields: map[string]any{"status": 200.0, "user": "a"}, skip: []bool{false, true, true, false}},
		{name: "null numeric field", fields: map[string]any{"status": 200.0, "latency": nil}, skip: []bool{false, true, true, true}},
		{name: "numeric string", fields: map[string]any{"status": 200.0, "latency": "2.5"}, skip: []bool{false, true, false, true}, num: 2.5},
		{name: "non-numeric string", fields: map[string]any{"status": 200.0, "latency": "fast"}, class: ErrAggregateField, field: "latency"},
		{name: "object", fields: map[string]any{"status": 200.0, "latency": map[string]any{}}, class: ErrAggregateField, field: "latency"},
		{name: "where on a missing field", fields: map[string]any{"latency": 1.0}, class: ErrExpression, field: "errors"},
		{name: "where on a string", fields: map[string]any{"status": "503"}, class: ErrExpression, field: "errors"},
	} {
		ins, field, err := p.aggInputs(c.fields, nil)
		if c.class != nil {
			if !errors.Is(err, c.class) || field != c.field {
				t.Errorf("%s: aggInputs = %q, %v; want an error wrapping %v for %q", c.name, field, err, c.class, c.field)
			}
			if c.class == ErrAggregateField && errors.Is(err, ErrExpression) || c.class == ErrExpression && errors.Is(err, ErrAggregateField) {
				t.Errorf("%s: %v wraps both classes", c.name, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: aggInputs: %v", c.name, err)
			continue
		}
		var skip []bool
		for _, in := range ins {
			skip = append(skip, in.skip)
		}
		if !slices.Equal(skip, c.skip) {
			t.Errorf("%s: skip = %v, want %v", c.name, skip, c.skip)
		}
		if !ins[2].skip && ins[2].num != c.num {
			t.Errorf("%s: latency input %v, want %v", c.name, ins[2].num, c.num)
		}
	}
}

// TestIdleAdvanceNoRecords: idle advance moves stream time with the wall
// clock only after the idle timeout; but Punctuate leaves a task that never
// received a record (and has no window) at stream time zero, and nothing is
// emitted.
func TestIdleAdvanceNoRecords(t *testing.T) {
	h := mustHarness(t, specYAML("{type: tumbling, size: 1s}", "idle_timeout: 10s\n"))
	if err := h.t.Punctuate(h.now.Add(20*time.Second), &h.fx); err != nil || h.t.streamTime != 0 || len(h.fx.Results) != 0 {
		t.Errorf("Punctuate without records: %v, stream time %d, %d results; want 0, none", err, h.t.streamTime, len(h.fx.Results))
	}
	if moved := h.t.idleAdvance(h.now.Add(5 * time.Second)); moved || h.t.streamTime != 0 {
		t.Errorf("after 5s: moved=%v stream time %d, want no move", moved, h.t.streamTime)
	}
	if moved := h.t.idleAdvance(h.now.Add(20 * time.Second)); !moved || h.t.streamTime != 20_000 {
		t.Errorf("after 20s: moved=%v stream time %d, want 20000", moved, h.t.streamTime)
	}
	if err := h.close(); err != nil || len(h.emitted) != 0 {
		t.Errorf("close: %v, %d results; want none", err, len(h.emitted))
	}
}
