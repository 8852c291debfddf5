package engine

// Windows of one task: assignment of a record to its windows (the
// arithmetic is topology.WindowRule's), their rows in the store, and their
// close. Times are milliseconds since the Unix epoch. Time windows are
// half-open [Start, End); a session window is [Start, End] where End is its
// last event time.

import (
	"errors"
	"slices"

	"github.com/eddy-streams/eddy/state"
)

var errorsIs = errors.Is

// session is one session window of a key.
type session struct{ start, end int64 }

// mergeSessions returns the session that a record at ts forms with the
// existing sessions of its key (sorted by start), and the indexes of the
// sessions it absorbs. A session absorbs ts when ts lies within gap of it
// (start-gap <= ts <= end+gap); absorbing may bridge several sessions.
func mergeSessions(existing []session, ts, gap int64) (merged session, absorbed []int) {
	merged = session{ts, ts}
	for i, s := range existing {
		if ts >= s.start-gap && ts <= s.end+gap {
			absorbed = append(absorbed, i)
			merged.start = min(merged.start, s.start)
			merged.end = max(merged.end, s.end)
		}
	}
	return merged, absorbed
}

// closeTime is when wk closes (stream time).
func (t *Task) closeTime(wk state.WindowKey) int64 { return t.p.win.CloseTime(wk.Start, wk.End) }

func (t *Task) track(wk state.WindowKey) {
	n := len(t.open)
	if t.open[wk] = struct{}{}; len(t.open) == n {
		return // tracked already (one hash of the key, not two)
	}
	ct := t.closeTime(wk)
	due, ok := t.closeAt[ct]
	if !ok {
		t.closeQ.Push(ct)
	}
	t.closeAt[ct] = append(due, wk)
	if t.p.win.Session() {
		ss := t.sessions[wk.Key]
		i, _ := slices.BinarySearchFunc(ss, wk.Start, func(s session, start int64) int { return cmp64(s.start, start) })
		t.sessions[wk.Key] = slices.Insert(ss, i, session{wk.Start, wk.End})
	}
}

// put stores row as wk's changed row and tracks wk. A window not tracked
// before has no stored row (see row): the store may then drop it unlogged
// should it close before a commit (state.TaskStore.PutNew).
func (t *Task) put(wk state.WindowKey, row *state.Row, tracked bool) {
	if tracked {
		t.store.Put(wk, row)
	} else {
		t.store.PutNew(wk, row)
	}
	t.track(wk)
	if t.p.emitUpdate {
		t.dirtyEmit[wk] = struct{}{}
	}
}

func (t *Task) untrack(wk state.WindowKey) {
	delete(t.open, wk)
	delete(t.dirtyEmit, wk)
	if t.p.win.Session() {
		ss := t.sessions[wk.Key]
		ss = slices.DeleteFunc(ss, func(s session) bool { return s.start == wk.Start && s.end == wk.End })
		if len(ss) == 0 {
			delete(t.sessions, wk.Key)
		} else {
			t.sessions[wk.Key] = ss
		}
	}
}

// aggregate adds one record to the task's windows. It returns late != nil
// when every window of the record has closed.
func (t *Task) aggregate(key string, ts int64, ins []aggInput) (late *Late, err error) {
	w := t.p.win
	if !w.Session() {
		starts := w.AppendStarts(t.startsBuf[:0], ts)
		t.startsBuf = starts
		var last state.WindowKey
		any := false
		for _, s := range starts {
			wk := state.WindowKey{Key: key, Start: s, End: s + w.Size}
			last = wk
			if t.closeTime(wk) <= t.streamTime {
				continue
			}
			any = true
			if err := t.update(wk, ins, nil); err != nil {
				return nil, err
			}
		}
		if !any {
			return &Late{Window: last}, nil
		}
		return nil, nil
	}
	merged, absorbed := mergeSessions(t.sessions[key], ts, w.Gap)
	wk := state.WindowKey{Key: key, Start: merged.start, End: merged.end}
	if t.closeTime(wk) <= t.streamTime {
		return &Late{Window: wk}, nil
	}
	if end, ok := t.closedEnd[key]; ok && ts <= end+w.Gap {
		// It belongs to a session that has closed.
		return &Late{Window: state.WindowKey{Key: key, Start: min(ts, end), End: end}}, nil
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
			t.untrack(owk)
		}
	}
	return nil, t.update(wk, ins, base)
}

// update applies ins to the window wk (creating it, from base if given).
func (t *Task) update(wk state.WindowKey, ins []aggInput, base *state.Row) error {
	_, tracked := t.open[wk]
	row := base
	if row == nil {
		var err error
		if row, err = t.row(wk, tracked); err != nil {
			return err
		}
	}
	apply(row, ins)
	t.put(wk, row, tracked)
	return nil
}

// row returns the row of window wk to update in place (the store's cache
// owns it), or a new one. Every stored window is in t.open (tracked on
// put, rebuilt from the store on restore), so one not tracked is new: no
// lookup.
func (t *Task) row(wk state.WindowKey, tracked bool) (*state.Row, error) {
	if tracked {
		r, err := t.store.Get(wk)
		if r != nil || err != nil {
			return r, err
		}
	}
	return state.NewRow(t.p.aggSpecs), nil
}

// closeWindows emits (into fx) and deletes every window whose close time
// stream time has reached, oldest first, keys in order; the alert rules
// see each closed window.
func (t *Task) closeWindows(fx *Effects) error {
	w := t.p.win
	for t.closeQ.Len() > 0 && t.closeQ.Min() <= t.streamTime {
		ct := t.closeQ.Pop()
		wks := t.closeAt[ct]
		delete(t.closeAt, ct)
		slices.SortFunc(wks, CompareWindows)
		for _, wk := range wks {
			if _, ok := t.open[wk]; !ok || t.closeTime(wk) != ct {
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
				if t.alerts != nil {
					fx.Alerts = t.alerts.OnWindowClosed(fx.Alerts, wk, row)
				}
				fx.Results = append(fx.Results, Result{Window: wk, Row: row, Final: true, Silent: t.p.emitUpdate && !dirty})
			}
			t.store.Delete(wk)
			t.untrack(wk)
			if w.Session() && wk.End > t.closedEnd[wk.Key] {
				t.closedEnd[wk.Key] = wk.End
				// After this a record within gap of wk.End would be late
				// even as a session of its own.
				t.closedQ.Push(closedItem{expire: w.ClosedSessionRetention(wk.End), key: wk.Key})
			}
		}
	}
	for t.closedQ.Len() > 0 && t.closedQ.Min().expire <= t.streamTime {
		it := t.closedQ.Pop()
		if end, ok := t.closedEnd[it.key]; ok && w.ClosedSessionRetention(end) <= t.streamTime {
			delete(t.closedEnd, it.key)
		}
	}
	return nil
}
