package processor

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eddy-streams/eddy/processor/admin"
)

// TestRetentionGuard: a record written older than its topic's retention is
// warned about once, then once a minute with the count; records within
// the retention and other topics are not.
func TestRetentionGuard(t *testing.T) {
	var logs bytes.Buffer
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	g := newRetentionGuard(slog.New(slog.NewTextHandler(&logs, nil)), func() time.Time { return now },
		[]admin.TopicProblem{{Topic: "out", TimeRetention: true, Retention: 7 * day}, {Topic: "x", Retention: day}})
	rec := func(topic string, age time.Duration) *kgo.Record {
		return &kgo.Record{Topic: topic, Timestamp: now.Add(-age)}
	}
	g.written(rec("out", 6*day))
	g.written(rec("x", 30*day)) // not a time-retention problem
	g.written(rec("other", 30*day))
	if logs.Len() != 0 {
		t.Fatalf("warned about records within retention or other topics:\n%s", logs.String())
	}
	for range 500 {
		g.written(rec("out", 30*day))
	}
	if n := strings.Count(logs.String(), "\n"); n != 1 {
		t.Fatalf("%d lines for 500 old records in the same minute, want 1:\n%s", n, logs.String())
	}
	now = now.Add(time.Minute)
	g.written(rec("out", 31*day))
	l := logs.String()
	if n := strings.Count(l, "\n"); n != 2 || !strings.Contains(l, "records=500") || !strings.Contains(l, "retention=\"7 days\"") {
		t.Errorf("want a second line a minute later counting the 500 records since the first:\n%s", l)
	}
}
