package topology

import "time"

// Cleanup policies of the topics eddy creates.
const (
	CleanupCompact = "compact"
	CleanupDelete  = "delete"
)

// RepartitionRetention is the retention of the repartition topic. Records
// there are in flight between two steps of the same pipeline, so a day
// would usually do, but a record deleted before eddy consumed it is lost
// for good (its source offset is already committed). It is therefore as
// long as Kafka's default retention of source topics: eddy can be down for
// a week without losing data. The runtime should also delete records below
// the committed offset (DeleteRecords), as Kafka Streams does, so the topic
// stays small in normal operation.
const RepartitionRetention = 7 * 24 * time.Hour

// TopicInfo describes a topic eddy creates for a pipeline.
type TopicInfo struct {
	Name string
	// Partitions is the partition count, as passed to InternalTopics.
	Partitions int32
	// CleanupPolicy is CleanupCompact or CleanupDelete.
	CleanupPolicy string
	// Retention is retention.ms to set; 0 means the broker's default.
	Retention time.Duration
	// Purpose says in a few words what the topic is for.
	Purpose string
}

// GroupID is the Kafka consumer group id: App.
func (s *Spec) GroupID() string { return s.App }

// ChangelogTopic is the compacted topic backing the window store:
// "<app>-<store>-changelog".
func (s *Spec) ChangelogTopic() string { return s.App + "-" + s.Store + changelogSuffix }

// RepartitionTopic is the topic records go through when they must be
// re-keyed by the grouping key: "<app>-repartition".
func (s *Spec) RepartitionTopic() string { return s.App + repartitionSuffix }

// NeedsRepartition reports whether records go through RepartitionTopic,
// which they do unless the source says they are keyed by the grouping key.
func (s *Spec) NeedsRepartition() bool { return !s.Source.KeyedByGroupKey }

// InternalTopics lists the topics eddy creates for the pipeline, all with
// the given partition count (the source partition count; the changelog
// needs one partition per task): the repartition topic (if needed), the
// changelog, the late topic and the dead-letter topic (once, if they are the
// same topic). The output topic is the user's and is not listed.
func (s *Spec) InternalTopics(partitions int32) []TopicInfo {
	var out []TopicInfo
	if s.NeedsRepartition() {
		out = append(out, TopicInfo{Name: s.RepartitionTopic(), Partitions: partitions, CleanupPolicy: CleanupDelete,
			Retention: RepartitionRetention, Purpose: "re-keys records by the grouping key, so each key is processed by one task"})
	}
	out = append(out, TopicInfo{Name: s.ChangelogTopic(), Partitions: partitions, CleanupPolicy: CleanupCompact,
		Purpose: "backs the window store " + quote(s.Store) + "; state is rebuilt from it"})
	if s.LateTopic == s.DeadLetterTopic {
		out = append(out, TopicInfo{Name: s.LateTopic, Partitions: partitions, CleanupPolicy: CleanupDelete,
			Purpose: "records that arrived after their window closed, and records that could not be decoded or evaluated"})
		return out
	}
	out = append(out,
		TopicInfo{Name: s.LateTopic, Partitions: partitions, CleanupPolicy: CleanupDelete,
			Purpose: "records that arrived after their window closed"},
		TopicInfo{Name: s.DeadLetterTopic, Partitions: partitions, CleanupPolicy: CleanupDelete,
			Purpose: "records that could not be decoded or evaluated, with headers saying why"})
	return out
}

// WindowSizeMillis is Window.SizeMillis, for short.
func (s *Spec) WindowSizeMillis() int64 { return s.Window.SizeMillis() }
