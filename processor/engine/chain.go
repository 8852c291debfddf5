package engine

// Chained rollups (issue 20): a rollup that reads the final results of
// another rollup of the same pipeline (spec.From) and merges them into
// its own, coarser windows, instead of reading records. The shell runs
// both tasks of one partition side by side: after every call of the finer
// task that may close windows (Process, Punctuate, CloseDue) it hands that
// call's results and the finer task's ClosedThrough to the coarser task's
// Follow. Chains may be longer (A → B → C): B's results feed C the same
// way.
//
// Merging. A final result of the finer rollup for window [s, e) of key k
// is merged (state.Row.Merge) into the coarser task's window of k that
// contains s. topology validates that a chained rollup's window is
// tumbling and a multiple of the finer (tumbling) one, so [s, e) lies
// wholly inside it. Row.Merge is exact for count, sum, min, max and mean
// and merges the sketches of quantile (DDSketch), distinct (HyperLogLog)
// and top_k (Misra-Gries), so a coarse window's result is what the same
// aggregates computed over the raw records would give, within each
// sketch's stated error (state/aggregate.go), never an average of
// percentiles.
//
// Time. The coarser task has no input partitions and no watermarks: its
// stream time is the finer task's ClosedThrough, the instant through
// which every finer window has closed. Its windows close by the usual
// rule (end plus grace, grace 0 for a chained rollup): a coarse window
// closes exactly when the last finer window inside it has closed, so the
// chain needs no extra grace. Punctuate does not move its time (no idle
// advance: the finer task's idle advance reaches it through Follow).
//
// Exactly once. The finer task closes its windows in order of end (a
// later call closes only windows ending after its ClosedThrough, which
// stays below any window still open, see ClosedThrough), and
// Follow merges a result only if its window ends after the coarser task's
// stream time, then moves stream time to through. So at every moment the
// merged results are exactly those ending at or before stream time, and
// the checkpoint (whose StreamTime is committed with the rows) says what
// the store holds: after a restart, a replay of the finer task that
// re-emits results the coarser task merged before is skipped, and nothing
// counts twice. The coarser task's committed state may be ahead of the
// finer one's (the finer task's replay re-emits results it skips) but
// never behind it (results the finer task does not emit again would be
// lost): commit both together, or the coarser first.
// A late record of the finer rollup never reaches the coarser one: it is
// late there, and not in any final result.
//
// Alert rules on a chained rollup work as on a normal one: its windows
// closing feed the windowed rules (threshold, deviation), and stream time
// drives the time-driven ones. Absence rules (OnRecord) see one arrival
// per merged final result, at the last instant of the finer window
// (End-1): the latest time a record of it can have had, so the alert's
// "no records since" is never before the key's true last record. (The
// window start would make the rule fire up to a whole finer window
// early.) In stream time of the finer rollup, the chained rule fires at
// least its grace, and less than its grace plus one finer window, after
// the finer rollup's own rule would. But the chained rollup learns of a
// record only when the finer window holding it closes: a key silent for
// a little less than "for" (by up to one finer window) may fire and
// resolve as soon as that window's result arrives. Absence rules are best
// put on the rollup that reads the source.

import (
	"errors"
	"fmt"

	"github.com/eddy-streams/eddy/state"
)

// ErrNotChained is returned by Follow on a task whose pipeline does not
// read another rollup.
var ErrNotChained = errors.New("engine: Follow on a task that is not a chained rollup")

// Chained reports whether the pipeline is a chained rollup (spec.From != ""): its
// tasks are fed by Follow, never by Process, and Punctuate does not move their time.
func (p *Pipeline) Chained() bool { return p.chained }

// ClosedThrough is the time through which every window of the task has closed:
// a window whose end is at or before it has closed (for tumbling windows, stream time
// minus grace). Windows close in order of it: a later call closes only windows ending after it.
//
// For session windows, whose end is their last event time, it is stream
// time minus gap, grace and 1 ms (topology.WindowRule.CloseTime).
//
// Windows due by stream time but not closed yet hold it back: stream time
// may move without closing windows (a watermark report; windows close at
// the next Process, Punctuate or CloseDue, and not in a Process that
// returns early for a duplicate, filtered or rejected record), and a task
// following this one must not move past a window whose result it has not
// had. So it is just below the end of the earliest window still open
// when that window is due.
func (t *Task) ClosedThrough() int64 {
	// CloseTime(s, e) - e is the same for every window of a rule: grace
	// for time windows, gap+grace+1 for sessions.
	d := t.p.win.CloseTime(0, 0)
	through := t.streamTime - d
	if t.closeQ.Len() > 0 && t.closeQ.Min() <= t.streamTime {
		through = min(through, t.closeQ.Min()-d-1)
	}
	return through
}

// Follow merges the final results among rs (fx.Results of the task of the rollup this
// task's pipeline reads, in the same partition: same key and aggregates) into this task's
// windows, then moves stream time to through (that task's ClosedThrough) and closes the
// windows due, filling fx (reset first) with this task's results and alert transitions.
// Results already merged before (window end at or before this task's stream time, as
// after a restart that replays the finer rollup) are skipped, so nothing counts twice.
// Non-final results (emit: update of the finer rollup) are ignored.
//
// Silent final results (emit: update wrote them already) are final: they
// are merged. A merged result counts as one arrival of its key at its
// window's last instant (End-1) for absence alert rules. With emit:
// update, merged windows are written at the next Flush, as Process's are.
//
// rs is only read (its rows may belong to the other task's store).
// Follow refuses, changing nothing, a call whose final results break this
// contract: one ending after through, one not inside a window of this
// task, or one inside a window of this task that has closed (the rollup
// it reads did not close its windows in order). ErrNotChained likewise
// changes nothing. Any other error is a store failure: the task's state
// is then undefined and must be rebuilt from the store.
func (t *Task) Follow(rs []Result, through int64, fx *Effects) error {
	fx.reset()
	if !t.p.chained {
		return ErrNotChained
	}
	// Check first, so that a refused call changes nothing.
	for _, r := range rs {
		if !t.follows(r) {
			continue
		}
		wk := t.followWindow(r.Window)
		switch {
		case r.Window.End > through:
			return fmt.Errorf("engine: chained rollup %q: final result of window [%d,%d) ends after the closed-through time %d of the rollup it reads",
				t.p.spec.RollupName, r.Window.Start, r.Window.End, through)
		case r.Window.End > wk.End:
			return fmt.Errorf("engine: chained rollup %q: window [%d,%d) of the rollup it reads is not inside one of its windows (size %d ms)",
				t.p.spec.RollupName, r.Window.Start, r.Window.End, t.p.win.Size)
		case t.closeTime(wk) <= t.streamTime:
			return fmt.Errorf("engine: chained rollup %q: result of window [%d,%d) arrives after window [%d,%d) closed (stream time %d)",
				t.p.spec.RollupName, r.Window.Start, r.Window.End, wk.Start, wk.End, t.streamTime)
		}
	}
	for _, r := range rs {
		if !t.follows(r) {
			continue // an update, or merged before
		}
		wk := t.followWindow(r.Window)
		if t.alerts != nil {
			fx.Alerts = t.alerts.OnRecord(fx.Alerts, wk.Key, r.Window.End-1, t.streamTime)
		}
		if err := t.merge(wk, r.Row); err != nil {
			return err
		}
		t.changed = true
	}
	if through > t.streamTime {
		t.streamTime = through
		t.changed = true // the checkpoint's stream time
	}
	if err := t.closeWindows(fx); err != nil {
		return err
	}
	if t.alerts != nil {
		fx.Alerts = t.alerts.Tick(fx.Alerts, t.streamTime)
	}
	return nil
}

// follows reports whether Follow merges r: a final result, not merged
// before.
func (t *Task) follows(r Result) bool {
	return r.Final && r.Row != nil && r.Window.End > t.streamTime
}

// followWindow is the task's (tumbling) window of the key of fine that
// contains fine's start.
func (t *Task) followWindow(fine state.WindowKey) state.WindowKey {
	starts := t.p.win.AppendStarts(t.startsBuf[:0], fine.Start)
	t.startsBuf = starts
	s := fine.Start // not a time window: NewPipeline refuses it
	if len(starts) > 0 {
		s = starts[len(starts)-1]
	}
	return state.WindowKey{Key: fine.Key, Start: s, End: s + t.p.win.Size}
}

// merge folds src into the window wk (creating it), as update applies a
// record.
func (t *Task) merge(wk state.WindowKey, src *state.Row) error {
	_, tracked := t.open[wk]
	row, err := t.row(wk, tracked)
	if err != nil {
		return err
	}
	row.Merge(src)
	t.put(wk, row, tracked)
	return nil
}
