// Package ratelog rate-limits repeated log lines: a warning that a
// per-record or per-poll path would write five hundred times a second is
// written once per interval, with the count of the ones left out.
//
//	l := ratelog.New(logger, 10*time.Second, clock.Now)
//	l.Warn("fetch error", "topic", t, "err", err)
//
// writes the first "fetch error" at once; those that follow within 10s
// are only counted; the first after the interval is written with
// "(and 499 more like this in the last 10s)" appended to its message.
// Flush writes the count of lines still held back once their interval
// has passed (call it from a periodic path, so the count is not lost when
// the warnings stop).
//
// Lines are alike when their messages are: the first one's attributes
// are written, the others' are dropped (a count of "fetch error" lines
// across partitions, not one line per partition). Use WarnKey to keep
// kinds apart under one message.
package ratelog

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// Logger writes repeated lines at most once per interval per key. Safe for
// concurrent use.
type Logger struct {
	log   *slog.Logger
	every time.Duration
	now   func() time.Time

	mu   sync.Mutex
	seen map[string]*entry
}

type entry struct {
	last  time.Time // when a line of this key was last written
	held  int       // lines left out since
	level slog.Level
	msg   string
	args  []any // of the last line left out
}

// New returns a Logger writing to log at most one line per key every
// interval, by the clock now (time.Now when nil).
func New(log *slog.Logger, every time.Duration, now func() time.Time) *Logger {
	if now == nil {
		now = time.Now
	}
	return &Logger{log: log, every: every, now: now, seen: make(map[string]*entry)}
}

// Warn writes a warning, or counts it when one with the same message was
// written less than an interval ago.
func (l *Logger) Warn(msg string, args ...any) { l.logKey(slog.LevelWarn, msg, msg, args) }

// Error is Warn at level error.
func (l *Logger) Error(msg string, args ...any) { l.logKey(slog.LevelError, msg, msg, args) }

// WarnKey is Warn with lines alike when their keys are.
func (l *Logger) WarnKey(key, msg string, args ...any) { l.logKey(slog.LevelWarn, key, msg, args) }

func (l *Logger) logKey(level slog.Level, key, msg string, args []any) {
	now := l.now()
	l.mu.Lock()
	e := l.seen[key]
	if e != nil && now.Sub(e.last) < l.every {
		e.held++
		e.level, e.msg, e.args = level, msg, args
		l.mu.Unlock()
		return
	}
	held, since := 0, time.Duration(0)
	if e == nil {
		e = &entry{}
		l.seen[key] = e
	} else {
		held, since = e.held, now.Sub(e.last)
	}
	e.last, e.held, e.args = now, 0, nil
	l.mu.Unlock()
	l.log.Log(context.Background(), level, withCount(msg, held, since), args...)
}

// Flush writes, for each key whose interval has passed with lines held
// back, the last of them with their count; and forgets keys that have been
// quiet for an interval, so the set of keys stays small.
func (l *Logger) Flush() {
	now := l.now()
	type line struct {
		level slog.Level
		msg   string
		args  []any
	}
	var out []line
	l.mu.Lock()
	for k, e := range l.seen {
		since := now.Sub(e.last)
		if since < l.every {
			continue
		}
		if e.held == 0 {
			delete(l.seen, k)
			continue
		}
		out = append(out, line{e.level, withCount(e.msg, e.held-1, since), e.args})
		e.last, e.held, e.args = now, 0, nil
	}
	l.mu.Unlock()
	for _, x := range out {
		l.log.Log(context.Background(), x.level, x.msg, x.args...)
	}
}

// withCount appends the count of lines left out to msg.
func withCount(msg string, held int, since time.Duration) string {
	if held <= 0 {
		return msg
	}
	return fmt.Sprintf("%s (and %d more like this in the last %s)", msg, held, since.Round(time.Second))
}
