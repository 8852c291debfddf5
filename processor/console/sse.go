package console

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// errSlowClient ends a view whose browser does not keep up: its events are
// dropped with it, never buffered without bound.
var errSlowClient = errors.New("console: client too slow, view dropped")

// sseStream writes server-sent events to one client. Every write has a
// deadline (Config.WriteTimeout): a client that stops reading is dropped
// rather than holding a goroutine and its buffer. Owned by the handler's
// goroutine; not safe for concurrent use.
type sseStream struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
	now     func() time.Time
}

func newSSE(w http.ResponseWriter, timeout time.Duration, now func() time.Time) *sseStream {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	s := &sseStream{w: w, rc: http.NewResponseController(w), timeout: timeout, now: now}
	return s
}

// send writes one event of the given type with v as JSON data.
func (s *sseStream) send(event string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_ = s.rc.SetWriteDeadline(s.now().Add(s.timeout))
	if _, err := fmt.Fprintf(s.w, "event: %s\ndata: %s\n\n", event, b); err != nil {
		return err
	}
	return s.rc.Flush()
}

// ping keeps idle connections open through proxies.
func (s *sseStream) ping() error {
	_ = s.rc.SetWriteDeadline(s.now().Add(s.timeout))
	if _, err := fmt.Fprint(s.w, ": ping\n\n"); err != nil {
		return err
	}
	return s.rc.Flush()
}
