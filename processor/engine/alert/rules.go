// Package alert evaluates a pipeline's alert rules on one task's stream:
// window closes, record arrivals and stream time in, transitions out. It
// knows nothing of tasks, pipelines or Kafka (State's methods in state.go
// are its whole interface).
package alert

// (Long: the three rule kinds share their state, scheduling and
// persistence, which are easier to check side by side.)
//
// Alerts: rules evaluated on window results and record arrivals
// (docs/alerting.md).
//
// Files: state.go (the interface: OnRecord, OnWindowClosed, Due, Tick,
// Load, Flush, Dirty, Firing), rules.go (compiled rules and the state
// machines of the three kinds), persist.go (the stored form), render.go
// (Alert and its summary). rules.go is a little over 600 lines: the
// threshold, deviation and absence machines share alertState, the due
// heap and missWindows, and read best side by side.
//
// Each rule keeps per-key state in the task's store as aux entries (state
// package), so it reaches the changelog and Pebble with the windows, in the
// same commit: restarts, moves and replays see exactly the committed alert
// state, and under exactly-once a transition's alert record commits in the
// same transaction as the state that says it was published.
//
// Every time an alert carries is stream time or event time, never the wall
// clock, so a replay of the same input publishes the same transitions at
// the same instants:
//   - threshold and deviation rules are evaluated when a window of the key
//     closes; a window the key had no records in counts as "condition
//     false", and is noticed either when the key's next window closes or,
//     if none comes, once stream time passes that empty window's close;
//   - absence rules fire when stream time passes the key's last record plus
//     "for". Stream time advances with other keys' records, or with the
//     wall clock once the partition is idle (idle_timeout), so an alert
//     fires even if no record arrives at all.

import (
	"fmt"
	"math"
	"sort"
	"text/template"

	"github.com/eddy-streams/eddy/internal/minheap"
	"github.com/eddy-streams/eddy/processor/engine/groupkey"
	"github.com/eddy-streams/eddy/state"
	"github.com/eddy-streams/eddy/topology"
)

// Alert states.
const (
	alertInactive = "inactive"
	alertPending  = "pending"
	alertFiring   = "firing"
	alertResolved = "resolved"
)

type alertRule struct {
	spec      topology.AlertRule
	idx       int
	cond      *topology.Expr
	valueIdx  int // index of spec.Value among the aggregates; -1 if none
	threshold *float64
	tmpl      *template.Template
	forMs     int64
	forgetMs  int64
	periodMs  int64
	bucketMs  int64
}

type alertEngine = Rules

// Rules are a pipeline's compiled alert rules: immutable, shared by the
// States of every task.
type Rules struct {
	spec     *topology.Spec
	rules    []*alertRule
	byName   map[string]*alertRule
	absence  []*alertRule
	windowed []*alertRule
	renotify int64 // ms; 0 never
	step     int64 // ms between successive windows of a key; 0 for sessions
	// envAggs and envKeys: the aggregates and key fields that threshold
	// conditions name (State.fillEnv).
	envAggs []int
	envKeys []int
	win     topology.WindowRule
}

// New compiles the alert rules of spec; nil (and no error) without rules.
func New(spec *topology.Spec, win topology.WindowRule) (*Rules, error) {
	if spec.Alerts == nil || len(spec.Alerts.Rules) == 0 {
		return nil, nil
	}
	e := &alertEngine{spec: spec, byName: make(map[string]*alertRule), renotify: spec.Alerts.Renotify.Milliseconds()}
	e.win, e.step = win, win.Advance
	fields := spec.AlertFields()
	for i, rs := range spec.Alerts.Rules {
		r := &alertRule{spec: rs, idx: i, valueIdx: -1,
			forMs: rs.For.Milliseconds(), forgetMs: rs.ForgetAfter.Milliseconds(),
			periodMs: rs.Period.Milliseconds(), bucketMs: rs.Bucket.Milliseconds()}
		if rs.Condition != "" {
			c, err := topology.CompileBool(rs.Condition, fields)
			if err != nil {
				return nil, fmt.Errorf("alerts.rules[%d].condition: %w", i, err)
			}
			r.cond = c
		}
		for j, a := range spec.Aggregates {
			if a.Name == rs.Value {
				r.valueIdx = j
			}
		}
		if r.cond != nil && rs.Value != "" {
			// "value > 500" names a threshold to report with the alert.
			if v, ok := r.cond.Threshold(rs.Value); ok {
				r.threshold = &v
			}
		}
		t, err := rs.ParseSummary()
		if err != nil {
			return nil, fmt.Errorf("alerts.rules[%d].summary: %w", i, err)
		}
		r.tmpl = t
		e.rules = append(e.rules, r)
		e.byName[rs.Name] = r
		if rs.Kind == topology.AlertAbsence {
			e.absence = append(e.absence, r)
		} else {
			e.windowed = append(e.windowed, r)
		}
	}
	names := map[string]bool{}
	for _, r := range e.windowed {
		if r.cond != nil {
			for _, f := range r.cond.Fields() {
				names[f] = true
			}
		}
	}
	for i, a := range spec.Aggregates {
		if names[a.Name] {
			e.envAggs = append(e.envAggs, i)
		}
	}
	for i, k := range spec.Key {
		if names[k] {
			e.envKeys = append(e.envKeys, i)
		}
	}
	return e, nil
}

// alertState is the persisted state of one rule for one key.
type alertState struct {
	State     string  `json:"s"`
	Hits      int     `json:"h,omitempty"`     // consecutive windows the condition held (inactive/pending)
	Misses    int     `json:"m,omitempty"`     // consecutive windows it did not (firing)
	Since     int64   `json:"since,omitempty"` // firing: when it started (ms)
	Notified  int64   `json:"n,omitempty"`     // firing: when last published (ms)
	HasWindow bool    `json:"hw,omitempty"`    // LastStart/LastEnd are set
	LastStart int64   `json:"ws,omitempty"`    // last window evaluated
	LastEnd   int64   `json:"we,omitempty"`
	Value     float64 `json:"v,omitempty"`
	HasValue  bool    `json:"hv,omitempty"`
	LastSeen  int64   `json:"seen,omitempty"` // absence: latest event time of the key
	// deviation, ewma baseline
	N    int     `json:"nn,omitempty"`
	Mean float64 `json:"mu,omitempty"`
	Var  float64 `json:"var,omitempty"`
}

// slotStats is the seasonal baseline of one key in one bucket of the period.
type slotStats struct {
	N          int     `json:"nn"`
	Mean       float64 `json:"mu"`
	Var        float64 `json:"var"`
	Periods    int     `json:"p"`  // distinct periods observed
	LastPeriod int64   `json:"lp"` // the latest of them
}

func (s *slotStats) add(x, alpha float64, period int64) {
	s.N++
	if s.N == 1 || s.Periods == 0 {
		s.Mean, s.Var = x, 0
	} else {
		ewmaAdd(&s.Mean, &s.Var, x, max(alpha, 1/float64(s.N)))
	}
	if s.Periods == 0 || s.LastPeriod != period {
		s.Periods++
		s.LastPeriod = period
	}
}

// ewmaAdd folds x into an exponentially weighted mean and variance.
func ewmaAdd(mean, variance *float64, x, a float64) {
	d := x - *mean
	*mean += a * d
	*variance = (1 - a) * (*variance + a*d*d)
}

type alertID struct {
	rule int
	key  string
}

type slotID struct {
	rule int
	key  string
	slot int64
}

type dueItem struct {
	at int64
	id alertID
}

// State is the alert state of one task (partition), all in memory;
// changes are queued to the task's store at Flush. One goroutine at a
// time uses a State.
type State struct {
	e          *alertEngine
	out        []Transition // transitions of the current call
	states     map[alertID]*alertState
	slots      map[slotID]*slotStats
	dirty      map[alertID]struct{}
	dirtySlots map[slotID]struct{}
	due        minheap.Heap[dueItem] // absence rules: when to look at a key again
	queued     map[alertID]int64     // the due time queued for an id
	active     map[alertID]struct{}
	envBuf     map[string]any // fillEnv: per task, so tasks on several goroutines share nothing
}

func (e *alertEngine) NewState() *State {
	return &State{
		e:          e,
		states:     make(map[alertID]*alertState),
		slots:      make(map[slotID]*slotStats),
		dirty:      make(map[alertID]struct{}),
		dirtySlots: make(map[slotID]struct{}),
		queued:     make(map[alertID]int64),
		active:     make(map[alertID]struct{}),
		due:        minheap.New(func(a, b dueItem) bool { return a.at < b.at }),
	}
}

func (ta *State) schedule(id alertID, at int64) {
	if q, ok := ta.queued[id]; ok && q <= at {
		return
	}
	ta.queued[id] = at
	ta.due.Push(dueItem{at: at, id: id})
}

// alertEvent is one transition to publish.
type alertEvent struct {
	rule      *alertRule
	key       string
	state     string // firing or resolved
	value     *float64
	baseline  *float64
	stddev    *float64
	window    *state.WindowKey
	row       *state.Row
	startedAt int64
	at        int64
	note      string // why, in words, for the default summary
}

// onRecord notes a record of key at event time ts (absence rules).
func (ta *State) onRecord(key string, ts, streamTime int64) {
	e := ta.e
	for _, r := range e.absence {
		id := alertID{r.idx, key}
		st := ta.states[id]
		if st == nil {
			st = &alertState{State: alertInactive, LastSeen: ts}
			ta.states[id] = st
			ta.dirty[id] = struct{}{}
			ta.schedule(id, ts+r.forMs)
			continue
		}
		if ts > st.LastSeen {
			st.LastSeen = ts
			ta.dirty[id] = struct{}{}
		}
		// A firing alert resolves when the key's silence no longer lasts
		// "for" at the current stream time; an old, out-of-order record
		// that leaves a silence that long does not resolve it.
		if st.State == alertFiring && st.LastSeen+r.forMs > streamTime {
			at := max(ts, st.Since)
			ta.emit(alertEvent{rule: r, key: key, state: alertResolved, startedAt: st.Since, at: at,
				note: fmt.Sprintf("records arrive again (silent for %s)", fmtDur(at-st.Since+r.forMs))})
			st.State, st.Since, st.Notified = alertInactive, 0, 0
			ta.dirty[id] = struct{}{}
			ta.schedule(id, st.LastSeen+r.forMs)
		}
	}
}

func (e *alertEngine) scheduleAbsence(ta *State, r *alertRule, id alertID, st *alertState) {
	if st.State != alertFiring {
		ta.schedule(id, st.LastSeen+r.forMs)
		return
	}
	next := st.LastSeen + r.forgetMs
	if e.renotify > 0 {
		next = min(next, st.Notified+e.renotify)
	}
	ta.schedule(id, next)
}

// checkDue fires, re-notifies and forgets absence alerts whose time has
// come by stream time now.
func (ta *State) checkDue(now int64) {
	e := ta.e
	for ta.due.Len() > 0 && ta.due.Min().at <= now {
		it := ta.due.Pop()
		if q, ok := ta.queued[it.id]; !ok || q != it.at {
			continue // superseded
		}
		delete(ta.queued, it.id)
		st := ta.states[it.id]
		if st == nil {
			continue
		}
		r := e.rules[it.id.rule]
		if r.spec.Kind == topology.AlertDeviation {
			e.forgetBaseline(ta, r, it.id, st, now)
			continue
		}
		if fireAt := st.LastSeen + r.forMs; st.State != alertFiring && fireAt <= now {
			st.State, st.Since, st.Notified = alertFiring, fireAt, fireAt
			ta.dirty[it.id] = struct{}{}
			ta.emit(alertEvent{rule: r, key: it.id.key, state: alertFiring, startedAt: fireAt, at: fireAt,
				note: fmt.Sprintf("no records since %s (%s)", fmtTime(st.LastSeen), fmtDur(r.forMs))})
		}
		if forget := st.LastSeen + r.forgetMs; forget <= now {
			if st.State == alertFiring {
				ta.emit(alertEvent{rule: r, key: it.id.key, state: alertResolved, startedAt: st.Since, at: forget,
					note: fmt.Sprintf("no records for %s: the key is forgotten (forget_after)", fmtDur(r.forgetMs))})
			}
			delete(ta.states, it.id)
			ta.dirty[it.id] = struct{}{}
			continue
		}
		if st.State == alertFiring && e.renotify > 0 && st.Notified+e.renotify <= now {
			st.Notified += e.renotify * ((now - st.Notified) / e.renotify)
			ta.dirty[it.id] = struct{}{}
			ta.emit(alertEvent{rule: r, key: it.id.key, state: alertFiring, startedAt: st.Since, at: st.Notified,
				note: fmt.Sprintf("still no records since %s", fmtTime(st.LastSeen))})
		}
		e.scheduleAbsence(ta, r, it.id, st)
	}
}

// forgetBaseline deletes the deviation state and baseline of a key whose
// last window ended forget_after ago, or looks again later.
func (e *alertEngine) forgetBaseline(ta *State, r *alertRule, id alertID, st *alertState, now int64) {
	at := st.LastEnd + r.forgetMs
	if at > now {
		ta.schedule(id, at)
		return
	}
	if st.State == alertFiring {
		ta.emit(alertEvent{rule: r, key: id.key, state: alertResolved, startedAt: st.Since, at: at,
			note: fmt.Sprintf("no windows for %s: the key's baseline is forgotten (forget_after)", fmtDur(r.forgetMs))})
	}
	delete(ta.states, id)
	delete(ta.active, id)
	ta.dirty[id] = struct{}{}
	for sid := range ta.slots {
		if sid.rule == id.rule && sid.key == id.key {
			delete(ta.slots, sid)
			ta.dirtySlots[sid] = struct{}{}
		}
	}
}

// observe is the state machine of threshold and deviation rules: one
// window in which the condition held or not. It returns the transition to
// publish (firing, resolved) or "".
func (st *alertState) observe(holds bool, forN, resolveN int) string {
	if st.State == alertFiring {
		if holds {
			st.Misses = 0
			return ""
		}
		st.Misses++
		if st.Misses >= resolveN {
			st.State, st.Misses, st.Hits = alertResolved, 0, 0
			return alertResolved
		}
		return ""
	}
	if !holds {
		if st.State == alertPending {
			st.State = alertInactive
		}
		st.Hits = 0
		return ""
	}
	st.Hits++
	if st.Hits >= forN {
		st.State, st.Hits, st.Misses = alertFiring, 0, 0
		return alertFiring
	}
	st.State = alertPending
	return ""
}

// closeAt is when the window starting at start closes (stream time).
func (e *alertEngine) closeAt(start int64) int64 {
	return e.win.CloseTime(start, start+e.win.Size)
}

// missWindows counts the windows of key after its last evaluated one that
// closed empty by stream time until (exclusive of the window starting at
// upTo, if upTo > 0) and applies them as "condition false".
func (e *alertEngine) missWindows(ta *State, r *alertRule, id alertID, st *alertState, upTo, now int64) {
	if e.step == 0 || !st.HasWindow {
		return
	}
	for s := st.LastStart + e.step; ; s += e.step {
		if upTo > 0 && s >= upTo || upTo == 0 && e.closeAt(s) > now {
			return
		}
		if st.State != alertPending && st.State != alertFiring {
			return // nothing to count; the next evaluation sets LastStart
		}
		prev := st.State
		tr := st.observe(false, r.spec.ForWindows, r.spec.ResolveWindows)
		st.LastStart, st.LastEnd = s, s+e.win.Size
		ta.dirty[id] = struct{}{}
		if tr == alertResolved {
			wk := state.WindowKey{Key: id.key, Start: s, End: s + e.win.Size}
			ta.emit(alertEvent{rule: r, key: id.key, state: alertResolved, window: &wk, startedAt: st.Since,
				at: e.closeAt(s), note: "no records for the key in this window"})
			st.Since, st.Notified = 0, 0
		}
		if prev != st.State && st.State != alertFiring && st.State != alertPending {
			delete(ta.active, id)
		}
	}
}

// onWindow evaluates the windowed rules on a closed window of a key.
func (ta *State) onWindow(wk state.WindowKey, row *state.Row) {
	e := ta.e
	if len(e.windowed) == 0 {
		return
	}
	at := e.win.CloseTime(wk.Start, wk.End)
	envReady := false
	for _, r := range e.windowed {
		id := alertID{r.idx, wk.Key}
		st := ta.states[id]
		existed := st != nil
		var holds bool
		if r.spec.Kind == topology.AlertThreshold {
			if !envReady {
				ta.fillEnv(wk.Key, row)
				envReady = true
			}
			ok, err := r.cond.Eval(ta.envBuf)
			holds = err == nil && ok
			if st == nil && !holds {
				continue // a quiet key: no state, nothing to do
			}
		}
		if st == nil {
			st = &alertState{State: alertInactive}
			ta.states[id] = st
		}
		e.missWindows(ta, r, id, st, wk.Start, at)

		ev := alertEvent{rule: r, key: wk.Key, window: &wk, row: row, at: at}
		if r.valueIdx >= 0 {
			if v, ok := row.Value(r.valueIdx); ok {
				ev.value = &v
			}
		}
		switch r.spec.Kind {
		case topology.AlertThreshold:
			ev.note = "condition " + r.spec.Condition
		case topology.AlertDeviation:
			holds = e.deviates(ta, r, id, st, wk, &ev)
		}
		prev := st.State
		tr := st.observe(holds, r.spec.ForWindows, r.spec.ResolveWindows)
		st.HasWindow, st.LastStart, st.LastEnd = true, wk.Start, wk.End
		if ev.value != nil {
			st.Value, st.HasValue = *ev.value, true
		}
		switch tr {
		case alertFiring:
			st.Since, st.Notified = at, at
			ev.state, ev.startedAt = alertFiring, at
			if r.spec.ForWindows > 1 {
				ev.note += fmt.Sprintf(" held for %d windows", r.spec.ForWindows)
			}
			ta.emit(ev)
		case alertResolved:
			ev.state, ev.startedAt = alertResolved, st.Since
			ev.note = fmt.Sprintf("back to normal for %d window(s)", r.spec.ResolveWindows)
			ta.emit(ev)
			st.Since, st.Notified = 0, 0
		default:
			if st.State == alertFiring && e.renotify > 0 && at-st.Notified >= e.renotify {
				st.Notified = at
				ev.state, ev.startedAt = alertFiring, st.Since
				ev.note += " (still firing)"
				ta.emit(ev)
			}
		}
		if st.State == alertPending || st.State == alertFiring {
			ta.active[id] = struct{}{}
		} else if prev == alertPending || prev == alertFiring {
			delete(ta.active, id)
		}
		if r.spec.Kind == topology.AlertDeviation {
			ta.schedule(id, wk.End+r.forgetMs) // forget the baseline of a key gone quiet
		}
		// Threshold state of a quiet key is not worth keeping; deviation
		// state holds the baseline.
		if r.spec.Kind == topology.AlertThreshold && st.State != alertPending && st.State != alertFiring {
			delete(ta.states, id)
			if !existed {
				continue // nothing stored, nothing to delete
			}
		}
		ta.dirty[id] = struct{}{}
	}
}

// checkQuiet applies empty windows to pending and firing windowed alerts
// whose key has had no window close by stream time now.
func (ta *State) checkQuiet(now int64) {
	e := ta.e
	if len(ta.active) == 0 || e.step == 0 {
		return
	}
	ids := make([]alertID, 0, len(ta.active))
	for id := range ta.active {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool {
		if ids[i].key != ids[j].key {
			return ids[i].key < ids[j].key
		}
		return ids[i].rule < ids[j].rule
	})
	for _, id := range ids {
		st := ta.states[id]
		if st == nil {
			delete(ta.active, id)
			continue
		}
		e.missWindows(ta, e.rules[id.rule], id, st, 0, now)
		if e.rules[id.rule].spec.Kind == topology.AlertThreshold && st.State != alertPending && st.State != alertFiring {
			delete(ta.states, id)
			ta.dirty[id] = struct{}{}
		}
	}
}

// deviates compares the window's value with the key's baseline, then
// folds the value into the baseline.
func (e *alertEngine) deviates(ta *State, r *alertRule, id alertID, st *alertState, wk state.WindowKey, ev *alertEvent) bool {
	if ev.value == nil {
		return false
	}
	x := *ev.value
	rs := r.spec
	var mean, variance float64
	var armed bool
	if rs.Baseline == topology.BaselineSeasonal {
		period := topology.FloorDiv(wk.Start, r.periodMs)
		sid := slotID{r.idx, id.key, (wk.Start - period*r.periodMs) / r.bucketMs}
		ss := ta.slots[sid]
		if ss == nil {
			ss = &slotStats{}
			ta.slots[sid] = ss
		}
		prev := ss.Periods
		if ss.Periods > 0 && ss.LastPeriod == period {
			prev--
		}
		armed, mean, variance = prev >= rs.MinHistory, ss.Mean, ss.Var
		ss.add(x, rs.Alpha, period)
		ta.dirtySlots[sid] = struct{}{}
	} else {
		armed, mean, variance = st.N >= rs.MinHistory, st.Mean, st.Var
		st.N++
		if st.N == 1 {
			st.Mean, st.Var = x, 0
		} else {
			ewmaAdd(&st.Mean, &st.Var, x, max(rs.Alpha, 1/float64(st.N)))
		}
	}
	if !armed {
		ev.note = "baseline still learning"
		return false
	}
	sd := math.Sqrt(variance)
	ev.baseline, ev.stddev = &mean, &sd
	d := x - mean
	var off float64
	switch rs.Direction {
	case topology.DirectionAbove:
		off = d
	case topology.DirectionBelow:
		off = -d
	default:
		off = math.Abs(d)
	}
	if sd > 0 {
		ev.note = fmt.Sprintf("%s=%s is %.1f standard deviations %s its baseline %s±%s", rs.Value, fmtNum(x),
			math.Abs(d)/sd, map[bool]string{true: "above", false: "below"}[d >= 0], fmtNum(mean), fmtNum(sd))
	} else {
		ev.note = fmt.Sprintf("%s=%s against a flat baseline of %s", rs.Value, fmtNum(x), fmtNum(mean))
	}
	return off > rs.StdDevs*sd && off > rs.MinDelta
}

// fillEnv fills ta.envBuf, reused for every window, with what threshold
// conditions see: the aggregates and key fields they name.
func (ta *State) fillEnv(key string, row *state.Row) {
	e := ta.e
	if ta.envBuf == nil {
		ta.envBuf = make(map[string]any, len(e.envAggs)+len(e.envKeys))
	}
	for _, i := range e.envAggs {
		if v, ok := row.Value(i); ok {
			ta.envBuf[e.spec.Aggregates[i].Name] = v
		} else {
			ta.envBuf[e.spec.Aggregates[i].Name] = nil
		}
	}
	if len(e.envKeys) > 0 {
		parts, _ := groupkey.Parts(key)
		for _, i := range e.envKeys {
			if i < len(parts) {
				ta.envBuf[e.spec.Key[i]] = parts[i]
			} else {
				delete(ta.envBuf, e.spec.Key[i])
			}
		}
	}
}

// emit renders a transition into ta.out.
func (ta *State) emit(ev alertEvent) {
	ta.out = append(ta.out, Transition{Alert: ta.e.alert(ev), Key: ev.key, At: ev.at})
}

// firing returns the task's firing alerts (after a restore), as events to
// re-send to Alertmanager.
func (e *alertEngine) firing(ta *State) []alertEvent {
	var out []alertEvent
	for id, st := range ta.states {
		if st.State != alertFiring {
			continue
		}
		ev := alertEvent{rule: e.rules[id.rule], key: id.key, state: alertFiring, startedAt: st.Since, at: st.Notified,
			note: "firing (restored)"}
		if st.HasValue {
			v := st.Value
			ev.value = &v
		}
		out = append(out, ev)
	}
	return out
}
