package engine

// Property and unit tests of the engine on the harness (harness_test.go):
// retention, windows against an independent model, sessions against a
// batch computation, idle time.

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/eddy-streams/eddy/state"
	"github.com/eddy-streams/eddy/topology"
)

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

// TestBadRecordsAreNotArrivals: only records that reach the windows count
// as arrivals for the idle timeout. A partition receiving only dead-letter
// or filtered records is idle, so its windows still close (the scenario
// harness once reset the idle timer on every record, unlike the runtime).
func TestBadRecordsAreNotArrivals(t *testing.T) {
	h := mustHarness(t, specYAML("{type: tumbling, size: 1s}", "idle_timeout: 10s\n"))
	t0 := clock("12:00:00")
	h.mustRecord("a", t0, 1)
	if err := h.advanceWall(8 * time.Second); err != nil {
		t.Fatal(err)
	}
	// Not a number: the aggregate refuses it, the record is dead-lettered.
	if err := h.record(map[string]any{"k": "a", "v": "abc"}, t0+500); err != nil {
		t.Fatal(err)
	}
	if h.dlq != 1 {
		t.Fatalf("%d dead letters, want 1", h.dlq)
	}
	if err := h.advanceWall(3 * time.Second); err != nil {
		t.Fatal(err)
	}
	// 11s of wall clock since the last arrival, past the 10s idle timeout:
	// stream time is the arrival's plus those 11s, and the window
	// [12:00:00, 12:00:01) closed. Had the bad record counted as an
	// arrival, the task would have been idle for 3s only.
	if want := t0 + 11_000; h.t.streamTime != want {
		t.Errorf("stream time %s, want %s (idle since the last good record)", fmtClock(h.t.streamTime), fmtClock(want))
	}
	if len(h.emitted) != 1 {
		t.Errorf("%d results, want the window of the good record", len(h.emitted))
	}
}
