package alert

import (
	"sort"

	"github.com/eddy-streams/eddy/state"
)

// Store is where a State keeps its persisted form: the task's store
// (*state.TaskStore). Alert state is written with the task's windows, in
// the same flush, so restarts and replays see exactly the committed alert
// state.
type Store interface {
	PutAux(id string, v []byte)
	DeleteAux(id string)
	ScanAux(fn func(id string, v []byte) error) error
}

// Transition is one alert to publish (firing or resolved).
type Transition struct {
	Alert Alert
	Key   string // the grouping key, as stored
	At    int64  // stream time of the transition, ms
}

// The calls below are the whole interface between a task and its alert
// rules. Each appends the transitions it decides to dst and returns it;
// none keeps dst. Times are stream time (ms), never the wall clock.

// OnRecord notes a record of key at event time ts, with the task's stream
// time after it (absence rules).
func (ta *State) OnRecord(dst []Transition, key string, ts, streamTime int64) []Transition {
	ta.out = dst
	ta.onRecord(key, ts, streamTime)
	return ta.take()
}

// OnWindowClosed evaluates the windowed rules on a closed window of a key
// and its final row.
func (ta *State) OnWindowClosed(dst []Transition, wk state.WindowKey, row *state.Row) []Transition {
	ta.out = dst
	ta.onWindow(wk, row)
	return ta.take()
}

// Due fires, re-notifies and forgets absence alerts, and forgets deviation
// baselines, whose time has come by stream time now.
func (ta *State) Due(dst []Transition, now int64) []Transition {
	ta.out = dst
	ta.checkDue(now)
	return ta.take()
}

// Tick is Due, then applies the windows that closed empty by stream time
// now to pending and firing windowed alerts (keys gone quiet).
func (ta *State) Tick(dst []Transition, now int64) []Transition {
	ta.out = dst
	ta.checkDue(now)
	ta.checkQuiet(now)
	return ta.take()
}

func (ta *State) take() []Transition {
	out := ta.out
	ta.out = nil
	return out
}

// Dirty reports whether the state has changes Flush has not queued yet.
func (ta *State) Dirty() bool { return len(ta.dirty) > 0 || len(ta.dirtySlots) > 0 }

// Firing returns the firing alerts, rendered (to re-send to Alertmanager
// after a restore).
func (ta *State) Firing() []Alert {
	var out []Alert
	for _, ev := range ta.e.firing(ta) {
		out = append(out, ta.e.alert(ev))
	}
	return out
}

// Keys returns the grouping keys that have rule state, sorted, once per
// rule (for tests and diagnostics).
func (ta *State) Keys() []string {
	out := make([]string, 0, len(ta.states))
	for id := range ta.states {
		out = append(out, id.key)
	}
	sort.Strings(out)
	return out
}
