package alert

// The persisted form of a State: one aux entry of the task's store per
// rule and key (and per deviation slot), JSON-encoded. Aux entries are a
// key kind of their own in the store and its changelog, apart from the
// windows (state/store.go). Entries are queued at Flush and written with
// the task's windows in one flush; Load is the inverse.

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/eddy-streams/eddy/state"
	"github.com/eddy-streams/eddy/topology"
)

// idSep separates the parts of an aux id: rule idSep key [idSep slot].
// Neither rule names nor grouping keys (JSON arrays, whose strings escape
// control characters) hold it.
const idSep = "\x00"

func (e *alertEngine) auxID(id alertID) string {
	return e.rules[id.rule].spec.Name + idSep + id.key
}

func (e *alertEngine) slotAuxID(id slotID) string {
	return e.rules[id.rule].spec.Name + idSep + id.key + idSep + strconv.FormatInt(id.slot, 10)
}

// Load reads the alert state back from store (after restore or an
// aborted transaction), replacing what ta held. State of rules no longer in the spec is deleted.
func (ta *State) Load(store Store) error {
	e := ta.e
	*ta = *e.NewState()
	return store.ScanAux(func(id string, v []byte) error {
		parts := strings.Split(id, idSep)
		if len(parts) < 2 {
			return fmt.Errorf("alert state %q: %w", id, state.ErrCorruptState)
		}
		r := e.byName[parts[0]]
		if r == nil {
			store.DeleteAux(id) // the rule was removed from the pipeline
			return nil
		}
		switch len(parts) {
		case 2:
			st := &alertState{}
			if err := json.Unmarshal(v, st); err != nil {
				return fmt.Errorf("alert state %q: %w: %w", id, state.ErrCorruptState, err)
			}
			aid := alertID{r.idx, parts[1]}
			ta.states[aid] = st
			if r.spec.Kind == topology.AlertAbsence {
				e.scheduleAbsence(ta, r, aid, st)
				return nil
			}
			if st.State == alertPending || st.State == alertFiring {
				ta.active[aid] = struct{}{}
			}
			if r.spec.Kind == topology.AlertDeviation && st.HasWindow {
				ta.schedule(aid, st.LastEnd+r.forgetMs)
			}
		case 3:
			slot, err := strconv.ParseInt(parts[2], 10, 64)
			if err != nil {
				return fmt.Errorf("alert state %q: %w", id, state.ErrCorruptState)
			}
			ss := &slotStats{}
			if err := json.Unmarshal(v, ss); err != nil {
				return fmt.Errorf("alert state %q: %w: %w", id, state.ErrCorruptState, err)
			}
			ta.slots[slotID{r.idx, parts[1], slot}] = ss
		default:
			return fmt.Errorf("alert state %q: %w", id, state.ErrCorruptState)
		}
		return nil
	})
}

// Flush queues the changed alert state in store.
func (ta *State) Flush(store Store) {
	e := ta.e
	for id := range ta.dirty {
		if st := ta.states[id]; st == nil {
			store.DeleteAux(e.auxID(id))
		} else {
			b, _ := json.Marshal(st)
			store.PutAux(e.auxID(id), b)
		}
	}
	clear(ta.dirty)
	for id := range ta.dirtySlots {
		if ss := ta.slots[id]; ss == nil {
			store.DeleteAux(e.slotAuxID(id))
		} else {
			b, _ := json.Marshal(ss)
			store.PutAux(e.slotAuxID(id), b)
		}
	}
	clear(ta.dirtySlots)
}
