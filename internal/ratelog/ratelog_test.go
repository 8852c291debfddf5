package ratelog

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func lines(b *bytes.Buffer) []string {
	s := strings.TrimSpace(b.String())
	b.Reset()
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func TestRateLimited(t *testing.T) {
	var buf bytes.Buffer
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := &clock{t: t0}
	h := slog.NewTextHandler(&buf, &slog.HandlerOptions{ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}})
	l := New(slog.New(h), 10*time.Second, c.now)

	// 500 alike lines within 10s: one written at once.
	for i := range 500 {
		l.Warn("fetch error", "partition", i)
		c.t = c.t.Add(time.Millisecond)
	}
	got := lines(&buf)
	if len(got) != 1 || got[0] != `level=WARN msg="fetch error" partition=0` {
		t.Fatalf("after 500 alike warnings in 0.5s: %q, want the first one only", got)
	}
	// Another kind of line is not held back by the first.
	l.Warn("commit failed")
	if got := lines(&buf); len(got) != 1 || !strings.Contains(got[0], `msg="commit failed"`) {
		t.Fatalf("a different warning: %q", got)
	}
	// Past the interval, the next alike line carries the count.
	c.t = t0.Add(10 * time.Second)
	l.Warn("fetch error", "partition", 500)
	got = lines(&buf)
	if len(got) != 1 || got[0] != `level=WARN msg="fetch error (and 499 more like this in the last 10s)" partition=500` {
		t.Fatalf("first warning after the interval: %q", got)
	}
	// Held-back lines are written by Flush once their interval passed,
	// not before.
	l.Warn("fetch error", "partition", 501)
	l.Warn("fetch error", "partition", 502)
	l.Warn("fetch error", "partition", 503)
	c.t = c.t.Add(5 * time.Second)
	l.Flush()
	if got := lines(&buf); len(got) != 0 {
		t.Fatalf("Flush within the interval wrote %q", got)
	}
	c.t = c.t.Add(5 * time.Second)
	l.Flush()
	got = lines(&buf)
	if len(got) != 1 || got[0] != `level=WARN msg="fetch error (and 2 more like this in the last 10s)" partition=503` {
		t.Fatalf("Flush after the interval: %q", got)
	}
	// Nothing held: Flush writes nothing, and forgets quiet keys.
	c.t = c.t.Add(time.Minute)
	l.Flush()
	l.Flush()
	if got := lines(&buf); len(got) != 0 {
		t.Fatalf("Flush with nothing held wrote %q", got)
	}
	if n := len(l.seen); n != 0 {
		t.Errorf("%d keys kept after a quiet interval", n)
	}
	// WarnKey keeps kinds apart under one message; Error is rate-limited too.
	l.WarnKey("a", "waiting")
	l.WarnKey("b", "waiting")
	l.WarnKey("a", "waiting")
	l.Error("boom")
	l.Error("boom")
	if got := lines(&buf); len(got) != 3 {
		t.Fatalf("WarnKey a, b, a and Error twice: %q, want 3 lines", got)
	}
}
