package engine

// Stream time from watermarks. Every input partition (a partition of a
// source topic) has a watermark: the highest event time read from it. A
// task's stream time is the lowest watermark of the input partitions it
// waits for, so windows wait for the slowest partition: producers that
// send in bursts, or a worker that fails over, do not make on-time records
// late. A task that reads its source partition directly waits for that one
// partition; a task behind the repartition topic waits for every source
// partition, whose watermarks the source stage forwards through the
// repartition topic (the shell's watermark records, and the event times of
// the records themselves).
//
// Idle is not stalled. An input partition that is caught up (nothing to
// read) and whose watermark has not advanced for the idle timeout is left
// out of the minimum. One with records waiting that makes no progress (its
// worker died, it is paused for the schema registry, restoring,
// rebalancing) holds the minimum back for up to the pipeline's max_wait;
// then stream time moves on without it (Effects.MovedOn says so). When
// every input partition is left out, and the task's own input is caught
// up, stream time follows the wall clock from the highest watermark, so
// windows close and absence alerts fire when input stops.
//
// A report is news only while it is fresh. Behind the repartition topic,
// each source partition's report comes from the worker that owns it; a
// worker that dies (or is cut off, or whose transaction holds the
// repartition topic back) stops reporting, and its last report, "caught
// up", goes stale. With ExpireReports, a partition not heard from for the
// given time is no longer taken as caught up: records may wait on it, so
// it holds stream time back as a stalled partition does (up to max_wait,
// counted from its last report or advance), and is never left out as
// idle. Without it, a dead worker's partitions would be idle after the
// idle timeout and their records, read again by the next owner, late.
//
// Stream time never goes back. A partition left out that advances again
// counts again; its records older than stream time by more than the grace
// period are then late.

import (
	"slices"
	"time"

	"github.com/eddy-streams/eddy/state"
)

// Watermark is a report of one input partition's progress, from the shell:
// the highest event time read from it (0 when none), and whether it was
// caught up (no record left to read) when reported.
type Watermark struct {
	Input    state.SourcePartition
	Time     int64
	CaughtUp bool
}

// MovedOn says that stream time moved on without a stalled input partition:
// it had not advanced for Waited (at least the pipeline's max_wait) while
// records waited on it.
type MovedOn struct {
	Input     state.SourcePartition
	Watermark int64 // its watermark (ms), 0 if it never had one
	Waited    time.Duration
}

// mark is what a task knows of one input partition.
type mark struct {
	wm       int64     // watermark (ms); 0 before any event time
	caughtUp bool      // at its last report
	since    time.Time // wall clock of the last advance of wm, or of its first report
	heard    time.Time // wall clock of its last report (zero: none)
	movedOn  bool      // left out after max_wait, until it advances
}

// marks are a task's input partitions and their watermarks.
type marks struct {
	by map[state.SourcePartition]*mark
	// holder is the input partition holding stream time back (the lowest
	// watermark among those counted), valid when hasHolder.
	holder    state.SourcePartition
	hasHolder bool
	// inputCaughtUp: the task's own input (the partition it reads) has no
	// record left to read. Wall-clock time moves stream time only then.
	inputCaughtUp bool
	// reportTTL: a report older than this no longer says its partition is
	// caught up (ExpireReports); 0: reports do not expire.
	reportTTL time.Duration
}

// caughtUp reports whether k's partition counts as caught up at now: its
// last report said so and, when reports expire, that report is fresh.
func (m *marks) caughtUp(k *mark, now time.Time) bool {
	return k.caughtUp && (m.reportTTL == 0 || now.Sub(k.heard) < m.reportTTL)
}

// stalledSince is when k's partition began to hold stream time back
// without progress: its last advance or, for one whose reports went stale
// (its owner stopped reporting), the later of that and its last report.
func (m *marks) stalledSince(k *mark) time.Time {
	if k.caughtUp && m.reportTTL > 0 && k.heard.After(k.since) {
		return k.heard
	}
	return k.since
}

func newMarks(cp map[state.SourcePartition]int64, now time.Time) marks {
	m := marks{by: make(map[state.SourcePartition]*mark, len(cp)), inputCaughtUp: true}
	for in, wm := range cp {
		// Restored: it waits for a report before it may count as idle.
		m.by[in] = &mark{wm: wm, since: now}
	}
	return m
}

// get returns the mark of in, adding it when new. A partition first known
// from a record counts as caught up (the task knows of nothing waiting on
// it); one the shell expects (Expect) waits for its first report.
func (m *marks) get(in state.SourcePartition, now time.Time, caughtUp bool) *mark {
	k := m.by[in]
	if k == nil {
		k = &mark{since: now, caughtUp: caughtUp}
		m.by[in] = k
	}
	return k
}

// advance raises in's watermark to ts; it reports whether it rose.
func (k *mark) advance(ts int64, now time.Time) bool {
	if ts <= k.wm {
		return false
	}
	k.wm, k.since, k.movedOn = ts, now, false
	return true
}

// Expect adds input partitions the task waits for before it has heard of
// them (every partition of the source topics, for a task behind the
// repartition topic): each holds stream time back, as a stalled partition
// does, until it reports.
func (t *Task) Expect(inputs []state.SourcePartition, now time.Time) {
	for _, in := range inputs {
		t.marks.get(in, now, false)
	}
}

// ObserveWatermark applies a report of one input partition's progress:
// stream time moves with it (due windows close at the next Process or
// Punctuate).
func (t *Task) ObserveWatermark(w Watermark, now time.Time) {
	t.ObserveWatermarks([]Watermark{w}, now)
}

// ObserveWatermarks applies several reports at once (a watermark record).
// A chained rollup's task (Pipeline.Chained) ignores them: its time comes
// from Follow only.
func (t *Task) ObserveWatermarks(ws []Watermark, now time.Time) {
	if t.p.chained {
		return
	}
	moved := false
	for _, w := range ws {
		k := t.marks.get(w.Input, now, w.CaughtUp)
		k.caughtUp, k.heard = w.CaughtUp, now
		moved = k.advance(w.Time, now) || moved
	}
	if moved {
		t.updateStreamTime(now, nil)
		t.changed = true // the checkpoint's watermarks
	}
}

// ExpireReports makes reports of input partitions expire after ttl: the
// shell sends one for every partition at least every ttl/3 while the
// partition's owner runs, so a partition not heard from for ttl has lost
// its owner (or the reports cannot be read), and is treated as having
// records waiting, not as caught up. 0 (the default) keeps every report
// until the next: right for a task whose reports come from its own
// process.
func (t *Task) ExpireReports(ttl time.Duration) { t.marks.reportTTL = ttl }

// SetInputCaughtUp says whether the task's own input partition has records
// left to read (or waiting for the schema registry): while it does, the
// wall clock does not move stream time.
func (t *Task) SetInputCaughtUp(ok bool) { t.marks.inputCaughtUp = ok }

// Watermarks returns the task's input partitions and their watermarks (ms).
func (t *Task) Watermarks() map[state.SourcePartition]int64 {
	out := make(map[state.SourcePartition]int64, len(t.marks.by))
	for in, k := range t.marks.by {
		out[in] = k.wm
	}
	return out
}

// HeldBy returns the input partition holding the task's stream time back,
// how long its watermark has not advanced, and whether records wait on it
// (stalled, as opposed to caught up and not yet idle); ok is false when
// none does (no input partition, or every one left out).
func (t *Task) HeldBy(now time.Time) (in state.SourcePartition, waited time.Duration, waiting, ok bool) {
	if !t.marks.hasHolder {
		return in, 0, false, false
	}
	k := t.marks.by[t.marks.holder]
	return t.marks.holder, now.Sub(k.since), !t.marks.caughtUp(k, now), true
}

// observe raises the watermark of rec's source partition to its event
// time, and stream time with it when that partition was the one holding it
// back.
func (t *Task) observe(in state.SourcePartition, ts int64, now time.Time) {
	k := t.marks.get(in, now, true)
	if k.advance(ts, now) && (!t.marks.hasHolder || t.marks.holder == in || len(t.marks.by) == 1) {
		t.updateStreamTime(now, nil)
	}
}

// updateStreamTime sets stream time to the lowest watermark of the input
// partitions that count (never lower than it was). Partitions left out
// after max_wait are appended to fx.MovedOn when fx is non-nil (a
// Punctuate: only then may time-based rules leave partitions out).
func (t *Task) updateStreamTime(now time.Time, fx *Effects) {
	if len(t.marks.by) == 0 {
		// No input partition known (state from before watermarks were
		// kept, or no record yet): the wall clock moves stream time after
		// the idle timeout, from the last record's arrival.
		if fx != nil && t.marks.inputCaughtUp && (t.arrivalSTime > 0 || len(t.open) > 0) {
			t.idleAdvance(now)
		}
		return
	}
	idleTimeout, maxWait := t.p.spec.IdleTimeout, t.p.spec.MaxWait
	var lowest, highest int64
	var highSince time.Time
	counted := false
	var holder state.SourcePartition
	var stalled []state.SourcePartition // past max_wait, not yet left out
	for in, k := range t.marks.by {
		if k.wm > highest || (k.wm == highest && k.since.After(highSince)) {
			highest, highSince = k.wm, k.since
		}
		caughtUp := t.marks.caughtUp(k, now)
		switch {
		case caughtUp && now.Sub(k.since) >= idleTimeout:
			continue // idle
		case k.movedOn:
			continue
		case !caughtUp && now.Sub(t.marks.stalledSince(k)) >= maxWait && fx != nil:
			// Stalled: records wait on it (or its reports stopped). A
			// caught-up partition is never stalled, whatever max_wait
			// says (it may be shorter than the idle timeout): it holds
			// stream time until it is idle.
			stalled = append(stalled, in)
		}
		if !counted || k.wm < lowest || (k.wm == lowest && state.CompareSourcePartitions(in, holder) < 0) {
			lowest, holder, counted = k.wm, in, true
		}
	}
	// Move on without the stalled partitions only when another one makes
	// progress or is idle: when all are stalled (the only partition of a
	// task that reads its source directly, or a whole source paused for
	// the registry) nothing is gained by closing windows while every
	// record waits.
	if len(stalled) > 0 && len(stalled) < len(t.marks.by) {
		slices.SortFunc(stalled, state.CompareSourcePartitions)
		for _, in := range stalled {
			k := t.marks.by[in]
			k.movedOn = true
			fx.MovedOn = append(fx.MovedOn, MovedOn{Input: in, Watermark: k.wm, Waited: now.Sub(t.marks.stalledSince(k))})
		}
		t.updateStreamTime(now, fx)
		return
	}
	t.marks.holder, t.marks.hasHolder = holder, counted
	switch {
	case counted:
		t.streamTime = max(t.streamTime, lowest)
	case highest > 0:
		// Every input partition is idle (or left out): stream time reaches
		// the highest watermark and, once the task's own input is caught
		// up, follows the wall clock from when that watermark was reached.
		t.streamTime = max(t.streamTime, highest)
		if fx != nil && t.marks.inputCaughtUp {
			t.streamTime = max(t.streamTime, highest+now.Sub(highSince).Milliseconds())
		}
	}
}
