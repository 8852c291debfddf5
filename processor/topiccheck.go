package processor

// The shell's side of the topic checks (processor/admin/topiccheck.go):
// the problems CheckTopics found are logged at start, and retentionGuard
// watches what eddy writes to topics whose time retention would delete it.

import (
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/eddy-streams/eddy/processor/admin"
)

// logTopicProblems logs each problem as a warning, with its fix.
func logTopicProblems(log *slog.Logger, problems []admin.TopicProblem, brokers string) {
	for _, p := range problems {
		args := []any{"topic", p.Topic, "roles", strings.Join(p.Roles, ","), "setting", p.Setting, "effect", p.Effect, "fix", p.FixCommand(brokers)}
		if p.Reset {
			args = append(args, "or", "eddy reset recreates it with eddy's settings")
		}
		log.Warn("topic setting would delete records eddy writes before they are read", args...)
	}
}

// retentionGuard warns when eddy writes a record to a topic whose time
// retention will delete it at once: its timestamp is older than now minus
// the topic's retention (a topic of admin.TopicProblem.Retention). The warning is
// rate-limited per topic: the first at once, then one line per interval
// with the count since the last. Safe for concurrent use; cheap for topics
// without such a retention (one map lookup).
type retentionGuard struct {
	log      *slog.Logger
	now      func() time.Time
	interval time.Duration
	limits   map[string]time.Duration // read-only after newRetentionGuard

	mu    sync.Mutex
	state map[string]*guardState
}

type guardState struct {
	last   time.Time
	count  int64 // records since the last line
	oldest int64 // ms: the oldest timestamp since the last line
	warned bool
}

func newRetentionGuard(log *slog.Logger, now func() time.Time, problems []admin.TopicProblem) *retentionGuard {
	g := &retentionGuard{log: log, now: now, interval: time.Minute, limits: map[string]time.Duration{}, state: map[string]*guardState{}}
	for _, p := range problems {
		if p.TimeRetention {
			g.limits[p.Topic] = p.Retention
		}
	}
	return g
}

// written checks one record about to be produced.
func (g *retentionGuard) written(rec *kgo.Record) {
	if g == nil || len(g.limits) == 0 || rec.Timestamp.IsZero() {
		return
	}
	limit, ok := g.limits[rec.Topic]
	if !ok {
		return
	}
	now := g.now()
	ts := rec.Timestamp.UnixMilli()
	if ts >= now.Add(-limit).UnixMilli() {
		return
	}
	g.mu.Lock()
	s := g.state[rec.Topic]
	if s == nil {
		s = &guardState{oldest: ts}
		g.state[rec.Topic] = s
	}
	s.count++
	s.oldest = min(s.oldest, ts)
	if s.warned && now.Sub(s.last) < g.interval {
		g.mu.Unlock()
		return
	}
	n, oldest := s.count, s.oldest
	s.warned, s.last, s.count, s.oldest = true, now, 0, ts
	g.mu.Unlock()
	g.log.Warn("records written with timestamps older than the topic's retention: the broker deletes them within minutes",
		"topic", rec.Topic, "records", n, "oldest", time.UnixMilli(oldest).UTC().Format(time.RFC3339), "retention", admin.FormatAge(limit),
		"fix", "kafka-configs.sh --alter --entity-type topics --entity-name "+rec.Topic+" --add-config message.timestamp.type=LogAppendTime (see docs/operations.md)")
}
