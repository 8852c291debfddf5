package engine

// A Task owns one partition of the aggregation input (the repartition
// topic, or the source topic when it is already keyed by the grouping key)
// and the matching partition of the window store. One goroutine at a time
// calls a Task; it calls nothing back.
//
// Time: a task's stream time is the lowest watermark of its input
// partitions (watermark.go). A window closes when stream time reaches its
// close time (topology.WindowRule.CloseTime); a record all of whose
// windows are closed is late. When every input partition is idle, stream
// time advances with the wall clock, so windows close when input stops.
//
// Invariants:
//   - every window stored in the task's store is in open, and in closeAt
//     under its close time (track); closeQ holds each close time of closeAt
//     once. A window leaves all three, and the store, when it closes or a
//     session merge absorbs it (untrack).
//   - upstream holds, per input and source partition, the highest offset
//     applied to the store: a record at or below it is a duplicate.

import (
	"cmp"
	"iter"
	"slices"
	"time"

	"github.com/eddy-streams/eddy/internal/minheap"
	"github.com/eddy-streams/eddy/processor/engine/alert"
	"github.com/eddy-streams/eddy/state"
)

// Task is the engine of one partition: windows, aggregation, time and
// alert rules.
type Task struct {
	p     *Pipeline
	store *state.TaskStore

	streamTime   int64 // ms
	lastArrival  time.Time
	arrivalSTime int64 // stream time at lastArrival

	open     map[state.WindowKey]struct{}
	closeAt  map[int64][]state.WindowKey // close time -> windows closing then
	closeQ   minheap.Heap[int64]         // distinct close times
	sessions map[string][]session        // session windows only: per key, sorted
	// closedEnd: session windows only, the last instant of each key's
	// latest closed session, kept while a record could still fall within
	// its gap (until closedQ expires it), so such a record is late instead
	// of starting a session of its own. In memory only: after a restart a
	// record for a session that closed just before may start a new one.
	closedEnd map[string]int64
	closedQ   minheap.Heap[closedItem]

	upstream  map[state.SourcePartition]int64 // highest offset applied per upstream partition
	inputPos  map[state.SourcePartition]int64 // next offset per input partition (for commit)
	dirtyEmit map[state.WindowKey]struct{}    // emit=update: windows changed since last flush
	flushSeq  uint64
	changed   bool // processed input since the last flush

	alerts *alert.State // alert rules' state; nil without rules
	marks  marks        // input partitions' watermarks (watermark.go)

	startsBuf []int64 // scratch
	insBuf    []aggInput
}

// NewTask makes the task of partition whose store holds the state of
// checkpoint cp; now is the wall clock (the idle timeout counts from it).
// Call Rebuild before processing.
func NewTask(p *Pipeline, store *state.TaskStore, cp state.Checkpoint, now time.Time) *Task {
	t := &Task{
		p:            p,
		store:        store,
		streamTime:   cp.StreamTime,
		lastArrival:  now,
		arrivalSTime: cp.StreamTime,
		open:         make(map[state.WindowKey]struct{}),
		closeAt:      make(map[int64][]state.WindowKey),
		sessions:     make(map[string][]session),
		closedEnd:    make(map[string]int64),
		upstream:     make(map[state.SourcePartition]int64, len(cp.Upstream)),
		inputPos:     make(map[state.SourcePartition]int64),
		dirtyEmit:    make(map[state.WindowKey]struct{}),
		flushSeq:     cp.FlushSeq,
		marks:        newMarks(cp.Watermarks, now),
		closeQ:       minheap.New(func(a, b int64) bool { return a < b }),
		closedQ:      minheap.New(func(a, b closedItem) bool { return a.expire < b.expire }),
	}
	for k, v := range cp.Upstream {
		t.upstream[k] = v
	}
	if p.alerts != nil {
		t.alerts = p.alerts.NewState()
	}
	return t
}

// Rebuild loads the open-window index from the store; verify decodes
// every row, to find local damage at start-up rather than mid-stream.
// It does not load the alert state (LoadAlerts).
//
// After a restore from scratch that recorded its keys
// (state.TaskStore.RecordRestored) the index is built from those, in log
// order, without reading Pebble: the rows were just written from the
// changelog, and scanning them back was the larger half of a restore's
// CPU. Otherwise the keys are gathered from the store first; either way
// the index is made at its final size: a map grown one entry at a time
// to a million windows costs about 2.5 times as much as one made for
// them.
func (t *Task) Rebuild(verify bool) error {
	if keys, whole := t.store.TakeRestored(); whole {
		t.reserve(len(keys), func(yield func(state.WindowKey) bool) {
			for _, k := range keys {
				if !k.Deleted && !yield(k.WindowKey) {
					return
				}
			}
		})
		for _, k := range keys {
			if k.Deleted {
				t.untrack(k.WindowKey)
			} else {
				t.track(k.WindowKey)
			}
		}
		return nil
	}
	var wks []state.WindowKey
	if err := t.store.Scan(verify, func(wk state.WindowKey) error {
		wks = append(wks, wk)
		return nil
	}); err != nil {
		return err
	}
	t.reserve(len(wks), slices.Values(wks))
	for _, wk := range wks {
		t.track(wk)
	}
	return nil
}

// reserve makes room in an empty index for n windows, and in closeAt for
// the windows of each close time among wks (which may repeat): tracking
// them then grows nothing. A restore's windows mostly close at a few
// times; their lists grown one window at a time were a quarter of
// tracking them.
func (t *Task) reserve(n int, wks iter.Seq[state.WindowKey]) {
	if len(t.open) != 0 || n == 0 {
		return
	}
	t.open = make(map[state.WindowKey]struct{}, n)
	count := make(map[int64]int)
	for wk := range wks {
		count[t.closeTime(wk)]++
	}
	for ct, c := range count {
		due, ok := t.closeAt[ct]
		if !ok { // as track does: each close time of closeAt is in closeQ
			t.closeQ.Push(ct)
		}
		t.closeAt[ct] = slices.Grow(due, c)
	}
}

// StreamTime is the task's stream time (ms); 0 before any record.
func (t *Task) StreamTime() int64 { return t.streamTime }

// HasTime reports whether the task has had a record, in this run or in the
// state it restored: without one its stream time means nothing.
func (t *Task) HasTime() bool { return t.streamTime > 0 }

// OpenWindows is the number of open windows.
func (t *Task) OpenWindows() int { return len(t.open) }

// OpenWindowsOf returns the windows of key that are open in the task,
// oldest first, with their current aggregates (an interactive query: it
// changes nothing). The rows belong to the task's store, as in Result.
func (t *Task) OpenWindowsOf(key string) ([]Result, error) {
	var rs []Result
	for wk := range t.open {
		if wk.Key != key {
			continue
		}
		row, err := t.store.Get(wk)
		if err != nil {
			return nil, err
		}
		if row != nil {
			rs = append(rs, Result{Window: wk, Row: row})
		}
	}
	slices.SortFunc(rs, func(x, y Result) int { return cmp.Compare(x.Window.Start, y.Window.Start) })
	return rs, nil
}

// InputPositions returns, per input partition, the next offset to commit.
// The map belongs to the task: read it, do not keep it.
func (t *Task) InputPositions() map[state.SourcePartition]int64 { return t.inputPos }

// Skip records the input record at offset of input as consumed without
// applying it (the shell dead-lettered it before it could be decoded, or
// it is a watermark record): the next flush commits its position.
func (t *Task) Skip(input state.SourcePartition, offset int64) {
	t.inputPos[input] = offset + 1
	t.changed = true
}

// Checkpoint returns the position the task's state reflects now.
func (t *Task) Checkpoint() state.Checkpoint {
	cp := state.Checkpoint{StreamTime: t.streamTime, FlushSeq: t.flushSeq,
		Upstream: make(map[state.SourcePartition]int64, len(t.upstream)), Watermarks: t.Watermarks()}
	for k, v := range t.upstream {
		cp.Upstream[k] = v
	}
	for _, v := range t.inputPos {
		cp.InputNext = max(cp.InputNext, v)
	}
	return cp
}

// Process applies one record at wall-clock time now, filling fx (reset
// first) with what the shell must write. An error is a store failure: the
// task's state is then undefined and must be rebuilt from the store.
//
// Process panics on a chained rollup's task (Pipeline.Chained): Follow
// feeds it.
func (t *Task) Process(rec Record, now time.Time, fx *Effects) error {
	if t.p.chained {
		panic("engine: Process on a chained rollup's task (use Follow)")
	}
	fx.reset()
	t.changed = true
	if t.seen(rec) {
		fx.Duplicate = true
		return nil
	}
	if rec.Reject != nil {
		fx.DeadLetter = rec.Reject
		return nil
	}
	if rec.Filtered {
		fx.Filtered = true
		return nil
	}
	fx.Aggregated = true
	ins, field, err := t.p.aggInputs(rec.Fields, t.insBuf)
	t.insBuf = ins
	if err != nil {
		class := ErrAggregateField
		if errorsIs(err, ErrExpression) {
			class = ErrExpression
		}
		fx.DeadLetter = &Reject{Class: class, Field: field, Err: err}
		return nil
	}
	if t.alerts != nil {
		fx.Alerts = t.alerts.OnRecord(fx.Alerts, rec.Key, rec.Time, t.streamTime) // stream time before this record
	}
	t.observe(rec.Source, max(rec.Time, rec.SourceWatermark), now)
	late, err := t.aggregate(rec.Key, rec.Time, ins)
	if err != nil {
		return err
	}
	// Only records that reach the windows count as arrivals for the idle
	// timeout: a partition receiving only filtered or bad records is idle.
	t.lastArrival = now
	t.arrivalSTime = t.streamTime
	if late != nil {
		late.EventTime, late.StreamTime = rec.Time, t.streamTime
		fx.Late = late
	}
	if err := t.closeWindows(fx); err != nil {
		return err
	}
	if t.alerts != nil {
		fx.Alerts = t.alerts.Due(fx.Alerts, t.streamTime)
	}
	return nil
}

// Punctuate advances stream time with the wall clock when the task has
// been idle, closes due windows and applies the time-driven alert rules,
// filling fx (reset first). A chained rollup's task (Pipeline.Chained)
// takes its time from Follow only: Punctuate closes what is due and
// applies the alert rules, without moving it.
func (t *Task) Punctuate(now time.Time, fx *Effects) error {
	fx.reset()
	if !t.p.chained {
		t.updateStreamTime(now, fx)
	}
	return t.CloseDue(fx)
}

// CloseDue closes the windows due by stream time and applies the
// time-driven alert rules, without moving stream time (fx is not reset).
func (t *Task) CloseDue(fx *Effects) error {
	if err := t.closeWindows(fx); err != nil {
		return err
	}
	if t.alerts != nil {
		fx.Alerts = t.alerts.Tick(fx.Alerts, t.streamTime)
	}
	return nil
}

// Flush collects the task's state changes since the last flush: the store
// rows and alert state to write (changes), and, with emit=update, the
// results of the windows changed since (into fx, reset first). ok is false
// when the task has nothing to flush. Otherwise the flush counts (the
// next Checkpoint carries a new FlushSeq) and the caller must write
// changes, then call Flushed once they are durable.
func (t *Task) Flush(fx *Effects) (changes []state.Change, ok bool, err error) {
	fx.reset()
	if t.alerts != nil {
		t.alerts.Flush(t.store)
	}
	changes = t.store.Dirty()
	if len(changes) == 0 && !t.changed {
		return nil, false, nil
	}
	if t.p.emitUpdate {
		wks := make([]state.WindowKey, 0, len(t.dirtyEmit))
		for wk := range t.dirtyEmit {
			wks = append(wks, wk)
		}
		slices.SortFunc(wks, CompareWindows)
		for _, wk := range wks {
			row, err := t.store.Get(wk)
			if err != nil {
				return nil, false, err
			}
			if row != nil {
				fx.Results = append(fx.Results, Result{Window: wk, Row: row})
			}
		}
		clear(t.dirtyEmit)
	}
	t.flushSeq++
	return changes, true, nil
}

// Flushed records that the last Flush's changes are durable.
func (t *Task) Flushed() { t.changed = false }

// seen reports whether rec (or the source record it was repartitioned
// from) is already in the task's state, and records it as applied
// otherwise.
func (t *Task) seen(rec Record) bool {
	if last, ok := t.upstream[rec.Input]; ok && rec.Offset <= last {
		return true
	}
	t.upstream[rec.Input] = rec.Offset
	t.inputPos[rec.Input] = rec.Offset + 1
	if rec.Source != rec.Input {
		if last, ok := t.upstream[rec.Source]; ok && rec.SourceOffset <= last {
			return true
		}
		t.upstream[rec.Source] = rec.SourceOffset
	}
	return false
}

// idleAdvance moves stream time with the wall clock when the task has
// received nothing for the idle timeout. It reports whether it moved.
func (t *Task) idleAdvance(now time.Time) bool {
	idle := now.Sub(t.lastArrival)
	if idle < t.p.spec.IdleTimeout {
		return false
	}
	st := t.arrivalSTime + idle.Milliseconds()
	if st > t.streamTime {
		t.streamTime = st
		return true
	}
	return false
}

// CompareWindows orders windows by key, then start, then end: the order
// results of one instant are written in.
func CompareWindows(a, b state.WindowKey) int {
	if a.Key != b.Key {
		if a.Key < b.Key {
			return -1
		}
		return 1
	}
	if a.Start != b.Start {
		return cmp64(a.Start, b.Start)
	}
	return cmp64(a.End, b.End)
}

func cmp64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

type closedItem struct {
	expire int64
	key    string
}

// LoadAlerts reads the task's alert state back from its store (after
// restore or an aborted transaction). Without alert rules it does nothing.
func (t *Task) LoadAlerts() error {
	if t.alerts == nil {
		return nil
	}
	return t.alerts.Load(t.store)
}

// FiringAlerts returns the task's firing alerts, rendered (to re-send to
// Alertmanager after a restore).
func (t *Task) FiringAlerts() []Alert {
	if t.alerts == nil {
		return nil
	}
	return t.alerts.Firing()
}
