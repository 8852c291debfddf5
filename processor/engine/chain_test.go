package engine

// Tests of chained rollups (chain.go): a rollup A of 10 s windows fed with
// records, B (1 min) following A's final results, C (5 min) following
// B's, driven as the shell drives them: after every call of a task that
// may close windows, the next task of the chain gets that call's effects
// and the task's ClosedThrough. Expected results come from plain loops
// over the raw records (no engine code).

import (
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

const (
	chainGrace = 2_000  // A's grace, ms
	chainA     = 10_000 // A's window, ms
	chainB     = 60_000
	chainC     = 300_000
)

// chainAggs are the aggregates of the chain; chainAgg* their indexes.
const chainAggs = `aggregates:
  - {name: n, op: count}
  - {name: total, op: sum, field: v}
  - {name: lo, op: min, field: v}
  - {name: hi, op: max, field: v}
  - {name: avg, op: mean, field: v}
  - {name: p99, op: p99, field: v}
  - {name: users, op: distinct, field: u}
  - {name: top, op: top_k, field: ep, k: 3}
`

const (
	aggN = iota
	aggTotal
	aggLo
	aggHi
	aggAvg
	aggP99
	aggUsers
	aggTop
)

// chainSpecs builds the pipeline's three rollups through
// topology.Spec.RollupSpecs, as the shell does: a (10 s, grace 2 s), b
// (from a, 1 min) and c (from b, 5 min). bExtra is added to b's part
// (emit, alerts). Each part is parsed in the single-rollup form, for its
// defaults.
func chainSpecs(t testing.TB, bExtra string) (a, b, c *Pipeline) {
	t.Helper()
	parse := func(window, extra string) *topology.Spec {
		t.Helper()
		s, err := topology.Parse([]byte("app: chain\nsource: {topics: [in]}\nkey: [k]\nwindow: " + window +
			"\n" + chainAggs + "output: {topic: out}\n" + extra))
		if err != nil {
			t.Fatalf("spec: %v", err)
		}
		return s
	}
	top := parse("{type: tumbling, size: 10s, grace: 2s}", "")
	pb := parse("{type: tumbling, size: 1m}", bExtra)
	pc := parse("{type: tumbling, size: 5m}", "")
	rollup := func(name, from string, s *topology.Spec) topology.Rollup {
		r := topology.Rollup{Name: name, From: from, Window: s.Window, Emit: s.Emit,
			Output: topology.Output{Topic: "out-" + name, Format: s.Output.Format}, Alerts: s.Alerts}
		if from == "" {
			r.Key, r.Aggregates = s.Key, s.Aggregates
		}
		return r
	}
	top.Rollups = []topology.Rollup{rollup("a", "", top), rollup("b", "a", pb), rollup("c", "b", pc)}
	specs := top.RollupSpecs()
	var ps []*Pipeline
	for _, s := range specs {
		p, err := NewPipeline(s)
		if err != nil {
			t.Fatalf("rollup %s: %v", s.RollupName, err)
		}
		ps = append(ps, p)
	}
	if ps[0].Chained() || !ps[1].Chained() || !ps[2].Chained() {
		t.Fatalf("Chained: a %v, b %v, c %v; want false, true, true", ps[0].Chained(), ps[1].Chained(), ps[2].Chained())
	}
	return ps[0], ps[1], ps[2]
}

// rawRec is one generated input record.
type rawRec struct {
	key   string
	ts    int64
	v     float64
	u, ep string
	late  bool // late for A by construction
}

// genChainRecords makes about 6,000 records of 5 keys (one rare) over ~10 minutes of
// event time, in arrival order, with a pause of 3 minutes in the middle
// (the task goes idle; the wall clock advances its stream time). Most
// records are on time, some out of order within A's grace, and about 5%
// late beyond it. Lateness is decided by construction: an on-time record
// is later than the highest event time so far minus the grace, so its
// window has not closed; a late one lies in a window whose end plus grace
// is at or before that highest event time (A's stream time is at least
// that). gapAt is the index of the first record after the pause, gapWall
// how long the wall clock moves in it.
func genChainRecords(rng *rand.Rand) (recs []rawRec, gapAt int, gapWall time.Duration) {
	const n = 6000
	zipf := rand.NewZipf(rng, 1.1, 1, 399)
	clock := scenarioDay.Add(12*time.Hour).UnixMilli() + 123
	var maxSeen int64
	gapAt, gapWall = n/2, 3*time.Minute
	for i := range n {
		if i == gapAt {
			// Past whatever the idle advance of the pause can reach.
			clock = maxSeen + gapWall.Milliseconds() + 20_000
		}
		clock += rng.Int64N(200)
		r := rawRec{
			key: fmt.Sprintf("k%d", rng.IntN(4)),
			v:   float64(rng.IntN(100_000)+1) / 4, // multiples of 1/4: float sums are exact
			u:   fmt.Sprintf("user-%d", rng.IntN(3000)),
			ep:  fmt.Sprintf("/ep/%d", zipf.Uint64()),
		}
		if rng.IntN(200) == 0 {
			r.key = "rare" // a few records a minute: some minutes end quiet
		}
		switch x := rng.IntN(100); {
		case i == gapAt || maxSeen == 0 || x >= 5:
			r.ts = clock - rng.Int64N(chainGrace) // > maxSeen - grace: on time
			if i == gapAt {
				r.ts = clock
			}
			maxSeen = max(maxSeen, r.ts)
		default:
			// A window ending at or before maxSeen - grace.
			r.ts = floorTo(maxSeen-chainGrace, chainA) - 1 - rng.Int64N(20_000)
			r.late = true
		}
		recs = append(recs, r)
	}
	return recs, gapAt, gapWall
}

func floorTo(ts, size int64) int64 { return topology.FloorDiv(ts, size) * size }

// followCall is one call of B's Follow: A's final results (rows cloned)
// and A's ClosedThrough.
type followCall struct {
	rs      []Result
	through int64
}

// chainRig drives the tasks of rollups a, b and c of one partition.
type chainRig struct {
	tb         testing.TB
	db         *state.DB
	pa, pb, pc *Pipeline
	a, b, c    *Task
	fa, fb, fc Effects
	now        time.Time
	off        int64 // the next record's offset
	prevTS     int64 // the highest event time fed

	lateIdx  []int // records A reported late (by offset)
	log      []followCall
	bFinal   []Result // non-silent final results of b, rows cloned
	cFinal   []Result
	bUpdates [][]Result // per commit, b's update results
	bAlerts  []AlertTransition
	bSilent  int // silent final results of b (merged by c)
}

func newChainRig(tb testing.TB, bExtra string) *chainRig {
	r := &chainRig{tb: tb, now: scenarioDay.Add(12 * time.Hour)}
	r.pa, r.pb, r.pc = chainSpecs(tb, bExtra)
	db, err := state.OpenMem()
	if err != nil {
		tb.Fatal(err)
	}
	r.db = db
	tb.Cleanup(func() {
		if err := db.Close(); err != nil {
			tb.Errorf("close: %v", err)
		}
	})
	r.a = r.task(r.pa)
	r.b = r.task(r.pb)
	r.c = r.task(r.pc)
	return r
}

// task makes the task of p from its store's checkpoint (empty at first),
// as after a restart. maxCached 1: every commit drops the rows from the
// cache, so merges also run on rows decoded from Pebble.
func (r *chainRig) task(p *Pipeline) *Task {
	ts := r.db.TaskStore(p.Spec().Store, 0, p.AggSpecs(), 1)
	cp, _, err := ts.Checkpoint()
	if err != nil {
		r.tb.Fatal(err)
	}
	t := NewTask(p, ts, cp, r.now)
	if err := t.Rebuild(true); err != nil {
		r.tb.Fatal(err)
	}
	if err := t.LoadAlerts(); err != nil {
		r.tb.Fatal(err)
	}
	return t
}

func cloneResults(rs []Result) []Result {
	out := make([]Result, len(rs))
	for i, x := range rs {
		x.Row = x.Row.Clone()
		out[i] = x
	}
	return out
}

// follow hands A's last effects down the chain, as the shell does after
// every call of A that may close windows.
func (r *chainRig) follow() {
	r.tb.Helper()
	r.log = append(r.log, followCall{rs: cloneResults(r.fa.Results), through: r.a.ClosedThrough()})
	before := r.b.StreamTime()
	if err := r.b.Follow(r.fa.Results, r.a.ClosedThrough(), &r.fb); err != nil {
		r.tb.Fatalf("b.Follow: %v", err)
	}
	if r.b.StreamTime() < before {
		r.tb.Fatalf("b's stream time went back from %d to %d", before, r.b.StreamTime())
	}
	if want := max(before, r.a.ClosedThrough()); r.b.StreamTime() != want {
		r.tb.Fatalf("b's stream time is %d after Follow, want %d (a closed through %d)", r.b.StreamTime(), want, r.a.ClosedThrough())
	}
	r.collectB()
	r.followC()
}

func (r *chainRig) collectB() {
	for _, x := range r.fb.Results {
		if !x.Final {
			r.tb.Fatalf("b: non-final result %v outside Flush", x.Window)
		}
		if x.Silent {
			r.bSilent++
			continue
		}
		x.Row = x.Row.Clone()
		r.bFinal = append(r.bFinal, x)
	}
	r.bAlerts = append(r.bAlerts, r.fb.Alerts...)
}

func (r *chainRig) followC() {
	r.tb.Helper()
	if err := r.c.Follow(r.fb.Results, r.b.ClosedThrough(), &r.fc); err != nil {
		r.tb.Fatalf("c.Follow: %v", err)
	}
	for _, x := range r.fc.Results {
		if x.Final && !x.Silent {
			x.Row = x.Row.Clone()
			r.cFinal = append(r.cFinal, x)
		}
	}
}

func (r *chainRig) process(rec rawRec) {
	r.tb.Helper()
	in := state.SourcePartition{Topic: "in"}
	fields := map[string]any{"k": rec.key, "v": rec.v, "u": rec.u, "ep": rec.ep}
	key, _, err := groupKey(fields, []string{"k"})
	if err != nil {
		r.tb.Fatal(err)
	}
	x := Record{Input: in, Offset: r.off, Source: in, SourceOffset: r.off, Key: key, Time: rec.ts, Fields: fields}
	if err := r.a.Process(x, r.now, &r.fa); err != nil {
		r.tb.Fatalf("a.Process: %v", err)
	}
	if r.fa.Late != nil {
		r.lateIdx = append(r.lateIdx, int(r.off))
	}
	r.off++
	r.follow()
}

// punctuate punctuates every task, as the shell does on its timer: A may
// idle-advance and close windows; B and C must not move their time.
func (r *chainRig) punctuate() {
	r.tb.Helper()
	// The shell's report that A's input is caught up (processor.Local
	// does so before every Punctuate): a task restored from a checkpoint
	// waits for one before its input may count as idle.
	r.a.ObserveWatermark(Watermark{Input: state.SourcePartition{Topic: "in"}, CaughtUp: true}, r.now)
	if err := r.a.Punctuate(r.now, &r.fa); err != nil {
		r.tb.Fatalf("a.Punctuate: %v", err)
	}
	r.follow()
	for _, t := range []*Task{r.b, r.c} {
		before := t.StreamTime()
		fx := &r.fb
		if t == r.c {
			fx = &r.fc
		}
		if err := t.Punctuate(r.now, fx); err != nil {
			r.tb.Fatalf("Punctuate: %v", err)
		}
		if t.StreamTime() != before {
			r.tb.Fatalf("Punctuate moved a chained task's stream time from %d to %d", before, t.StreamTime())
		}
		if len(fx.Results) != 0 {
			r.tb.Fatalf("Punctuate of a chained task closed %d windows Follow had not", len(fx.Results))
		}
		if t == r.b {
			r.bAlerts = append(r.bAlerts, fx.Alerts...)
		}
	}
}

// commit flushes and commits every task, as the shell's commit does. B's
// update results (emit: update) are handed to C too: Follow ignores them.
func (r *chainRig) commit() { r.commitTasks(r.a, r.b, r.c) }

// commitTasks commits some of the tasks only (a crash between the
// commits of one partition's tasks).
func (r *chainRig) commitTasks(ts ...*Task) {
	r.tb.Helper()
	for _, t := range ts {
		var fx Effects
		changes, ok, err := t.Flush(&fx)
		if err != nil {
			r.tb.Fatal(err)
		}
		if t == r.b {
			r.bUpdates = append(r.bUpdates, cloneResults(fx.Results))
			r.fb = fx
			r.followC()
		}
		if !ok {
			continue
		}
		if err := t.store.Commit(changes, t.Checkpoint()); err != nil {
			r.tb.Fatal(err)
		}
		t.Flushed()
	}
}

// run feeds recs (from genChainRecords) with the wall clock moving with
// arrivals, punctuates every 20 records and through the pause, commits
// every 250 records, and ends with an advance far enough to close every
// window.
func (r *chainRig) run(recs []rawRec, gapAt int, gapWall time.Duration) {
	r.feed(recs, 0, len(recs), gapAt, gapWall, 250)
	r.finish()
}

// feed feeds recs[from:to] as run does, committing every commitEvery
// records (never if 0).
func (r *chainRig) feed(recs []rawRec, from, to, gapAt int, gapWall time.Duration, commitEvery int) {
	for i := from; i < to; i++ {
		rec := recs[i]
		if i == gapAt {
			for step := 5 * time.Second; step <= gapWall; step += 5 * time.Second {
				r.now = r.now.Add(5 * time.Second)
				r.punctuate()
			}
		} else if i > 0 {
			// Arrivals follow event time; never back.
			r.now = r.now.Add(time.Duration(max(0, rec.ts-r.prevTS)) * time.Millisecond)
		}
		r.prevTS = max(r.prevTS, rec.ts)
		r.off = int64(i)
		r.process(rec)
		if i%20 == 19 {
			r.punctuate()
		}
		if commitEvery > 0 && i%commitEvery == commitEvery-1 {
			r.commit()
		}
	}
}

// finish advances the wall clock far enough to close every window, and
// commits.
func (r *chainRig) finish() {
	r.now = r.now.Add(10_000 * time.Hour)
	r.punctuate()
	r.commit()
}

// expected is the plain-loop aggregate of one key and window.
type expected struct {
	n          int
	sum        float64 // exact: values are multiples of 1/4 well below 2^50
	lo, hi     float64
	vals       []float64
	users, eps map[string]int
}

// expectWindows aggregates the records that are not late into windows of
// size.
func expectWindows(recs []rawRec, size int64) map[state.WindowKey]*expected {
	out := make(map[state.WindowKey]*expected)
	for _, r := range recs {
		if r.late {
			continue
		}
		key, _, _ := groupKey(map[string]any{"k": r.key}, []string{"k"})
		s := floorTo(r.ts, size)
		wk := state.WindowKey{Key: key, Start: s, End: s + size}
		e := out[wk]
		if e == nil {
			e = &expected{lo: r.v, hi: r.v, users: map[string]int{}, eps: map[string]int{}}
			out[wk] = e
		}
		e.n++
		e.sum += r.v
		e.lo, e.hi = min(e.lo, r.v), max(e.hi, r.v)
		e.vals = append(e.vals, r.v)
		e.users[r.u]++
		e.eps[r.ep]++
	}
	return out
}

// checkResults compares final results with the plain-loop aggregates:
// every expected window exactly once, nothing else; count, sum, min, max
// exact, mean within rounding, p99 within the sketch's relative accuracy
// of the exact rank value, distinct within three standard errors of the
// HyperLogLog, top_k within its stated bound. It returns the largest
// top_k bound seen.
func checkResults(t *testing.T, name string, got []Result, want map[state.WindowKey]*expected) uint64 {
	t.Helper()
	seen := make(map[state.WindowKey]bool)
	var maxBound uint64
	for _, r := range got {
		wk := r.Window
		if seen[wk] {
			t.Errorf("%s: window %v emitted twice", name, wk)
			continue
		}
		seen[wk] = true
		e := want[wk]
		if e == nil {
			t.Errorf("%s: unexpected window %v", name, wk)
			continue
		}
		row := r.Row
		val := func(i int) float64 {
			v, ok := row.Value(i)
			if !ok {
				t.Errorf("%s %v: aggregate %d has no value", name, wk, i)
			}
			return v
		}
		if v := val(aggN); v != float64(e.n) {
			t.Errorf("%s %v: count %v, want %d", name, wk, v, e.n)
		}
		if v := val(aggTotal); v != e.sum {
			t.Errorf("%s %v: sum %v, want %v", name, wk, v, e.sum)
		}
		if v := val(aggLo); v != e.lo {
			t.Errorf("%s %v: min %v, want %v", name, wk, v, e.lo)
		}
		if v := val(aggHi); v != e.hi {
			t.Errorf("%s %v: max %v, want %v", name, wk, v, e.hi)
		}
		if v, m := val(aggAvg), e.sum/float64(e.n); math.Abs(v-m) > 1e-12*math.Abs(m) {
			t.Errorf("%s %v: mean %v, want %v", name, wk, v, m)
		}
		// The rank rule and accuracy of state.RelativeAccuracy.
		sorted := slices.Sorted(slices.Values(e.vals))
		x := sorted[int(math.Floor(0.99*float64(len(sorted)-1)))]
		if v := val(aggP99); math.Abs(v-x) > state.RelativeAccuracy*math.Abs(x)*(1+1e-9) {
			t.Errorf("%s %v: p99 %v, exact rank value %v: off by more than %v", name, wk, v, x, state.RelativeAccuracy)
		}
		// state.HLLPrecision: standard error 1.04/sqrt(2^14).
		if v, d := val(aggUsers), float64(len(e.users)); math.Abs(v-d) > 3*1.04/math.Sqrt(1<<state.HLLPrecision)*d {
			t.Errorf("%s %v: distinct %v, exact %v: beyond three standard errors", name, wk, v, d)
		}
		// top_k: every reported count c satisfies c <= f <= c+bound, and
		// a value whose true count exceeds the k-th reported count plus
		// the bound is reported.
		top, bound := row.TopK(aggTop), row.TopKBound(aggTop)
		maxBound = max(maxBound, bound)
		if limit := uint64(e.n) / uint64(state.TopKCapacity(3)+1); bound > limit {
			t.Errorf("%s %v: top_k bound %d above n/(capacity+1) = %d", name, wk, bound, limit)
		}
		if len(top) != min(3, len(e.eps)) {
			t.Errorf("%s %v: top_k reports %d values, want %d", name, wk, len(top), min(3, len(e.eps)))
		}
		reported := make(map[string]bool)
		for _, te := range top {
			reported[te.Value] = true
			f := uint64(e.eps[te.Value])
			if te.Count > f || f > te.Count+bound {
				t.Errorf("%s %v: top_k %s count %d, true %d, bound %d", name, wk, te.Value, te.Count, f, bound)
			}
		}
		if len(top) > 0 {
			last := top[len(top)-1].Count
			for ep, f := range e.eps {
				if !reported[ep] && uint64(f) > last+bound {
					t.Errorf("%s %v: top_k misses %s (true count %d > %d+%d)", name, wk, ep, f, last, bound)
				}
			}
		}
	}
	for wk := range want {
		if !seen[wk] {
			t.Errorf("%s: window %v not emitted", name, wk)
		}
	}
	return maxBound
}

// checkLate checks that A reported exactly the records late by
// construction.
func checkLate(t *testing.T, recs []rawRec, lateIdx []int) {
	t.Helper()
	var want []int
	for i, r := range recs {
		if r.late {
			want = append(want, i)
		}
	}
	if !slices.Equal(lateIdx, want) {
		t.Fatalf("a reported %d late records, %d are late by construction", len(lateIdx), len(want))
	}
	if len(want) < 100 {
		t.Fatalf("only %d late records generated", len(want))
	}
}

// TestChainedRollupsMatchRawRecords: A (10 s, grace 2 s) fed with random
// records, B (1 min) from A, C (5 min) from B: B's and C's final results
// equal the aggregates of the raw records that are not late, computed with
// plain loops (sketches within their stated error); A's late records are
// in neither.
func TestChainedRollupsMatchRawRecords(t *testing.T) {
	t.Parallel()
	for _, seed := range []uint64{1, 2} {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			recs, gapAt, gapWall := genChainRecords(rand.New(rand.NewPCG(seed, 20)))
			r := newChainRig(t, "")
			r.run(recs, gapAt, gapWall)
			checkLate(t, recs, r.lateIdx)
			checkResults(t, "b", r.bFinal, expectWindows(recs, chainB))
			if bound := checkResults(t, "c", r.cFinal, expectWindows(recs, chainC)); bound == 0 {
				t.Errorf("c: no top_k bound above 0: the test did not exercise merges beyond the summary's capacity")
			}
			t.Logf("%d records, %d late; b: %d results, c: %d results", len(recs), len(r.lateIdx), len(r.bFinal), len(r.cFinal))
			for _, tk := range []*Task{r.b, r.c} {
				if tk.OpenWindows() != 0 {
					t.Errorf("%d windows still open after the final advance", tk.OpenWindows())
				}
			}
		})
	}
}

// encodedResults renders results as key, window and encoded row, for
// exact comparison.
func encodedResults(rs []Result) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = fmt.Sprintf("%s [%d,%d) %x", r.Window.Key, r.Window.Start, r.Window.End, r.Row.AppendBinary(nil))
	}
	return out
}

func renderTransitions(ts []AlertTransition) []string {
	out := make([]string, len(ts))
	for i, tr := range ts {
		out[i] = fmt.Sprintf("%s %s %s at %d", tr.Alert.Rule, tr.Alert.State, tr.Key, tr.At)
	}
	return out
}

// chainAlert is a threshold rule on B: the mean of a minute above 12,600
// (values are uniform in (0, 25,000]: about half the minutes).
const chainAlert = `alerts:
  rules:
    - {name: slow, kind: threshold, condition: 'avg > 12600'}
`

// TestChainedRollupRestartReplay: B is committed mid-stream, loses what it
// did after that commit (a crash: its store's cache is dropped, the
// results it emitted since are aborted), is rebuilt from its checkpoint
// and store, and is fed A's results again from well before the commit
// (a replay of the finer rollup): its final results and alert transitions
// equal the run without restart, byte for byte.
func TestChainedRollupRestartReplay(t *testing.T) {
	t.Parallel()
	recs, gapAt, gapWall := genChainRecords(rand.New(rand.NewPCG(3, 20)))
	ref := newChainRig(t, chainAlert)
	ref.run(recs, gapAt, gapWall)
	if len(ref.bAlerts) == 0 {
		t.Fatal("the reference run published no alert: the test checks nothing about them")
	}

	for _, cut := range []int{len(ref.log) / 3, len(ref.log) / 2, len(ref.log) - 10} {
		t.Run(fmt.Sprint(cut), func(t *testing.T) {
			r := newChainRig(t, chainAlert)
			var finals []Result
			var alerts []AlertTransition
			feed := func(calls []followCall) (fs []Result, as []AlertTransition) {
				for _, fc := range calls {
					if err := r.b.Follow(fc.rs, fc.through, &r.fb); err != nil {
						t.Fatalf("Follow: %v", err)
					}
					for _, x := range r.fb.Results {
						if !x.Silent {
							x.Row = x.Row.Clone()
							fs = append(fs, x)
						}
					}
					as = append(as, r.fb.Alerts...)
				}
				return fs, as
			}
			commit := func() {
				var fx Effects
				changes, ok, err := r.b.Flush(&fx)
				if err != nil {
					t.Fatal(err)
				}
				if ok {
					if err := r.b.store.Commit(changes, r.b.Checkpoint()); err != nil {
						t.Fatal(err)
					}
					r.b.Flushed()
				}
			}
			// Committed up to cut: what it emitted stays published.
			fs, as := feed(ref.log[:cut])
			commit()
			finals, alerts = append(finals, fs...), append(alerts, as...)
			// Done after the commit, then lost in a crash: its outputs
			// were never committed (exactly-once aborts them).
			feed(ref.log[cut:min(cut+40, len(ref.log))])
			r.b = r.task(r.pb)
			// Replayed from well before the commit: duplicates first.
			from := max(0, cut-200)
			fs, as = feed(ref.log[from:])
			finals, alerts = append(finals, fs...), append(alerts, as...)

			if got, want := encodedResults(finals), encodedResults(ref.bFinal); !slices.Equal(got, want) {
				t.Errorf("final results after restart differ: %d results, want %d\n%s", len(got), len(want), firstDiff(got, want))
			}
			if got, want := renderTransitions(alerts), renderTransitions(ref.bAlerts); !slices.Equal(got, want) {
				t.Errorf("alert transitions after restart differ: %d, want %d\n%s", len(got), len(want), firstDiff(got, want))
			}
		})
	}
}

func firstDiff(got, want []string) string {
	for i := range max(len(got), len(want)) {
		var g, w string
		if i < len(got) {
			g = got[i]
		}
		if i < len(want) {
			w = want[i]
		}
		if g != w {
			return fmt.Sprintf("first difference at %d:\n  got  %.200s\n  want %.200s", i, g, w)
		}
	}
	return ""
}

// TestChainedRollupEmitUpdateAndAlerts: B with emit: update and a
// threshold rule. Each commit writes exactly the B windows that received a
// result of A since the last commit and are still open; the last value
// written of every window (its last update, or its final result when it
// changed after that) is the plain-loop aggregate; C, which merges B's
// final results, silent ones included, still matches the raw records; and
// the rule's transitions are those of the plain-loop means, window by
// window (a minute without records counts as false).
func TestChainedRollupEmitUpdateAndAlerts(t *testing.T) {
	t.Parallel()
	recs, gapAt, gapWall := genChainRecords(rand.New(rand.NewPCG(4, 20)))
	r := newChainRig(t, "emit: update\n"+chainAlert)

	// Wrap commit: before each, the windows expected dirty from B's
	// inputs since the last commit.
	var wantDirty [][]state.WindowKey
	hit := map[state.WindowKey]bool{}
	logged := 0
	var closedThrough int64
	noteInputs := func() {
		for _, fc := range r.log[logged:] {
			for _, x := range fc.rs {
				if x.Final {
					s := floorTo(x.Window.Start, chainB)
					hit[state.WindowKey{Key: x.Window.Key, Start: s, End: s + chainB}] = true
				}
			}
			closedThrough = max(closedThrough, fc.through)
		}
		logged = len(r.log)
	}
	var prev int64
	commit := func() {
		noteInputs()
		var ws []state.WindowKey
		for wk := range hit {
			if wk.End > closedThrough { // still open in B (grace 0)
				ws = append(ws, wk)
			}
		}
		slices.SortFunc(ws, CompareWindows)
		wantDirty = append(wantDirty, ws)
		clear(hit)
		r.commit()
	}
	for i, rec := range recs {
		if i == gapAt {
			for step := 5 * time.Second; step <= gapWall; step += 5 * time.Second {
				r.now = r.now.Add(5 * time.Second)
				r.punctuate()
			}
		} else if i > 0 {
			r.now = r.now.Add(time.Duration(max(0, rec.ts-prev)) * time.Millisecond)
		}
		prev = max(prev, rec.ts)
		r.process(rec)
		if i%20 == 19 {
			r.punctuate()
		}
		if i%250 == 249 {
			commit()
		}
	}
	r.now = r.now.Add(10_000 * time.Hour)
	r.punctuate()
	commit()
	checkLate(t, recs, r.lateIdx)

	// Updates: exactly the windows changed since the last commit.
	if len(r.bUpdates) != len(wantDirty) {
		t.Fatalf("%d commits with updates, want %d", len(r.bUpdates), len(wantDirty))
	}
	last := make(map[state.WindowKey]Result)
	for i, us := range r.bUpdates {
		var got []state.WindowKey
		for _, u := range us {
			if u.Final {
				t.Errorf("update result %v is final", u.Window)
			}
			got = append(got, u.Window)
			last[u.Window] = u
		}
		if !slices.Equal(got, wantDirty[i]) {
			t.Errorf("commit %d: updates of %d windows, want %d", i, len(got), len(wantDirty[i]))
		}
	}
	nonEmpty := 0
	for _, ws := range wantDirty {
		if len(ws) > 0 {
			nonEmpty++
		}
	}
	t.Logf("%d commits, %d with updates; %d silent and %d written final results; %d transitions", len(wantDirty), nonEmpty, r.bSilent, len(r.bFinal), len(r.bAlerts))
	// A non-silent final result is the window's last write.
	for _, f := range r.bFinal {
		last[f.Window] = f
	}
	if r.bSilent == 0 || len(r.bFinal) == 0 {
		t.Errorf("%d silent and %d written final results: want both kinds", r.bSilent, len(r.bFinal))
	}
	var lastWrites []Result
	for _, x := range last {
		lastWrites = append(lastWrites, x)
	}
	wantB := expectWindows(recs, chainB)
	checkResults(t, "b (last writes)", lastWrites, wantB)
	checkResults(t, "c", r.cFinal, expectWindows(recs, chainC))

	// The threshold rule, window by window from the plain-loop means.
	var want []string
	byKey := make(map[string][]int64) // window starts with records
	for wk := range wantB {
		byKey[wk.Key] = append(byKey[wk.Key], wk.Start)
	}
	keys := make([]string, 0, len(byKey))
	for k := range byKey {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		starts := slices.Sorted(slices.Values(byKey[k]))
		firing := false
		for s := starts[0]; s <= starts[len(starts)-1]+chainB; s += chainB {
			holds := false
			if e := wantB[state.WindowKey{Key: k, Start: s, End: s + chainB}]; e != nil {
				holds = e.sum/float64(e.n) > 12600
			}
			if holds != firing {
				firing = holds
				st := "resolved"
				if holds {
					st = "firing"
				}
				want = append(want, fmt.Sprintf("slow %s %s at %d", st, k, s+chainB))
			}
		}
	}
	got := renderTransitions(r.bAlerts)
	slices.SortStableFunc(got, func(a, b string) int { return strings.Compare(alertKey(a), alertKey(b)) })
	if !slices.Equal(got, want) {
		t.Errorf("alert transitions of b: %d, want %d\n%s", len(got), len(want), firstDiff(got, want))
	}
	if len(want) < 4 {
		t.Errorf("only %d transitions expected: the test checks little", len(want))
	}
}

// alertKey orders rendered transitions by key (transitions of one key keep
// their order).
func alertKey(s string) string {
	f := strings.Fields(s)
	return f[2]
}

// TestFollowRules: Follow on a task that is not chained, results that end
// after through, non-final results, duplicates, and a chained task that
// neither Punctuate nor a watermark moves.
func TestFollowRules(t *testing.T) {
	t.Parallel()
	r := newChainRig(t, "")
	if err := r.a.Follow(nil, 0, &r.fa); err != ErrNotChained {
		t.Errorf("Follow on a rollup fed by records: %v, want ErrNotChained", err)
	}
	key, _, _ := groupKey(map[string]any{"k": "x"}, []string{"k"})
	base := floorTo(scenarioDay.Add(12*time.Hour).UnixMilli(), chainC)
	row := state.NewRow(r.pa.AggSpecs())
	row.Add(aggN, 1)
	res := func(start int64, final bool) Result {
		return Result{Window: state.WindowKey{Key: key, Start: start, End: start + chainA}, Row: row, Final: final}
	}
	if err := r.b.Follow([]Result{res(base, true)}, base+chainA-1, &r.fb); err == nil {
		t.Error("Follow of a result ending after through: no error")
	}
	// A window across two of b's (not nested: topology refuses such a
	// chain), after a good one in the same call.
	across := Result{Window: state.WindowKey{Key: key, Start: base + chainB - chainA/2, End: base + chainB + chainA/2}, Row: row, Final: true}
	if err := r.b.Follow([]Result{res(base, true), across}, base+chainC, &r.fb); err == nil {
		t.Error("Follow of a result across two windows: no error")
	}
	if r.b.OpenWindows() != 0 || r.b.StreamTime() != 0 {
		t.Errorf("a refused Follow changed the task: %d open windows, stream time %d", r.b.OpenWindows(), r.b.StreamTime())
	}
	// Non-final: ignored.
	if err := r.b.Follow([]Result{res(base, false)}, base, &r.fb); err != nil || r.b.OpenWindows() != 0 {
		t.Errorf("Follow of an update: err %v, %d open windows; want it ignored", err, r.b.OpenWindows())
	}
	if err := r.b.Follow([]Result{res(base, true), res(base+chainA, true)}, base+2*chainA, &r.fb); err != nil {
		t.Fatal(err)
	}
	// The same again (a replay), and through going back: nothing changes.
	if err := r.b.Follow([]Result{res(base, true), res(base+chainA, true)}, base+chainA, &r.fb); err != nil {
		t.Fatal(err)
	}
	if r.b.StreamTime() != base+2*chainA {
		t.Errorf("stream time %d, want %d (never back)", r.b.StreamTime(), base+2*chainA)
	}
	// Punctuate far into the future, also on a task restored from a
	// checkpoint (whose idle advance would count from its stream time).
	r.commit()
	for _, restored := range []bool{false, true} {
		if restored {
			r.b = r.task(r.pb)
		}
		r.now = r.now.Add(10_000 * time.Hour)
		if err := r.b.Punctuate(r.now, &r.fb); err != nil {
			t.Fatal(err)
		}
		if r.b.StreamTime() != base+2*chainA || len(r.fb.Results) != 0 {
			t.Errorf("Punctuate of a chained task (restored %v): stream time %d, %d results; want %d, none",
				restored, r.b.StreamTime(), len(r.fb.Results), base+2*chainA)
		}
	}
	r.b.ObserveWatermark(Watermark{Input: state.SourcePartition{Topic: "in"}, Time: base + chainC, CaughtUp: true}, r.now)
	if r.b.StreamTime() != base+2*chainA {
		t.Errorf("a watermark moved a chained task's stream time to %d", r.b.StreamTime())
	}
	if err := r.b.Follow(nil, base+chainB, &r.fb); err != nil {
		t.Fatal(err)
	}
	if len(r.fb.Results) != 1 {
		t.Fatalf("%d results at the close of the minute, want 1", len(r.fb.Results))
	}
	if n, _ := r.fb.Results[0].Row.Value(aggN); n != 2 {
		t.Errorf("count %v after a replayed result, want 2 (each of the two merged once)", n)
	}
	if r.b.ClosedThrough() != base+chainB {
		t.Errorf("ClosedThrough %d, want stream time %d (grace 0)", r.b.ClosedThrough(), base+chainB)
	}
	if got, want := r.a.ClosedThrough(), r.a.StreamTime()-chainGrace; got != want {
		t.Errorf("a's ClosedThrough %d, want stream time minus grace %d", got, want)
	}
	defer func() {
		if recover() == nil {
			t.Error("Process on a chained task did not panic")
		}
	}()
	_ = r.b.Process(Record{Key: key, Time: base}, r.now, &r.fb)
}

// TestChainedAbsenceRule: an absence rule on a chained rollup sees each
// merged result as one arrival of its key at the last instant of the
// finer window (End-1): it fires once stream time (the finer rollup's
// closed-through time) passes that plus "for", and resolves when the
// key's next result is merged.
func TestChainedAbsenceRule(t *testing.T) {
	t.Parallel()
	r := newChainRig(t, "alerts:\n  rules:\n    - {name: quiet, kind: absence, for: 2m}\n")
	key, _, _ := groupKey(map[string]any{"k": "x"}, []string{"k"})
	base := floorTo(scenarioDay.Add(12*time.Hour).UnixMilli(), chainC)
	row := state.NewRow(r.pa.AggSpecs())
	row.Add(aggN, 1)
	res := func(start int64) Result {
		return Result{Window: state.WindowKey{Key: key, Start: start, End: start + chainA}, Row: row, Final: true}
	}
	const forMs = 120_000
	var got []AlertTransition
	follow := func(rs []Result, through int64) {
		t.Helper()
		if err := r.b.Follow(rs, through, &r.fb); err != nil {
			t.Fatal(err)
		}
		got = append(got, r.fb.Alerts...)
	}
	follow([]Result{res(base)}, base+chainA)
	follow([]Result{res(base + chainA)}, base+2*chainA)
	lastSeen := base + 2*chainA - 1 // the last instant of the last window with records
	for through := base + 2*chainA; through < lastSeen+forMs; through += 1000 {
		follow(nil, through)
	}
	if len(got) != 0 {
		t.Fatalf("%d transitions before stream time reached the last window's end plus for", len(got))
	}
	follow(nil, lastSeen+forMs)
	again := base + 15*chainA
	follow([]Result{res(again)}, again+chainA)
	want := []string{
		fmt.Sprintf("quiet firing %s at %d", key, lastSeen+forMs),
		fmt.Sprintf("quiet resolved %s at %d", key, again+chainA-1),
	}
	if g := renderTransitions(got); !slices.Equal(g, want) {
		t.Errorf("transitions %q, want %q", g, want)
	}
}

// TestClosedThroughWaitsForClose: a watermark report moves A's stream time
// without closing its windows, and a Process that returns early (here a
// filtered record) closes none either: A's ClosedThrough stays below the
// window still open, so B does not move past it, and A's result, once it
// comes, is merged rather than skipped as one merged before.
func TestClosedThroughWaitsForClose(t *testing.T) {
	t.Parallel()
	r := newChainRig(t, "")
	base := floorTo(scenarioDay.Add(12*time.Hour).UnixMilli(), chainC)
	in := state.SourcePartition{Topic: "in"}
	key, _, _ := groupKey(map[string]any{"k": "x"}, []string{"k"})
	fields := map[string]any{"k": "x", "v": 1.0, "u": "u", "ep": "/"}
	if err := r.a.Process(Record{Input: in, Source: in, Key: key, Time: base + 1000, Fields: fields}, r.now, &r.fa); err != nil {
		t.Fatal(err)
	}
	r.follow()
	// A's window [base, base+10s) is due at base+12s: the watermark goes
	// past it.
	r.a.ObserveWatermark(Watermark{Input: in, Time: base + chainB, CaughtUp: true}, r.now)
	if r.a.StreamTime() != base+chainB {
		t.Fatalf("a's stream time %d, want the watermark %d", r.a.StreamTime(), base+chainB)
	}
	if got := r.a.ClosedThrough(); got >= base+chainA {
		t.Errorf("a's ClosedThrough %d with window [%d,%d) due but open", got, base, base+chainA)
	}
	if err := r.a.Process(Record{Input: in, Offset: 1, Source: in, SourceOffset: 1, Key: key, Time: base + 2000, Filtered: true}, r.now, &r.fa); err != nil {
		t.Fatal(err)
	}
	r.follow()
	if r.b.StreamTime() >= base+chainA {
		t.Errorf("b moved to %d, past a's open window [%d,%d)", r.b.StreamTime(), base, base+chainA)
	}
	r.fa = Effects{}
	if err := r.a.CloseDue(&r.fa); err != nil {
		t.Fatal(err)
	}
	if len(r.fa.Results) != 1 {
		t.Fatalf("a closed %d windows, want 1", len(r.fa.Results))
	}
	r.follow()
	if got, want := r.a.ClosedThrough(), base+chainB-chainGrace; got != want {
		t.Errorf("a's ClosedThrough %d after the close, want stream time minus grace %d", got, want)
	}
	r.now = r.now.Add(10_000 * time.Hour)
	r.punctuate()
	if len(r.bFinal) != 1 {
		t.Fatalf("b emitted %d results, want 1", len(r.bFinal))
	}
	if n, _ := r.bFinal[0].Row.Value(aggN); n != 1 {
		t.Errorf("b's count %v, want 1: a's result was skipped", n)
	}
}

// TestChainedRollupsRestartWithSource: the tasks of A, B and C of a
// partition are committed together, then B and C alone (the shell commits
// chained tasks first), then all three crash; rebuilt from their stores,
// A reads its input again from before its checkpoint (duplicates it
// skips), re-emits the results of the windows it closes after its
// checkpoint, B and C skip what they merged before: their final results
// (those published before their last commit, then all after the restart)
// equal the run without a crash, byte for byte.
func TestChainedRollupsRestartWithSource(t *testing.T) {
	t.Parallel()
	recs, gapAt, gapWall := genChainRecords(rand.New(rand.NewPCG(5, 20)))
	ref := newChainRig(t, "")
	ref.run(recs, gapAt, gapWall)

	r := newChainRig(t, "")
	r.feed(recs, 0, 4000, gapAt, gapWall, 0)
	r.commit()
	r.feed(recs, 4000, 4500, gapAt, gapWall, 0)
	r.commitTasks(r.b, r.c)
	bMark, cMark := len(r.bFinal), len(r.cFinal)
	r.feed(recs, 4500, 4700, gapAt, gapWall, 0)
	// Crash: what was not committed is lost, and its outputs aborted.
	r.bFinal, r.cFinal = r.bFinal[:bMark], r.cFinal[:cMark]
	r.a, r.b, r.c = r.task(r.pa), r.task(r.pb), r.task(r.pc)
	if r.b.StreamTime() <= r.a.ClosedThrough() {
		t.Fatalf("b restored at %d, not ahead of a (closed through %d): the test checks less than it says", r.b.StreamTime(), r.a.ClosedThrough())
	}
	cp, _, err := r.a.store.Checkpoint()
	if err != nil {
		t.Fatal(err)
	}
	from := int(cp.InputNext) - 100
	if from != 3900 {
		t.Fatalf("a restored at input offset %d, want 4000", from+100)
	}
	r.feed(recs, from, len(recs), gapAt, gapWall, 250)
	r.finish()
	for _, c := range []struct {
		name      string
		got, want []Result
	}{{"b", r.bFinal, ref.bFinal}, {"c", r.cFinal, ref.cFinal}} {
		if g, w := encodedResults(c.got), encodedResults(c.want); !slices.Equal(g, w) {
			t.Errorf("%s: final results after the crash differ: %d, want %d\n%s", c.name, len(g), len(w), firstDiff(g, w))
		}
	}
}
