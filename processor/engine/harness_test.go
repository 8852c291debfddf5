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
	"maps"
	"math"
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

	reportTTL time.Duration // reports-expire, kept across restarts
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
	h.t.ExpireReports(h.reportTTL)
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
//
// A field from=N makes it a record of source partition N read through the
// repartition topic (Input is partition 0 of "in-repartition", Source
// partition N of "in"); without it the task reads partition 0 of "in"
// directly.
func (h *harness) record(fields map[string]any, ts int64) error {
	in := state.SourcePartition{Topic: "in", Partition: 0}
	rec := Record{Input: in, Offset: h.off, Source: in, SourceOffset: h.off, Time: ts, Fields: fields}
	if from, ok := fields["from"]; ok {
		delete(fields, "from")
		n, _ := from.(float64)
		rec.Input = state.SourcePartition{Topic: "in-repartition", Partition: 0}
		rec.Source = state.SourcePartition{Topic: "in", Partition: int32(n)}
	}
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
	for _, m := range h.fx.MovedOn {
		h.printf("moved on without in/%d: watermark %s, waited %s", m.Input.Partition, fmtClock(m.Watermark), m.Waited)
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
	if wms := h.t.Watermarks(); len(wms) > 1 {
		ins := slices.SortedFunc(maps.Keys(wms), func(a, b state.SourcePartition) int { return int(a.Partition - b.Partition) })
		var b strings.Builder
		b.WriteString("watermarks")
		for _, in := range ins {
			fmt.Fprintf(&b, " in/%d=%s", in.Partition, fmtClock(wms[in]))
		}
		if in, waited, waiting, ok := h.t.HeldBy(h.now); ok {
			fmt.Fprintf(&b, "; held by in/%d for %s", in.Partition, waited)
			if waiting {
				b.WriteString(", records wait on it")
			}
		}
		h.printf("%s", b.String())
	}
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

// durationArg parses the one argument of a "<directive> <duration>" line.
func durationArg(args []string) (time.Duration, error) {
	if len(args) != 2 {
		return 0, fmt.Errorf("usage: %s <duration>", args[0])
	}
	return time.ParseDuration(args[1])
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
		d, err := durationArg(args)
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
	case "expect":
		// expect 0 1 2: the task waits for these partitions of "in".
		var ins []state.SourcePartition
		for _, a := range args[1:] {
			n, err := strconv.Atoi(a)
			if err != nil {
				return err
			}
			ins = append(ins, state.SourcePartition{Topic: "in", Partition: int32(n)})
		}
		h.t.Expect(ins, h.now)
		return nil
	case "watermark":
		// watermark from=N ts=HH:MM:SS caught-up|waiting: a report of
		// partition N of "in" (ts=- for none).
		if len(args) != 4 {
			return errors.New("usage: watermark from=N ts=<time>|- caught-up|waiting")
		}
		n, err := strconv.Atoi(strings.TrimPrefix(args[1], "from="))
		if err != nil {
			return err
		}
		var ts int64
		if v := strings.TrimPrefix(args[2], "ts="); v != "-" {
			if ts, err = parseClock(v); err != nil {
				return err
			}
		}
		h.t.ObserveWatermark(Watermark{Input: state.SourcePartition{Topic: "in", Partition: int32(n)}, Time: ts,
			CaughtUp: args[3] == "caught-up"}, h.now)
		return nil
	case "reports-expire":
		// reports-expire 6s: reports of input partitions expire (the
		// shell's heartbeat TTL, Task.ExpireReports).
		d, err := durationArg(args)
		if err != nil {
			return err
		}
		h.reportTTL = d
		h.t.ExpireReports(d)
		return nil
	case "input":
		// input caught-up|backlog: the task's own input partition.
		if len(args) != 2 {
			return errors.New("usage: input caught-up|backlog")
		}
		h.t.SetInputCaughtUp(args[1] == "caught-up")
		return nil
	}
	return fmt.Errorf("unknown directive %q (want record, advance-wall, close, commit, restart, state, expect, watermark, reports-expire or input)", args[0])
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
