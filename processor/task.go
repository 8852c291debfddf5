package processor

// A task owns one partition of the aggregation input (the repartition topic,
// or the source topics when they are already keyed by the grouping key) and
// the matching partition of the window store and its changelog. Only the
// app's processing goroutine touches a task.
//
// Time: a task's stream time is the highest event time it has processed.
// A window closes when stream time reaches its end plus grace; a record all
// of whose windows are closed is late and goes to the late topic. When the
// task has received nothing for the idle timeout, stream time advances with
// the wall clock from the last record's arrival, so windows close when
// input stops.

import (
	"container/heap"
	"fmt"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eddy-streams/eddy/state"
	"github.com/eddy-streams/eddy/topology"
)

// result is one emitted window result.
type result struct {
	wk     state.WindowKey
	row    *state.Row
	final  bool
	silent bool // closed, not to be written (emit=update, written already)
}

type task struct {
	partition int32
	store     *state.TaskStore
	cp        state.Checkpoint // position of the last flush (or restore)

	streamTime   int64 // ms
	lastArrival  time.Time
	arrivalSTime int64 // stream time at lastArrival

	open     map[state.WindowKey]struct{}
	closeAt  map[int64][]state.WindowKey // close time -> windows closing then
	closeQ   int64Heap                   // distinct close times
	sessions map[string][]session        // session windows only: per key, sorted
	// closedEnd: session windows only, the last instant of each key's
	// latest closed session, kept while a record could still fall within
	// its gap (until closedQ expires it), so such a record is late instead
	// of starting a session of its own. In memory only: after a restart a
	// record for a session that closed just before may start a new one.
	closedEnd map[string]int64
	closedQ   closedHeap

	upstream  map[state.SourcePartition]int64 // highest offset applied per upstream partition
	inputPos  map[state.SourcePartition]int64 // next offset per input partition (for commit)
	dirtyEmit map[state.WindowKey]struct{}    // emit=update: windows changed since last flush
	flushSeq  uint64
	changed   bool // processed input since the last flush

	alerts *taskAlerts // alert rules' state (alerts.go); nil without rules
}

type closedItem struct {
	expire int64
	key    string
}

type closedHeap []closedItem

func (h closedHeap) Len() int           { return len(h) }
func (h closedHeap) Less(i, j int) bool { return h[i].expire < h[j].expire }
func (h closedHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *closedHeap) Push(x any)        { *h = append(*h, x.(closedItem)) }
func (h *closedHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

type int64Heap []int64

func (h int64Heap) Len() int           { return len(h) }
func (h int64Heap) Less(i, j int) bool { return h[i] < h[j] }
func (h int64Heap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *int64Heap) Push(x any)        { *h = append(*h, x.(int64)) }
func (h *int64Heap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

func newTask(partition int32, store *state.TaskStore, cp state.Checkpoint, now time.Time) *task {
	t := &task{
		partition:    partition,
		store:        store,
		cp:           cp,
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
	}
	for k, v := range cp.Upstream {
		t.upstream[k] = v
	}
	return t
}

// closeTime returns when a window closes (stream time).
func (p *pipeline) closeTime(wk state.WindowKey) int64 {
	if p.spec.Window.Type == topology.WindowSession {
		// A record at End+gap still joins the session, so it closes only
		// once stream time passes that instant (plus grace).
		return wk.End + p.gap + p.grace + 1
	}
	return wk.End + p.grace
}

func (t *task) track(p *pipeline, wk state.WindowKey) {
	if _, ok := t.open[wk]; ok {
		return
	}
	t.open[wk] = struct{}{}
	ct := p.closeTime(wk)
	if _, ok := t.closeAt[ct]; !ok {
		heap.Push(&t.closeQ, ct)
	}
	t.closeAt[ct] = append(t.closeAt[ct], wk)
	if p.spec.Window.Type == topology.WindowSession {
		ss := t.sessions[wk.Key]
		i, _ := slices.BinarySearchFunc(ss, wk.Start, func(s session, start int64) int { return cmp64(s.start, start) })
		t.sessions[wk.Key] = slices.Insert(ss, i, session{wk.Start, wk.End})
	}
}

func (t *task) untrack(p *pipeline, wk state.WindowKey) {
	delete(t.open, wk)
	delete(t.dirtyEmit, wk)
	if p.spec.Window.Type == topology.WindowSession {
		ss := t.sessions[wk.Key]
		ss = slices.DeleteFunc(ss, func(s session) bool { return s.start == wk.Start && s.end == wk.End })
		if len(ss) == 0 {
			delete(t.sessions, wk.Key)
		} else {
			t.sessions[wk.Key] = ss
		}
	}
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

// rebuildIndex loads the open-window index, and the alert rules' state,
// from the store after restore, checking every row.
func (t *task) rebuildIndex(p *pipeline) error {
	if err := t.buildIndex(p, true); err != nil || p.alerts == nil {
		return err
	}
	return p.alerts.load(t)
}

// buildIndex loads the open-window index from the store; verify decodes
// every row to find local damage at start-up rather than mid-stream.
func (t *task) buildIndex(p *pipeline, verify bool) error {
	return t.store.Scan(verify, func(wk state.WindowKey) error {
		t.track(p, wk)
		return nil
	})
}

// values extracts, for one record, the input of every aggregate. It
// evaluates everything before any state changes, so a record either counts
// fully or goes to the dead-letter topic.
type aggInput struct {
	skip  bool // where was false or the field is absent
	num   float64
	str   string
	isStr bool
}

func (p *pipeline) aggInputs(fields map[string]any, dst []aggInput) ([]aggInput, string, error) {
	dst = dst[:0]
	for i, a := range p.spec.Aggregates {
		in := aggInput{}
		if w := p.compiled.Where[i]; w != nil {
			ok, err := w.Eval(fields)
			if err != nil {
				return dst, a.Name, fmt.Errorf("%w: where of %q: %w", ErrExpression, a.Name, err)
			}
			if !ok {
				in.skip = true
				dst = append(dst, in)
				continue
			}
		}
		switch {
		case a.Op == topology.AggCount:
		case a.Op == topology.AggDistinct:
			s, ok := keyString(fields[a.Field])
			if !ok {
				in.skip = true
			}
			in.str, in.isStr = s, true
		default:
			v, ok, err := numeric(fields[a.Field])
			if err != nil {
				return dst, a.Field, fmt.Errorf("%w: %w", ErrAggregateField, err)
			}
			in.num, in.skip = v, !ok
		}
		dst = append(dst, in)
	}
	return dst, "", nil
}

func (p *pipeline) apply(row *state.Row, ins []aggInput) {
	for i, in := range ins {
		switch {
		case in.skip:
		case in.isStr:
			row.AddString(i, in.str)
		default:
			row.Add(i, in.num)
		}
	}
}

// lateInfo describes why a record is late.
type lateInfo struct {
	window state.WindowKey
}

// aggregate adds one record (already decoded) to the task's windows. It
// returns late != nil when every window of the record has closed.
func (p *pipeline) aggregate(t *task, key string, ts int64, ins []aggInput) (late *lateInfo, err error) {
	if ts > t.streamTime {
		t.streamTime = ts
	}
	switch p.spec.Window.Type {
	case topology.WindowTumbling:
		s, e := tumblingWindow(ts, p.size)
		wk := state.WindowKey{Key: key, Start: s, End: e}
		if p.closeTime(wk) <= t.streamTime {
			return &lateInfo{wk}, nil
		}
		return nil, p.update(t, wk, ins, nil)
	case topology.WindowHopping:
		starts := hoppingWindows(p.startsBuf[:0], ts, p.size, p.advance)
		p.startsBuf = starts
		var last state.WindowKey
		any := false
		for _, s := range starts {
			wk := state.WindowKey{Key: key, Start: s, End: s + p.size}
			last = wk
			if p.closeTime(wk) <= t.streamTime {
				continue
			}
			any = true
			if err := p.update(t, wk, ins, nil); err != nil {
				return nil, err
			}
		}
		if !any {
			return &lateInfo{last}, nil
		}
		return nil, nil
	default: // session
		merged, absorbed := mergeSessions(t.sessions[key], ts, p.gap)
		wk := state.WindowKey{Key: key, Start: merged.start, End: merged.end}
		if p.closeTime(wk) <= t.streamTime {
			return &lateInfo{wk}, nil
		}
		if end, ok := t.closedEnd[key]; ok && ts <= end+p.gap {
			// It belongs to a session that has closed.
			return &lateInfo{state.WindowKey{Key: key, Start: min(ts, end), End: end}}, nil
		}
		var base *state.Row
		old := slices.Clone(t.sessions[key])
		for _, i := range absorbed {
			owk := state.WindowKey{Key: key, Start: old[i].start, End: old[i].end}
			r, err := t.store.Get(owk)
			if err != nil {
				return nil, err
			}
			if r != nil {
				if base == nil {
					base = r.Clone()
				} else {
					base.Merge(r)
				}
			}
			if owk != wk {
				t.store.Delete(owk)
				t.untrack(p, owk)
			}
		}
		return nil, p.update(t, wk, ins, base)
	}
}

// update applies ins to the window wk (creating it, from base if given).
func (p *pipeline) update(t *task, wk state.WindowKey, ins []aggInput, base *state.Row) error {
	row := base
	if row == nil {
		// Every stored window is in t.open (tracked on Put, rebuilt from
		// Pebble on restore), so a window missing there is new: no lookup.
		var r *state.Row
		if _, ok := t.open[wk]; ok {
			var err error
			if r, err = t.store.Get(wk); err != nil {
				return err
			}
		}
		if r == nil {
			r = state.NewRow(p.aggSpecs)
		}
		row = r // updated in place: the store's cache owns it
	}
	p.apply(row, ins)
	t.store.Put(wk, row)
	t.track(p, wk)
	if p.emitUpdate {
		t.dirtyEmit[wk] = struct{}{}
	}
	return nil
}

// closeWindows emits (emit=close) and deletes every window whose close time
// has been reached by stream time, oldest first, keys in order.
func (p *pipeline) closeWindows(t *task, emit func(result)) error {
	for t.closeQ.Len() > 0 && t.closeQ[0] <= t.streamTime {
		ct := heap.Pop(&t.closeQ).(int64)
		wks := t.closeAt[ct]
		delete(t.closeAt, ct)
		slices.SortFunc(wks, func(a, b state.WindowKey) int {
			if a.Key != b.Key {
				if a.Key < b.Key {
					return -1
				}
				return 1
			}
			return cmp64(a.Start, b.Start)
		})
		for _, wk := range wks {
			if _, ok := t.open[wk]; !ok || p.closeTime(wk) != ct {
				continue // merged away or re-tracked
			}
			row, err := t.store.Get(wk)
			if err != nil {
				return err
			}
			if row != nil {
				// emit=update has already written a window that has not
				// changed since the last flush: alerts still see it close.
				_, dirty := t.dirtyEmit[wk]
				emit(result{wk: wk, row: row, final: true, silent: p.emitUpdate && !dirty})
			}
			t.store.Delete(wk)
			t.untrack(p, wk)
			if p.spec.Window.Type == topology.WindowSession && wk.End > t.closedEnd[wk.Key] {
				t.closedEnd[wk.Key] = wk.End
				// After this a record within gap of wk.End would be late
				// even as a session of its own.
				heap.Push(&t.closedQ, closedItem{expire: wk.End + 2*p.gap + p.grace + 1, key: wk.Key})
			}
		}
	}
	for t.closedQ.Len() > 0 && t.closedQ[0].expire <= t.streamTime {
		it := heap.Pop(&t.closedQ).(closedItem)
		if end, ok := t.closedEnd[it.key]; ok && end+2*p.gap+p.grace+1 <= t.streamTime {
			delete(t.closedEnd, it.key)
		}
	}
	return nil
}

// idleAdvance moves stream time with the wall clock when the task has
// received nothing for the idle timeout. It reports whether it moved.
func (p *pipeline) idleAdvance(t *task, now time.Time) bool {
	idle := now.Sub(t.lastArrival)
	if idle < p.spec.IdleTimeout {
		return false
	}
	st := t.arrivalSTime + idle.Milliseconds()
	if st > t.streamTime {
		t.streamTime = st
		return true
	}
	return false
}

// checkpoint returns the position the task's state reflects now.
func (t *task) checkpoint() state.Checkpoint {
	cp := state.Checkpoint{StreamTime: t.streamTime, FlushSeq: t.flushSeq,
		Upstream: make(map[state.SourcePartition]int64, len(t.upstream))}
	for k, v := range t.upstream {
		cp.Upstream[k] = v
	}
	for _, v := range t.inputPos {
		cp.InputNext = max(cp.InputNext, v)
	}
	return cp
}

// seen reports whether rec (or the source record it was repartitioned
// from) is already in the task's state, and records it as applied
// otherwise.
func (t *task) seen(rec *kgo.Record, srcTopic string, srcPart int32, srcOff int64) bool {
	in := state.SourcePartition{Topic: rec.Topic, Partition: rec.Partition}
	if last, ok := t.upstream[in]; ok && rec.Offset <= last {
		return true
	}
	t.upstream[in] = rec.Offset
	t.inputPos[in] = rec.Offset + 1
	if srcTopic != rec.Topic || srcPart != rec.Partition {
		src := state.SourcePartition{Topic: srcTopic, Partition: srcPart}
		if last, ok := t.upstream[src]; ok && srcOff <= last {
			return true
		}
		t.upstream[src] = srcOff
	}
	return false
}
