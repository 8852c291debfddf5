package processor

import "encoding/json"

// Read-only views of a running App for the web console (processor/console).
// Nothing here changes the App; each holds a.mu only while it copies.

// OpenWindows returns the current aggregates of the windows of key (the
// grouping key as eddy writes it: a JSON array of the key fields' values,
// e.g. ["checkout","/pay"]) that are open in this worker's tasks, oldest
// first, each as JSON in the output's result shape (key fields,
// window_start, window_end, aggregates). Windows live only in the task
// that owns the key's partition, so a worker that does not own it returns
// none. It holds the processing lock while it scans this worker's open
// windows: a query costs the pipeline about one scan of them.
func (a *App) OpenWindows(key string) ([]json.RawMessage, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []json.RawMessage
	for _, t := range a.tasks {
		rs, err := t.OpenWindowsOf(key)
		if err != nil {
			return nil, err
		}
		for _, r := range rs {
			b, err := a.p.encodeResultMap(r)
			if err != nil {
				return nil, err
			}
			out = append(out, b)
		}
	}
	return out, nil
}
