package topology

import (
	"fmt"
	"strings"
	"time"
)

// The table of eddy's topics and their settings (Spec.Topics). It is the
// one definition used by `eddy run` (which creates the missing topics with
// these configs and checks the existing ones against them), `eddy reset`
// (which recreates the internal topics with them) and `eddy describe`.
//
// The rule behind the settings: nothing eddy writes expires by time before
// it is read, however old the data is.
//   - The repartition topic carries each record's event time as its Kafka
//     timestamp (the aggregation step reads it from there), so time-based
//     retention would delete a replay of old data before eddy reads it
//     back. It has infinite time retention and is kept by eddy: after
//     each commit, eddy deletes (DeleteRecords) what the group has
//     committed, as Kafka Streams does.
//   - The changelog is compacted, never deleted by time.
//   - Output, late, dead-letter and alerts topics are read by others. eddy
//     creates them with message.timestamp.type=LogAppendTime: the broker
//     stamps each record with the time it was written, so retention counts
//     from the write, not from the event or window time, and a replay of a
//     year-old day is kept as long as live results are. The window, event
//     time and lateness are in each record's value and headers.

// Cleanup policies of the topics eddy creates.
const (
	CleanupCompact = "compact"
	CleanupDelete  = "delete"
)

// Timestamp types (message.timestamp.type).
const (
	CreateTime    = "CreateTime"
	LogAppendTime = "LogAppendTime"
)

// RetentionInfinite is TopicInfo.Retention for a topic kept without time
// retention (retention.ms=-1).
const RetentionInfinite time.Duration = -1

// Roles of a topic, as TopicInfo.Roles names them.
const (
	RoleRepartition = "repartition"
	RoleChangelog   = "changelog"
	RoleOutput      = "output"
	RoleLate        = "late"
	RoleDeadLetter  = "dead-letter"
	RoleAlerts      = "alerts"
)

// TopicInfo describes a topic of a pipeline and the settings eddy creates
// it with.
type TopicInfo struct {
	Name string
	// Roles says what the topic is for (Role*): one role, or several when
	// the pipeline names the same topic for them (late and dead-letter).
	Roles []string
	// Partitions is the partition count, as passed to Topics.
	Partitions int32
	// Copartitioned: an existing topic must have exactly Partitions
	// partitions (the changelog has one per task; the repartition topic
	// one per task's input).
	Copartitioned bool
	// Internal: eddy writes and reads it back; `eddy reset` deletes and
	// recreates it (repartition, changelog).
	Internal bool
	// PurgedByEddy: eddy deletes records of it below the group's
	// committed offset (the repartition topic).
	PurgedByEddy bool
	// CarriesInput: eddy writes whole input records to it (repartition,
	// late, dead-letter), so it is created with a max.message.bytes as
	// large as the largest source topic's plus InputHeaderRoom: a record
	// the source accepted is never refused for its size on the way.
	CarriesInput bool
	// CleanupPolicy is CleanupCompact or CleanupDelete.
	CleanupPolicy string
	// Retention is retention.ms to set: RetentionInfinite, or 0 for the
	// broker's default.
	Retention time.Duration
	// TimestampType is message.timestamp.type to set: CreateTime where
	// eddy reads the timestamp back as event time, LogAppendTime where
	// others read what eddy writes.
	TimestampType string
	// Configs is every topic-level config eddy creates the topic with.
	Configs map[string]string
	// Purpose says in a few words what the topic is for.
	Purpose string
}

// InputHeaderRoom is what a topic that carries input records
// (TopicInfo.CarriesInput) allows beyond the largest source topic's
// max.message.bytes: room for the headers eddy adds (source position,
// error class and message, lateness).
const InputHeaderRoom = 64 << 10

// HasRole reports whether the topic has role r.
func (t TopicInfo) HasRole(r string) bool {
	for _, x := range t.Roles {
		if x == r {
			return true
		}
	}
	return false
}

// GroupID is the Kafka consumer group id: App.
func (s *Spec) GroupID() string { return s.App }

// ChangelogTopic is the compacted topic backing the window store:
// "<app>-<store>-changelog".
func (s *Spec) ChangelogTopic() string { return s.App + "-" + s.Store + changelogSuffix }

// RepartitionTopic is the topic records go through when they must be
// re-keyed by the grouping key: "<app>-repartition".
// A rollup of a pipeline with several (RollupSpecs) may name another.
func (s *Spec) RepartitionTopic() string {
	if s.Repartition != "" {
		return s.Repartition
	}
	return s.App + repartitionSuffix
}

// NeedsRepartition reports whether records go through RepartitionTopic,
// which they do unless the source says they are keyed by the grouping key.
func (s *Spec) NeedsRepartition() bool { return !s.Source.KeyedByGroupKey }

// maxTimestampLag is message.timestamp.before.max.ms on the repartition
// topic: any age. A broker whose default is lower would refuse a replay of
// old data (INVALID_TIMESTAMP) on the topic that carries event time.
const maxTimestampLag = "9223372036854775807"

// Topics lists every topic eddy writes for the pipeline and creates when
// missing, all with the given partition count (the source partition count;
// 0 when unknown): the repartition topic (if needed), the changelog, the
// output, late, dead-letter and alerts topics. A topic the pipeline names
// for several roles is listed once, with every role.
//
// With several rollups it lists, in this order, each repartition topic
// once (rollups with the same key share one), every rollup's changelog,
// every rollup's output topic, the late and dead-letter topics (shared by
// all rollups), and every rollup's alerts topic.
func (s *Spec) Topics(partitions int32) []TopicInfo {
	specs := s.RollupSpecs()
	multi := s.MultiRollup()
	// of says which rollup a topic serves, in the multi-rollup form.
	of := func(rs *Spec) string {
		if !multi {
			return ""
		}
		return " of rollup " + quote(rs.RollupName)
	}
	var out []TopicInfo
	if s.NeedsRepartition() {
		readers := make(map[string][]string)
		var order []string
		for _, rs := range specs {
			t := rs.RepartitionTopic()
			if _, ok := readers[t]; !ok {
				order = append(order, t)
				readers[t] = nil
			}
			if multi {
				readers[t] = append(readers[t], rs.RollupName)
			}
		}
		for _, t := range order {
			purpose := "re-keys records by the grouping key, so each key is processed by one task"
			if multi {
				purpose = fmt.Sprintf("re-keys records by %s for %s, so each key is processed by one task",
					keyText(s.rollupKeyOf(t)), rollupList(readers[t]))
			}
			out = append(out, TopicInfo{Name: t, Roles: []string{RoleRepartition}, Partitions: partitions,
				Copartitioned: true, Internal: true, PurgedByEddy: true, CarriesInput: true,
				CleanupPolicy: CleanupDelete, Retention: RetentionInfinite, TimestampType: CreateTime,
				Configs: map[string]string{
					"cleanup.policy":                  CleanupDelete,
					"retention.ms":                    "-1",
					"retention.bytes":                 "-1",
					"message.timestamp.type":          CreateTime,
					"message.timestamp.before.max.ms": maxTimestampLag,
				},
				Purpose: purpose + "; kept by eddy: records are deleted once the group has committed them"})
		}
	}
	for _, rs := range specs {
		out = append(out, TopicInfo{Name: rs.ChangelogTopic(), Roles: []string{RoleChangelog}, Partitions: partitions,
			Copartitioned: true, Internal: true, CleanupPolicy: CleanupCompact,
			Configs: map[string]string{
				"cleanup.policy": CleanupCompact,
				// Compact reasonably soon so restores stay short, but never
				// the newest records (an unfinished flush at the tail must
				// stay ordered after the records it would overwrite).
				"segment.ms":                "3600000",
				"min.cleanable.dirty.ratio": "0.3",
			},
			Purpose: "backs the window store " + quote(rs.Store) + of(rs) + "; state is rebuilt from it"})
	}
	add := func(name, role, purpose string) {
		for i := range out {
			if out[i].Name == name {
				out[i].Roles = append(out[i].Roles, role)
				out[i].Purpose += "; " + purpose
				return
			}
		}
		out = append(out, TopicInfo{Name: name, Roles: []string{role}, Partitions: partitions,
			CleanupPolicy: CleanupDelete, TimestampType: LogAppendTime,
			Configs: map[string]string{
				"cleanup.policy":         CleanupDelete,
				"message.timestamp.type": LogAppendTime,
			},
			Purpose: purpose})
	}
	for _, rs := range specs {
		add(rs.Output.Topic, RoleOutput, "the results"+of(rs)+", one record per window (or update)")
	}
	late := "records that arrived after their window closed"
	if multi {
		late += " (once per rollup for which they are late, header eddy.rollup naming it)"
	}
	add(s.LateTopic, RoleLate, late)
	add(s.DeadLetterTopic, RoleDeadLetter, "records that could not be decoded or evaluated, with headers saying why")
	for i := range out {
		if out[i].HasRole(RoleLate) || out[i].HasRole(RoleDeadLetter) {
			out[i].CarriesInput = true
		}
	}
	for _, rs := range specs {
		if t := rs.AlertsTopic(); t != "" {
			add(t, RoleAlerts, "alert transitions"+of(rs)+" (firing, resolved)")
		}
	}
	return out
}

// rollupKeyOf returns the key of the rollups that use repartition topic t.
func (s *Spec) rollupKeyOf(t string) []string {
	for _, rs := range s.RollupSpecs() {
		if rs.RepartitionTopic() == t {
			return rs.Key
		}
	}
	return nil
}

// keyText renders a key as [a, b].
func keyText(key []string) string { return "[" + strings.Join(key, ", ") + "]" }

// rollupList renders rollup names as `rollup "a"` or `rollups "a" and "b"`.
func rollupList(names []string) string {
	if len(names) == 1 {
		return "rollup " + quote(names[0])
	}
	return "rollups " + quoteList(names)
}

// InternalTopics is the part of Topics that eddy writes and reads back
// (the repartition topic, if needed, and the changelog): the topics `eddy
// reset` deletes and recreates.
func (s *Spec) InternalTopics(partitions int32) []TopicInfo {
	var out []TopicInfo
	for _, t := range s.Topics(partitions) {
		if t.Internal {
			out = append(out, t)
		}
	}
	return out
}

// RetentionText says in words how long a topic's records are kept.
func (t TopicInfo) RetentionText() string {
	switch {
	case t.CleanupPolicy == CleanupCompact:
		return "forever (compacted)"
	case t.Retention == RetentionInfinite && t.PurgedByEddy:
		return "no time limit; eddy deletes what it has committed"
	case t.Retention == RetentionInfinite:
		return "no time limit"
	case t.Retention > 0:
		return fmtRetention(t.Retention)
	case t.TimestampType == LogAppendTime:
		return "broker default, counted from the write"
	}
	return "broker default"
}

// WindowSizeMillis is Window.SizeMillis, for short.
func (s *Spec) WindowSizeMillis() int64 { return s.Window.SizeMillis() }
