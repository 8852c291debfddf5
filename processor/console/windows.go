package console

import (
	"encoding/json"
	"net/http"
)

// Open windows (GET /api/v1/windows?key=["checkout","/pay"]): the current
// aggregates of a key's windows that have not closed yet, straight from
// this worker's state (Config.OpenWindows). Only the worker that owns the
// key's partition has them: routing a query to the owner from any worker
// is not done yet (docs/console.md), so ask each worker, or the owner the
// pipeline picture names.

// WindowsJSON is the answer of GET /api/v1/windows.
type WindowsJSON struct {
	Key []string `json:"key"`
	// Windows are result objects in the output's shape (key fields,
	// window_start, window_end, aggregates), oldest first; empty when this
	// worker does not own the key or the key has no open window.
	Windows []json.RawMessage `json:"windows"`
}

func (c *Console) handleWindows(w http.ResponseWriter, r *http.Request) {
	var key []string
	if err := json.Unmarshal([]byte(r.URL.Query().Get("key")), &key); err != nil || len(key) != len(c.cfg.Spec.Key) {
		writeJSON(w, http.StatusBadRequest, apiError{Error: `key: a JSON array of the key's fields (` + jsonText(c.cfg.Spec.Key) + `), e.g. ["checkout","/pay"]`})
		return
	}
	if c.cfg.OpenWindows == nil {
		writeJSON(w, http.StatusNotImplemented, apiError{Error: "this server has no pipeline state"})
		return
	}
	kb, _ := json.Marshal(key) // the grouping key as eddy writes it
	wins, err := c.cfg.OpenWindows(string(kb))
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, apiError{Error: err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, WindowsJSON{Key: key, Windows: wins})
}

func jsonText(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
